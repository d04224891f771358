"""Tests of resnet_jax.analysis against independent computations (brute force, hand-built nets).

Tiny nets (6 blocks) on 8x8 images. Variables are filled from numpy instead of `model.init` (whose
random initialisers take seconds to compile on CPU), with non-trivial BN statistics.
"""
import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tolerances
from scipy import special, stats

from resnet_jax import analysis
from resnet_jax.analysis import lesion, path_gradients, reorder
from resnet_jax.models import get_model
from resnet_jax.models.layers import BN_EPSILON

IMAGE_SHAPE = (8, 8, 3)


def fake_variables(model, images, seed=0):
  """He-scaled kernels, BN scale ~1 +- 0.2, bias/mean ~ +-0.1, var in [0.5, 1.5]."""
  shapes = jax.eval_shape(model.init, jax.random.key(0), images)
  rng = np.random.default_rng(seed)

  def fill(path, s):
    name = path[-1].key
    if name == "kernel":
      fan_out = np.prod(s.shape[-4:-2]) * s.shape[-1] if len(s.shape) >= 4 else s.shape[-1]
      return rng.normal(size=s.shape).astype(np.float32) * np.sqrt(2.0 / fan_out)
    if name == "scale":
      return (1 + 0.2 * rng.normal(size=s.shape)).astype(np.float32)
    if name in ("bias", "mean"):
      return (0.1 * rng.normal(size=s.shape)).astype(np.float32)
    if name == "var":
      return rng.uniform(0.5, 1.5, size=s.shape).astype(np.float32)
    raise KeyError(name)
  return jax.tree_util.tree_map_with_path(fill, shapes)


def make_net(name, batch=4, seed=0, **kwargs):
  return _make_net(name, batch, seed, tuple(sorted(kwargs.items())))


@functools.cache  # tests share nets; arrays are immutable, so sharing is safe
def _make_net(name, batch, seed, kwargs):
  model = get_model(name, **dict(kwargs))
  images = jax.random.normal(jax.random.key(seed + 1), (batch,) + IMAGE_SHAPE)
  labels = jnp.arange(batch) % 10
  return model, fake_variables(model, images, seed), images, labels


NETS = {"A": ("resnet14", {}), "B": ("resnet14", {"shortcut": "B"}),
        "preact": ("preact_resnet14", {})}


@pytest.fixture(scope="module", params=sorted(NETS))
def net(request):
  name, kwargs = NETS[request.param]
  return make_net(name, **kwargs)


def forward(model, variables, images, **kwargs):
  """model.apply, jitted: eager Flax runs op by op and takes seconds even for tiny nets."""
  return jax.jit(functools.partial(model.apply, **kwargs))(variables, images)


def one_trace_only(mp, module, core):
  """Swaps module.<core> for a fresh jit of its `<core>_impl` that raises when traced twice.

  The analyses look their jitted core up at call time, so every later call goes through this
  copy: if new masks, routes or orders of the same shape recompiled, the test would fail.
  """
  chex.clear_trace_counter()  # chex keys its counters by call stack, so reset them per test
  impl = chex.assert_max_traces(getattr(module, f"{core}_impl"), n=1)
  mp.setattr(module, core, jax.jit(impl, static_argnums=0))


