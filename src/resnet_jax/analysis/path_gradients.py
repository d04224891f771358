"""Gradient by path length: Veit, Wilber & Belongie 2016, Sec. 4.2 and Fig. 6b/c.

A path of length k back-propagates through the residual branch of k blocks and the shortcut of
the others (see `paths`). Two statistics of the gradient by path length, both w.r.t. the input of
the first residual block (the "block_input" perturbation of the models) and of the mean
cross-entropy over the batch, with BN in eval mode (forward values are the whole network's; only
the backward pass is routed):

* `sampled_path_gradients` is Veit's protocol: the mean L2 norm E||g_path|| of single-path
  gradients over random paths of length k, and his total T(k) = C(n, k) * E||g_path(k)||, a sum of
  *norms* over paths. Veit draws a fresh random batch of training images for every sampled path
  (`batch_size`); one fixed batch for every path is the other option.
* `exact_path_gradients` is exact and cheap: the gradient summed over all C(n, k) paths of each
  length, G(k) = sum_{|p| = k} g_p, in one forward/backward pass of (n+1) stacked batch copies
  (`BlockControls.path_stack`), and ||G(k)||, the *norm of the summed* gradient. By the triangle
  inequality ||G(k)|| <= T(k); the two differ wherever paths of one length point different ways.
  sum_k G(k) is the ordinary gradient.

Norms are L2 (Frobenius) norms of the whole [N, H, W, C] gradient tensor of the batch.

Multi-residual nets (k = `model.branches_per_block` > 1 branches per block): a route picks one of
k + 1 ways through each block (0: the shortcut, j: branch j), a path's length is the number of
branches it takes, and there are C(n, j) k^j paths of length j (`paths.path_counts`). Each branch
shifts its cotangent by one copy, so the exact decomposition stays one pass of n + 1 copies.
"""
import dataclasses
import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax.analysis import _common
from resnet_jax.analysis.paths import path_counts
from resnet_jax.models import BlockControls


def block_input_shape(model: Any, variables: Mapping[str, Any], images: Any, *,
                      path_stack: int = 0) -> tuple[int, ...]:
  """Shape of the first residual block's input ([K*N, H, W, C] with K = max(path_stack, 1)).

  Read from the "perturbations" collection that `apply` creates when it is mutable, without
  running the network (jax.eval_shape).
  """
  controls = BlockControls.default(model.num_blocks, path_stack)
  _, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False, controls=controls, mutable=["perturbations"]),
      _common.eval_variables(variables), images)
  return tuple(state["perturbations"]["block_input"].shape)


def _loss_at_input(model, variables, images, labels, weights, inv_total, controls):
  """Returns (delta -> chunk's share of the mean loss), delta the first block's perturbation."""
  n = images.shape[0]

  def loss(delta):
    logits = model.apply({**variables, "perturbations": {"block_input": delta}}, images,
                         train=False, controls=controls)
    # With path_stack = K the logits are [K*N, classes]; copy 0 is the real forward pass.
    return _common.weighted_cross_entropy(logits[:n], labels, weights, inv_total)
  return loss


def _route_grads_impl(model, variables, inv_total, images, labels, weights, routes):
  """[R, N, H, W, C] single-path gradients, one per route row [R, num_blocks]."""
  delta = jnp.zeros(block_input_shape(model, variables, images), images.dtype)

  def one(route):
    controls = BlockControls.route(route, _common.branches_per_block(model))
    return jax.grad(_loss_at_input(model, variables, images, labels, weights, inv_total,
                                   controls))(delta)
  return jax.vmap(one)(routes)


def _route_sq_norms_impl(model, variables, inv_total, images, labels, weights, routes):
  """[R] squared L2 norms of the single-path gradients of this chunk of images."""
  g = _route_grads_impl(model, variables, inv_total, images, labels, weights, routes)
  return jnp.sum(jnp.square(g), axis=tuple(range(1, g.ndim)))


def _batch_route_sq_norms_impl(model, variables, inv_total, images, labels, weights, routes):
  """[R] squared L2 norms of single-path gradients, route r on its own images.

  The gradient at the block input is per image (eval BN), so a batch's squared norm is the sum
  over its images: chunks of a batch add up exactly.

  Args:
    images: [R, B, H, W, C], row r the images of route r; labels [R, B]; weights [B], 0 for
      padding; routes [R, num_blocks].
  """
  def one(x, y, route):
    return _route_sq_norms_impl(model, variables, inv_total, x, y, weights, route[None])[0]
  return jax.vmap(one)(images, labels, routes)


def _exact_grads_impl(model, variables, inv_total, images, labels, weights, rows):
  """[1, N, K, H, W, C]: gradient summed over the paths of each length k = 0..n (K = n+1).

  Images come before lengths so that the chunking helper concatenates image chunks on axis 1.
  """
  del rows  # one dummy row: the chunking helper is shared with the row-batched analyses
  copies = model.num_blocks + 1
  controls = BlockControls.default(model.num_blocks, path_stack=copies)
  delta = jnp.zeros(block_input_shape(model, variables, images, path_stack=copies),
                    images.dtype)
  g = jax.grad(_loss_at_input(model, variables, images, labels, weights, inv_total,
                              controls))(delta)
  g = g.reshape((copies, images.shape[0]) + g.shape[1:])
  return jnp.swapaxes(g, 0, 1)[None]


# The jitted cores: the model is static, everything else traced, so new routes reuse the compile.
# Module attributes, looked up at call time, so that tests can swap in trace-counting versions.
_route_grads = jax.jit(_route_grads_impl, static_argnums=0)
_route_sq_norms = jax.jit(_route_sq_norms_impl, static_argnums=0)
_batch_route_sq_norms = jax.jit(_batch_route_sq_norms_impl, static_argnums=0)
_exact_grads = jax.jit(_exact_grads_impl, static_argnums=0)


def _check_routes(model, routes) -> np.ndarray:
  routes = np.asarray(routes)
  if routes.ndim != 2 or routes.shape[0] < 1 or routes.shape[1] != model.num_blocks:
    raise ValueError(f"routes must be [R >= 1, num_blocks = {model.num_blocks}], got shape "
                     f"{routes.shape}")
  k = _common.branches_per_block(model)
  if k == 1 and not np.all((routes == 0) | (routes == 1)):
    raise ValueError("routes must hold only 0 (skip) and 1 (residual branch)")
  if not np.all(np.isin(routes, np.arange(k + 1))):
    raise ValueError(f"routes must hold only 0 (skip) and 1..{k} (the residual branch taken)")
  return routes.astype(np.float32)


def _prepare(model, variables, images, labels, max_batch):
  """Checked (eval variables, images, labels, max_batch) and 1 / N, the mean loss's weight."""
  _common.check_residual(model)
  variables, images, labels, max_batch = _common.check_batch(model, variables, images, labels,
                                                             max_batch)
  return variables, images, labels, max_batch, jnp.float32(1.0 / images.shape[0])


def single_path_gradients(model: Any, variables: Mapping[str, Any], images: Any, labels: Any,
                          routes: Any, *,
                          max_batch: int = _common.DEFAULT_MAX_BATCH) -> np.ndarray:
  """`single_path_gradient` for many routes at once: [R, N, H, W, C] for routes [R, num_blocks].

  Routes are vmapped in chunks of max(1, max_batch // N) through one compiled function.

  Raises:
    ValueError: a plain net, routes not [R >= 1, num_blocks] of values in 0..k.
  """
  v, images, labels, max_batch, inv_total = _prepare(model, variables, images, labels,
                                                     max_batch)
  routes = jnp.asarray(_check_routes(model, routes))
  fn = functools.partial(_route_grads, model, v, inv_total)
  return _common.run_chunked(fn, routes, routes[0], images, labels, max_batch, False)