def loss_grad_at_block_input(model, variables, images, labels):
  """The ordinary gradient of the mean cross-entropy w.r.t. the first block's input."""
  shape = analysis.block_input_shape(model, variables, images)

  def loss(delta):
    logits = model.apply({**variables, "perturbations": {"block_input": delta}}, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  return np.asarray(jax.jit(jax.grad(loss))(jnp.zeros(shape)))


# --------------------------------------------------------------------------------- bad images

def _every_analysis(model, variables, labels, key):
  """Each analysis of the package as a function of the images alone."""
  n = model.num_blocks
  return {
      "lesion_logits": lambda x: analysis.lesion_logits(model, variables, x, np.ones((1, n))),
      "lesion_errors": lambda x: analysis.lesion_errors(model, variables, x, labels,
                                                        np.ones((1, n))),
      "lesion_single": lambda x: analysis.lesion_single(model, variables, x, labels),
      "lesion_k": lambda x: analysis.lesion_k(model, variables, x, labels, [1], 2, key),
      "lesion_reorder": lambda x: analysis.lesion_reorder(model, variables, x, labels, [0], 2,
                                                          key),
      "response_std": lambda x: analysis.response_std(model, variables, x),
      "single_path_gradient": lambda x: analysis.single_path_gradient(model, variables, x,
                                                                      labels, np.ones(n)),
      "sampled_path_gradients": lambda x: analysis.sampled_path_gradients(
          model, variables, x, labels, key, samples_per_length=1),
      "exact_path_gradients": lambda x: analysis.exact_path_gradients(model, variables, x,
                                                                      labels),
  }


ANALYSES = ("lesion_logits", "lesion_errors", "lesion_single", "lesion_k", "lesion_reorder",
            "response_std", "single_path_gradient", "sampled_path_gradients",
            "exact_path_gradients")


@pytest.mark.parametrize("name", ANALYSES)
def test_every_analysis_rejects_non_finite_images(name):
  # Before: lesions of NaN images returned 0.875 (argmax of NaN logits is class 0) and path
  # gradients norms of exactly 0. The check runs before anything compiles.
  model, variables, images, labels = make_net("resnet14")
  bad = np.array(images)
  bad[1, 2, 3, 0] = np.nan
  bad[3, 0, 0, :] = np.inf
  call = _every_analysis(model, variables, labels, jax.random.key(0))[name]
  with pytest.raises(ValueError, match=r"images hold 4 non-finite values \(NaN or inf\) in 2 "
                     r"of 4 images, at indices \[1, 3\]"):
    call(bad)


# ---------------------------------------------------------------------------------------- paths

def test_exact_path_gradients_match_brute_force_over_all_routes(net):
  model, variables, images, labels = net
  n = model.num_blocks
  exact = analysis.exact_path_gradients(model, variables, images, labels)
  routes = np.array(list(itertools.product([0, 1], repeat=n)))
  per_route = analysis.single_path_gradients(model, variables, images, labels, routes)
  brute = np.stack([per_route[routes.sum(1) == k].sum(0) for k in range(n + 1)])
  assert exact.grads.shape == (n + 1,) + images.shape[:3] + (16,)
  # One sweep against 64 routes summed: the longest sums are the convs' over 9 * 64 inputs.
  tolerances.assert_close(exact.grads, brute, terms=9 * 64)
  tolerances.assert_positive_sums_close(
      exact.norm, np.linalg.norm(brute.reshape(n + 1, -1), axis=1), terms=brute[0].size)
  full = loss_grad_at_block_input(model, variables, images, labels)
  tolerances.assert_close(exact.grads.sum(0), full, terms=9 * 64)


def test_exact_path_gradients_chunked_over_images():
  model, variables, images, labels = make_net("resnet14")
  exact = analysis.exact_path_gradients(model, variables, images, labels)
  # Two images per pass: the loss is a sum over images and eval BN treats them independently.
  chunked = analysis.exact_path_gradients(model, variables, images, labels, max_batch=14)
  tolerances.assert_close(chunked.grads, exact.grads, terms=9 * 64)


def test_single_path_gradient_route_and_retrace(monkeypatch):
  model, variables, images, labels = make_net("resnet14")
  one_trace_only(monkeypatch, path_gradients, "_route_grads")
  all_skip = analysis.single_path_gradient(model, variables, images, labels, np.zeros(6))
  route = np.array([1, 0, 1, 1, 0, 0])
  g = analysis.single_path_gradient(model, variables, images, labels, route)  # no retrace
  assert g.shape == (4, 8, 8, 16) and not np.allclose(g, all_skip)
  batched = analysis.single_path_gradients(model, variables, images, labels, route[None])
  tolerances.assert_close(g, batched[0], terms=9 * 64)  # one route alone or vmapped


def test_sampled_path_gradients(monkeypatch):
  model, variables, images, labels = make_net("resnet14")
  one_trace_only(monkeypatch, path_gradients, "_route_sq_norms")
  samples = 8
  res = analysis.sampled_path_gradients(model, variables, images, labels, jax.random.key(3),
                                        samples_per_length=samples)
  assert res.norms.shape == (7, samples) and res.mean_norm.shape == (7,)
  np.testing.assert_array_equal(res.lengths, np.arange(7))
  # All 64 single-path gradients (the brute-force call above, compiled already).
  routes = np.array(list(itertools.product([0, 1], repeat=6)))
  singles = analysis.single_path_gradients(model, variables, images, labels, routes)
  single_norms = np.linalg.norm(singles.reshape(64, -1), axis=1)
  # Norms of gradients of 4 * 8 * 8 * 16 elements.
  terms = singles[0].size
  tolerances.assert_positive_sums_close(res.mean_norm[0], single_norms[0], terms=terms)  # skips
  tolerances.assert_positive_sums_close(res.mean_norm[6], single_norms[63], terms=terms)
  assert res.std_norm[0] <= tolerances.EPS32 * terms * res.mean_norm[0]  # one route, 8 times
  # Every k = 1 sample is one of the six one-branch paths (exactly one 1 in its route).
  dist = np.abs(res.norms[1][:, None] - single_norms[None, routes.sum(1) == 1])
  assert np.all(dist.min(axis=1) <= tolerances.EPS32 * terms * single_norms.max())
  np.testing.assert_allclose(res.total, special.comb(6, np.arange(7)) * res.mean_norm)
  # New random routes, same shapes: raises if they retraced.
  other = analysis.sampled_path_gradients(model, variables, images, labels, jax.random.key(4),
                                          samples_per_length=samples)
  assert not np.allclose(other.norms[2:5], res.norms[2:5])


def test_random_batches():
  batches = analysis.random_batches(jax.random.key(0), 50, 10, 4)
  assert batches.shape == (50, 4) and batches.min() >= 0 and batches.max() < 10
  assert all(len(set(row)) == 4 for row in batches.tolist())  # no image twice in a batch
  assert len({tuple(row) for row in batches.tolist()}) > 40  # fresh batches, not one repeated
  np.testing.assert_array_equal(batches, analysis.random_batches(jax.random.key(0), 50, 10, 4))
  assert not np.array_equal(batches, analysis.random_batches(jax.random.key(1), 50, 10, 4))
  # Every image turns up about equally often: 50 * 4 / 10 = 20 times each.
  assert np.bincount(batches.ravel(), minlength=10).min() >= 8
  with pytest.raises(ValueError, match="at least 5 images"):
    analysis.random_batches(jax.random.key(0), 1, 4, 5)


def test_sampled_path_gradients_on_a_fresh_batch_per_path(monkeypatch):
  # Veit's protocol: every sampled path gets its own random batch of the images given.
  model, variables, images, labels = make_net("resnet14", batch=8)
  key = jax.random.key(7)
  with monkeypatch.context() as mp:
    one_trace_only(mp, path_gradients, "_batch_route_sq_norms")
    res = analysis.sampled_path_gradients(model, variables, images, labels, key,
                                          samples_per_length=2, batch_size=3)
    other = analysis.sampled_path_gradients(model, variables, images, labels,
                                            jax.random.key(8), samples_per_length=2,
                                            batch_size=3)  # raises if it retraced
  assert res.batches.shape == (7, 2, 3) and res.routes.shape == (7, 2, 6)
  assert not np.array_equal(res.batches, other.batches)
  assert len({tuple(b) for b in res.batches.reshape(-1, 3).tolist()}) > 7
  np.testing.assert_array_equal(res.routes.sum(-1), np.repeat(np.arange(7)[:, None], 2, 1))
  # Each norm is that of the single-path gradient of its route on its own three images.
  for k, s in itertools.product(range(7), range(2)):
    batch = res.batches[k, s]
    g = analysis.single_path_gradient(model, variables, images[batch], labels[batch],
                                      res.routes[k, s].astype(int))
    tolerances.assert_positive_sums_close(res.norms[k, s], np.linalg.norm(g), terms=g.size)
  # Reproducible from the key, whatever the chunking; the routes are the fixed protocol's.
  chunked = analysis.sampled_path_gradients(model, variables, images, labels, key,
                                            samples_per_length=2, batch_size=3, max_batch=2)
  np.testing.assert_array_equal(chunked.batches, res.batches)
  tolerances.assert_positive_sums_close(chunked.norms, res.norms, terms=3 * 8 * 8 * 16)
  fixed = analysis.sampled_path_gradients(model, variables, images[:3], labels[:3], key,
                                          samples_per_length=2)
  np.testing.assert_array_equal(fixed.routes, res.routes)
  assert fixed.batches is None
  with pytest.raises(ValueError, match="at least 9 images"):
    analysis.sampled_path_gradients(model, variables, images, labels, key,
                                    samples_per_length=2, batch_size=9)


@pytest.mark.parametrize("n", [0, 6, 54, 1000])
def test_path_length_distribution(n):
  dist = analysis.path_length_distribution(n)
  assert dist.shape == (n + 1,)
  np.testing.assert_allclose(dist.sum(), 1.0, rtol=1e-12)
  exact = np.array([special.comb(n, k, exact=True) / 2**n for k in range(n + 1)], np.float64)
  np.testing.assert_allclose(dist, exact, rtol=1e-9, atol=1e-300)


@pytest.mark.parametrize("n", [0, 6, 54, 1029, 1030])
def test_path_counts(n):
  counts = analysis.path_counts(n)
  exact = [special.comb(n, k, exact=True) for k in range(n + 1)]
  too_big = np.array([c > int(np.finfo(np.float64).max) for c in exact])
  assert counts.dtype == np.float64 and too_big.any() == (n >= 1030)
  np.testing.assert_array_equal(np.isinf(counts), too_big)  # inf exactly where float64 overflows
  finite = np.array([float(c) for c, big in zip(exact, too_big) if not big])
  np.testing.assert_allclose(counts[~too_big], finite, rtol=1e-11)


def test_path_length_distribution_veit_spread():
  # Veit et al.: "95% of paths go through 19-35 modules" of a 54-block net. That range holds 98%;
  # the shortest range holding 95% is 20-34, inside it.
  dist = analysis.path_length_distribution(54)
  assert dist[19:36].sum() >= 0.95
  assert analysis.effective_paths(dist, 0.95) == (20, 34)


def test_effective_paths_hand_made():
  total = [0.0, 1.0, 5.0, 3.0, 1.0, 0.0]
  assert analysis.effective_paths(total, 0.5) == (2, 2)
  assert analysis.effective_paths(total, 0.8) == (2, 3)
  assert analysis.effective_paths(total, 0.9) == (1, 3)
  assert analysis.effective_paths(total, 1.0) == (1, 4)
  assert analysis.effective_paths([2.0, 0.0, 2.0], 1.0) == (0, 2)


def test_window_share_checks_veits_window_directly():
  total = [0.0, 1.0, 5.0, 3.0, 1.0, 0.0]
  assert analysis.window_share(total, (2, 3)) == 0.8
  assert analysis.window_share(total, (0, 5)) == 1.0
  assert analysis.window_share(total, (4, 40)) == 0.1  # no paths past n: they hold nothing
  assert analysis.window_share(total, (7, 9)) == 0.0
  # A curve like Veit's Fig. 6c: T(k) = C(54, k) r^k, single-path gradients falling by a factor 4
  # per block. The shortest window holding 90% is 6-15, which can never say "5-17"; the share of
  # 5-17 itself is what checks the claim that "almost all" of the gradient comes from there.
  veit = special.comb(54, np.arange(55)) * 0.25 ** np.arange(55)
  assert analysis.effective_paths(veit, 0.9) == (6, 15)
  assert 0.97 < analysis.window_share(veit, (5, 17)) < 0.98
  # Veit et al.: paths of length 5-17 are 0.45% of all paths.
  share = analysis.window_share(analysis.path_length_distribution(54), (5, 17))
  assert round(100 * share, 2) == 0.45


@pytest.mark.parametrize("window", [(3, 2), (-1, 2), (1.5, 3), (1,), "1-3", (1, 2, 3)])
def test_window_share_rejects_bad_windows(window):
  with pytest.raises(ValueError, match="window"):
    analysis.window_share([1.0, 2.0, 3.0], window)
  with pytest.raises(ValueError, match="zero"):
    analysis.window_share([0.0, 0.0], (0, 1))


@pytest.mark.parametrize("total,fraction", [
    ([1.0, 2.0], 0.0), ([1.0, 2.0], 1.5), ([1.0, -2.0], 0.5), ([0.0, 0.0], 0.5), ([[1.0]], 0.5),
    ([], 0.5), ([1.0, np.nan], 0.5)])
def test_effective_paths_rejects_bad_input(total, fraction):
  with pytest.raises(ValueError):
    analysis.effective_paths(total, fraction)


def test_path_analyses_reject_bad_input():
  model, variables, images, labels = make_net("resnet14")
  with pytest.raises(ValueError, match="route"):
    analysis.single_path_gradient(model, variables, images, labels, np.ones(5))
  with pytest.raises(ValueError, match="0"):
    analysis.single_path_gradient(model, variables, images, labels, np.full(6, 0.5))
  with pytest.raises(ValueError, match="labels"):
    analysis.exact_path_gradients(model, variables, images, labels[:3])
  with pytest.raises(ValueError, match="lengths"):
    analysis.sampled_path_gradients(model, variables, images, labels, jax.random.key(0),
                                    samples_per_length=2, lengths=[7])
  with pytest.raises(ValueError, match="samples_per_length"):
    analysis.sampled_path_gradients(model, variables, images, labels, jax.random.key(0),
                                    samples_per_length=0)
  with pytest.raises(ValueError, match="num_blocks"):
    analysis.path_length_distribution(-1)
  plain, plain_vars, _, _ = make_net("plain14")
  with pytest.raises(ValueError, match="plain"):
    analysis.exact_path_gradients(plain, plain_vars, images, labels)


# --------------------------------------------------------------------------------------- lesion

def _conv(x, kernel, stride, padding):
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), [(padding, padding)] * 2,
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def _bn(x, params, stats):
  def c(a):  # explicit [1, 1, 1, C]: rank promotion raises
    return jnp.reshape(a, (1, 1, 1, -1))
  return (x - c(stats["mean"])) / jnp.sqrt(c(stats["var"]) + BN_EPSILON) * c(params["scale"]) + \
      c(params["bias"])