def single_path_gradient(model: Any, variables: Mapping[str, Any], images: Any, labels: Any,
                         route: Any, *,
                         max_batch: int = _common.DEFAULT_MAX_BATCH) -> np.ndarray:
  """Veit's gradient of one path: full forward pass, backward through branch or skip per block.

  Args:
    model: a residual model of `resnet_jax.models` (not a plain twin).
    variables: {"params", "batch_stats"}; BN in eval mode.
    images: [N, H, W, C] float images.
    labels: [N] integer labels.
    route: [num_blocks] of 0/1; 1 = back-propagate through the block's residual branch only,
      0 = through its shortcut only. The path's length is sum(route). In a multi-residual net
      (k branches) entries are 0..k: j >= 1 back-propagates through branch j only; the length
      is the number of nonzero entries.
    max_batch: images per call (chunks are exact: the loss is a sum over images).
  Returns:
    [N, H, W, C] float32 gradient of the mean cross-entropy w.r.t. the first block's input,
    along this path only. Compiled once per model and chunk shape, whatever the route.
  Raises:
    ValueError: a plain net, a route of the wrong length or with values other than 0..k.
  """
  route = np.asarray(route)
  if route.shape != (model.num_blocks,):
    raise ValueError(f"route must be [num_blocks] = [{model.num_blocks}], got shape "
                     f"{route.shape}")
  return single_path_gradients(model, variables, images, labels, route[None],
                               max_batch=max_batch)[0]


@dataclasses.dataclass(frozen=True)
class SampledPathGradients:
  """Veit Fig. 6b/c from sampled single paths.

  Attributes:
    num_blocks: n, the number of residual blocks.
    lengths: [L] path lengths k.
    norms: [L, samples] ||g_path|| of each sampled path.
    mean_norm: [L] E||g_path(k)||, the mean over samples (Fig. 6b).
    std_norm: [L] its std over samples (ddof = 0).
    num_paths: [L] C(n, k), float64 (C(n, k) b^k for b branches per block).
    total: [L] T(k) = num_paths * mean_norm, Veit's total gradient magnitude (Fig. 6c).
    routes: [L, samples, num_blocks] bool, each sampled path (True: through the block's branch);
      int8 branch numbers (0: shortcut, j: branch j) in a multi-residual net.
    batches: [L, samples, B] indices into the images given of each path's batch, or None when
      every path ran on all of them.
    branches_per_block: b, the residual branches of each block (1 but in multi-residual nets).
  """
  num_blocks: int
  lengths: np.ndarray
  norms: np.ndarray
  mean_norm: np.ndarray
  std_norm: np.ndarray
  num_paths: np.ndarray
  total: np.ndarray
  routes: np.ndarray | None = None
  batches: np.ndarray | None = None
  branches_per_block: int = 1


def sampled_path_gradients(model: Any, variables: Mapping[str, Any], images: Any, labels: Any,
                           key: jax.Array, *, samples_per_length: int, lengths: Any = None,
                           batch_size: int | None = None,
                           max_batch: int = _common.DEFAULT_MAX_BATCH) -> SampledPathGradients:
  """Veit's protocol: for each length k, the norms of single-path gradients of random k-paths.

  Each route has exactly k ones at uniformly random blocks (in a multi-residual net, k blocks
  through one uniformly random branch each: every path of length k is equally likely). Veit et
  al. compute each sampled path on a fresh random batch of training images: give the training
  images and `batch_size`, and every path gets its own batch of batch_size distinct images drawn
  from them (`random_batches`, seeded by `key`, so a call is reproducible). With batch_size None
  every path runs on all the images given (one fixed batch; the gradient is then of the mean loss
  over all of them).

  Routes (with their batches) are vmapped in chunks of max(1, max_batch // images per path)
  through one compiled function; each costs a full forward and backward pass of its batch.

  Args:
    images: [N, H, W, C]: the images to draw each path's batch from, or the one batch.
    samples_per_length: routes per length (Veit used about 1,000).
    lengths: lengths to sample, default 0..num_blocks.
    batch_size: images per path, drawn afresh for every path (Veit: a training batch); None: every
      path on all N images.
    (other arguments as in `single_path_gradient`.)
  Returns:
    SampledPathGradients; its `routes` and `batches` name what each norm was computed on.
  Raises:
    ValueError: plain net, samples_per_length < 1, lengths outside [0, num_blocks], batch_size < 1
      or > N, bad images or labels.
  """
  v, images, labels, max_batch, inv_total = _prepare(model, variables, images, labels,
                                                     max_batch)
  n = model.num_blocks
  lengths = _common.check_counts(np.arange(n + 1) if lengths is None else lengths, "lengths", n)
  samples_per_length = _common.check_count(samples_per_length, "samples_per_length")
  # A route of length k: back-propagate through the branches of a random k-subset of blocks.
  drawn = _common.random_subsets(key, lengths, samples_per_length, n)
  branches = _common.branches_per_block(model)
  if branches > 1:  # which branch of each chosen block; k = 1 keeps the draws of before
    which = jax.random.randint(jax.random.fold_in(key, 2), drawn.shape, 1, branches + 1)
    drawn = (drawn * np.asarray(which)).astype(np.int8)
  routes = jnp.asarray(drawn.reshape(-1, n), jnp.float32)
  batches = None
  if batch_size is None:
    fn = functools.partial(_route_sq_norms, model, v, inv_total)
    sq = _common.run_chunked(fn, routes, routes[0], images, labels, max_batch, True)
  else:
    # fold_in: the routes stay those of the fixed-batch protocol for the same key.
    batches = _common.random_batches(jax.random.fold_in(key, 1), routes.shape[0],
                                     images.shape[0], batch_size)
    fn = functools.partial(_batch_route_sq_norms, model, v,
                           jnp.float32(1.0 / batch_size))  # each path's mean loss
    sq = _common.run_batched_rows(fn, routes, batches, images, labels, max_batch)
    batches = batches.reshape(lengths.size, samples_per_length, -1)
  norms = np.sqrt(sq.astype(np.float64)).reshape(lengths.size, samples_per_length)
  mean_norm = norms.mean(axis=1)
  num_paths = path_counts(n, branches)[lengths]
  return SampledPathGradients(num_blocks=n, lengths=lengths, norms=norms, mean_norm=mean_norm,
                              std_norm=norms.std(axis=1), num_paths=num_paths,
                              total=num_paths * mean_norm, routes=drawn, batches=batches,
                              branches_per_block=branches)