def _block_tree(tree, stage, b):
  """Block b (from 0) of a stage: block1 stands alone, the others are stacked (scanned)."""
  if b == 0:
    return tree[f"stage{stage}"]["block1"]
  return jax.tree.map(lambda a: a[b - 1], tree[f"stage{stage}"]["blocks"]["block"])


def all_branches_removed_logits(model, variables, images):
  """A post-activation CIFAR net with every residual branch deleted, built from the params.

  stem conv-BN-ReLU; per block only its shortcut (option A: subsample + zero channels; B: 1x1
  projection + BN) and the v1 post-addition ReLU; then pooling and the dense head. For a plain
  twin, gate 0 is the option-A identity (no ReLU, but its input is already >= 0), the same net.
  """
  p, s = variables["params"], variables["batch_stats"]
  x = jax.nn.relu(_bn(_conv(images, p["stem_conv"]["kernel"], 1, 1), p["stem_bn"], s["stem_bn"]))
  for stage, width in zip((1, 2, 3), (16, 32, 64)):
    count = model.stage_sizes[stage - 1]
    for b in range(count):
      bp, bs = _block_tree(p, stage, b), _block_tree(s, stage, b)
      stride = 2 if stage > 1 and b == 0 else 1
      if "conv_proj" in bp:
        x = _bn(_conv(x, bp["conv_proj"]["kernel"], stride, 0), bp["bn_proj"], bs["bn_proj"])
      elif stride > 1 or x.shape[-1] != width:
        x = x[:, ::stride, ::stride, :]
        x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, width - x.shape[-1])))
      x = jax.nn.relu(x)
  return jnp.mean(x, axis=(1, 2)) @ p["head"]["kernel"] + p["head"]["bias"][None]


@pytest.mark.parametrize("name,kwargs", [("resnet14", {}), ("resnet14", {"shortcut": "B"}),
                                         ("plain14", {})])
def test_lesion_all_and_none(name, kwargs):
  model, variables, images, _ = make_net(name, batch=16, **kwargs)
  full = np.asarray(forward(model, variables, images))
  hand = np.asarray(jax.jit(functools.partial(all_branches_removed_logits, model))(variables,
                                                                                  images))
  # Labels that the intact net gets half right and the gutted net gets right only by accident.
  labels = np.where(np.arange(16) % 2 == 0, full.argmax(1), (full.argmax(1) + 1) % 10)
  gates = np.stack([np.ones(6), np.zeros(6)])
  logits = analysis.lesion_logits(model, variables, images, gates)
  # Other programs than the lesion's (a plain forward, the net by hand): the longest sums are the
  # 3x3 convs over 9 * 64 inputs.
  tolerances.assert_close(logits[0], full, terms=9 * 64)
  tolerances.assert_close(logits[1], hand, terms=9 * 64)
  if name == "resnet14" and not kwargs:  # errors from the same masks (one more compile)
    errors = analysis.lesion_errors(model, variables, images, labels, gates)
    np.testing.assert_allclose(errors, [np.mean(full.argmax(1) != labels),
                                        np.mean(hand.argmax(1) != labels)])
    assert errors[0] == 0.5