@dataclasses.dataclass(frozen=True)
class ExactPathGradients:
  """Exact gradient by path length (see the module docstring for how it differs from Veit's).

  Attributes:
    lengths: [n+1] path lengths 0..n.
    grads: [n+1, N, H, W, C] G(k), the sum of the gradients of all paths of length k.
    norm: [n+1] float64 ||G(k)||, the norm of the summed gradient (NOT C(n, k) * E||g_path||).
    num_paths: [n+1] C(n, k), float64 (C(n, k) b^k for b branches per block); norm / num_paths
      is the norm of the mean path gradient.
  """
  lengths: np.ndarray
  grads: np.ndarray
  norm: np.ndarray
  num_paths: np.ndarray


def exact_path_gradients(model: Any, variables: Mapping[str, Any], images: Any, labels: Any, *,
                         max_batch: int = _common.DEFAULT_MAX_BATCH) -> ExactPathGradients:
  """The gradient summed over all paths of each length, exactly, in one stacked pass.

  The model runs on (n+1) stacked copies of the batch; each residual join shifts the branch's
  cotangent by one copy, so copy k of the gradient at the first block holds exactly the paths
  through k branches (`BlockControls.path_stack`). The loss reads copy 0 only.

  Memory: (n+1) * N images per pass (ResNet-110, N = 8: 440 images). Images are chunked so that
  (n+1) * chunk <= max_batch (at least one image per chunk); the result is exact for any chunking
  because the loss is a sum over images and eval-mode BN treats images independently.

  Args:
    (as in `single_path_gradient`, without a route.)
  Returns:
    ExactPathGradients with grads [n+1, N, H, W, C] and norms [n+1].
  Raises:
    ValueError: plain net, bad images or labels.
  """
  v, images, labels, max_batch, inv_total = _prepare(model, variables, images, labels,
                                                     max_batch)
  copies = model.num_blocks + 1
  fn = functools.partial(_exact_grads, model, v, inv_total)
  # One dummy row costs `copies` images: the budget per call is copies * image_chunk.
  dummy = jnp.zeros((1,), jnp.float32)
  grads = _common.run_chunked(fn, dummy, dummy[0], images, labels, max(1, max_batch // copies),
                              False)
  grads = np.swapaxes(grads[0], 0, 1)  # [N, K, ...] -> [K, N, ...]
  norm = np.sqrt(np.sum(np.square(grads.astype(np.float64)),
                        axis=tuple(range(1, grads.ndim))))
  num_paths = path_counts(model.num_blocks, _common.branches_per_block(model))
  return ExactPathGradients(lengths=np.arange(copies), grads=grads, norm=norm,
                            num_paths=num_paths)