def test_lesion_single_k_and_retrace():
  model, variables, images, labels = make_net("resnet14", batch=8)
  one_hot_off = 1.0 - np.eye(6)
  # Every call in this block has 6 gate rows and 8 images: one trace must serve them all.
  with pytest.MonkeyPatch.context() as mp:
    one_trace_only(mp, lesion, "_lesion_wrong")
    single = analysis.lesion_single(model, variables, images, labels)
    again = analysis.lesion_errors(model, variables, images, labels, one_hot_off[::-1])
    res = analysis.lesion_k(model, variables, images, labels, [0, 3, 6], 2, jax.random.key(5))
    base, gutted = analysis.lesion_errors(model, variables, images, labels,
                                          np.stack([np.ones(6), np.zeros(6)] * 3))[:2]
  np.testing.assert_array_equal(again, single[::-1])
  assert single.shape == (6,) and np.all((single >= 0) & (single <= 1))
  np.testing.assert_array_equal(res.errors[0], base)
  np.testing.assert_array_equal(res.errors[2], gutted)
  assert res.mean.shape == res.std.shape == (3,) and res.std[0] == 0
  # Chunking rows and images into tiny fixed-shape pieces gives the same answer.
  chunked = analysis.lesion_errors(model, variables, images, labels, one_hot_off, max_batch=3)
  np.testing.assert_array_equal(chunked, single)


def test_lesion_reorder_matches_hand_permuted_variables(monkeypatch):
  model, variables, images, labels = make_net("resnet20", batch=8)
  one_trace_only(monkeypatch, reorder, "_reorder_wrong")
  full = np.asarray(forward(model, variables, images)).argmax(1)
  labels = jnp.asarray(full)  # the intact net is always right
  res = analysis.lesion_reorder(model, variables, images, labels, [0, 1, 2], 3,
                                jax.random.key(1))
  assert res.orders.shape == (3, 3, 9) and res.errors.shape == res.tau.shape == (3, 3)
  np.testing.assert_array_equal(res.errors[0], 0.0)
  np.testing.assert_array_equal(res.tau[0], 1.0)
  for order, tau in zip(res.orders.reshape(-1, 9), res.tau.reshape(-1)):
    assert sorted(order) == list(range(9))
    np.testing.assert_allclose(tau, stats.kendalltau(np.arange(9), order).statistic)
  # One swap moves blocks 2 and 3 of one stage (positions 1-2, 4-5 or 7-8).
  moved = [tuple(np.flatnonzero(o != np.arange(9))) for o in res.orders[1]]
  assert all(m in {(1, 2), (4, 5), (7, 8)} for m in moved)
  # Rebuild one reordered net by hand and compare its error.
  order = res.orders[1, 0]
  permuted = jax.tree.map(lambda a: a, variables)
  for stage, start in ((1, 0), (2, 3), (3, 6)):
    perm = order[start + 1:start + 3] - start - 1
    for coll in ("params", "batch_stats"):
      tree = permuted[coll][f"stage{stage}"]["blocks"]
      permuted[coll][f"stage{stage}"]["blocks"] = jax.tree.map(lambda a, p=perm: a[p], tree)
  hand = np.asarray(forward(model, permuted, images)).argmax(1)
  assert res.errors[1, 0] == np.mean(hand != full)
  # New random orders, same shapes: raises if they retraced.
  analysis.lesion_reorder(model, variables, images, labels, [0, 1, 2], 3, jax.random.key(2))


def test_lesion_rejects_bad_input():
  model, variables, images, labels = make_net("resnet14")
  with pytest.raises(ValueError, match="gates"):
    analysis.lesion_errors(model, variables, images, labels, np.ones((2, 5)))
  with pytest.raises(ValueError, match="gates"):
    analysis.lesion_errors(model, variables, images, labels, np.ones(6))
  with pytest.raises(ValueError, match="labels"):
    analysis.lesion_errors(model, variables, images, labels + 10, np.ones((1, 6)))
  with pytest.raises(ValueError, match="ks"):
    analysis.lesion_k(model, variables, images, labels, [7], 2, jax.random.key(0))
  with pytest.raises(ValueError, match="interchangeable"):
    analysis.lesion_reorder(model, variables, images, labels, [1], 2, jax.random.key(0))
  with pytest.raises(ValueError, match="max_batch"):
    analysis.lesion_single(model, variables, images, labels, max_batch=0)


def test_lesion_damage_is_the_share_of_the_way_to_chance():
  # Ten classes: chance error 0.9. Intact 0.1, one-block deletions 0.1 and 0.5: on average 0.2 of
  # the 0.8 points to chance, 25%.
  assert analysis.lesion_damage([0.1, 0.5], 0.1, 10) == pytest.approx(0.25)
  assert analysis.lesion_damage([0.1, 0.1], 0.1, 10) == 0.0
  assert analysis.lesion_damage([0.9, 0.9], 0.1, 10) == pytest.approx(1.0)
  # A net at chance cannot get worse; a slope or a plain increase would call it robust.
  assert np.isnan(analysis.lesion_damage([0.9, 0.9], 0.88, 10))
  assert np.isnan(analysis.lesion_damage([0.45], 0.45, 2))  # 90% of chance 0.5
  with pytest.raises(ValueError, match="num_classes"):
    analysis.lesion_damage([0.1], 0.1, 1)
  with pytest.raises(ValueError, match="finite"):
    analysis.lesion_damage([np.nan], 0.1, 10)


# ------------------------------------------------------------------------------------ responses

def test_response_std_names_values_and_hand_check():
  model, variables, images, _ = make_net("resnet14", batch=6)
  stds = analysis.response_std(model, variables, images)
  expected = ["stem"] + [f"stage{s}_block{b}_response{r}" for s in (1, 2, 3) for b in (1, 2)
                         for r in (1, 2)]
  assert list(stds) == expected  # 2 per basic block + the stem, in network order
  assert all(v > 0 for v in stds.values())
  p, s = variables["params"], variables["batch_stats"]
  stem = np.asarray(_bn(_conv(images, p["stem_conv"]["kernel"], 1, 1), p["stem_bn"],
                        s["stem_bn"]), np.float64)
  # Standard deviations over the 6 * 8 * 8 * 16 values of a response.
  terms = stem.size
  tolerances.assert_positive_sums_close(stds["stem"], stem.std(), terms=terms)
  per_channel = analysis.response_std(model, variables, images, per_channel=True)
  tolerances.assert_positive_sums_close(per_channel["stem"], stem.std(axis=(0, 1, 2)).mean(),
                                        terms=terms)
  # A scanned block's response, read from the sown intermediates directly.
  _, state = forward(model, variables, images, mutable=["intermediates"])
  r = np.asarray(state["intermediates"]["stage3"]["blocks"]["block"]["response2"][0][0])
  tolerances.assert_positive_sums_close(stds["stage3_block2_response2"], r.std(), terms=terms)
  # Chunks of 4 (the last one padded) merge into the same statistics.
  chunked = analysis.response_std(model, variables, images, batch_size=4)
  tolerances.assert_positive_sums_close(list(chunked.values()), list(stds.values()), terms=terms)
  ranked = analysis.sorted_response_std(stds)
  assert [v for _, v in ranked] == sorted(stds.values(), reverse=True)


@pytest.mark.parametrize("name,count", [("plain14", 13), ("preact_resnet14", 12)])
def test_response_std_other_families(name, count):
  model, variables, images, _ = make_net(name)
  stds = analysis.response_std(model, variables, images)
  assert len(stds) == count and all(v > 0 for v in stds.values())
  assert list(stds) == analysis.response_layer_names(model, variables, IMAGE_SHAPE)
