"""Convolutions, BatchNorm, shortcuts and the places where a block joins its paths.

`residual_join` is the analysis hook of the model zoo: every residual block ends in it (a
multi-residual block, with k branches, in `multi_residual_join`, which it calls; a DenseNet layer
in `dense_join`; a plain block in `plain_join`), and the per-block controls (`BlockControls`)
act there and nowhere else.
"""
import functools
from typing import Callable, Sequence

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

# He et al. 2015 initialise convolutions with N(0, 2/n); we take n = k*k*out_channels (the
# "fan_out" form, as fb.resnet.torch and torchvision do; the paper allows either fan).
he_normal = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

# The kernel gradient of a 3x3 conv is computed on slices of at least this many examples.
MIN_GRAD_SLICE = 16


def check_conv_grad_chunks(chunks: int) -> int:
  if isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1:
    raise ValueError(f"conv_grad_chunks must be an integer >= 1 (1: one kernel gradient over the "
                     f"whole batch; 8 is the fast choice on CPUs), got {chunks!r}")
  return chunks


def default_conv_grad_chunks() -> int:
  """8 where JAX's default backend is the CPU (see `sliced_grad_conv`), else 1."""
  return 8 if jax.default_backend() == "cpu" else 1


# Flax's NHWC inputs and HWIO kernels (`nn.Conv`'s dimension numbers), the only layout that
# `sliced_grad_conv` writes its backward pass for.
_NHWC_HWIO = jax.lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))
_CANONICAL = ("NHWC", "HWIO", "NHWC")


def _conv_input_grad(g: jax.Array, kernel: jax.Array, in_hw: Sequence[int], strides, pads,
                     **kwargs) -> jax.Array:
  """The cotangent of a conv's input, itself a conv in XLA's canonical NHWC/HWIO form: g,
  dilated by the strides, against the kernel flipped in space with its features swapped (as
  patches where g is smaller than the kernel)."""
  flipped = jnp.transpose(kernel[::-1, ::-1], (0, 1, 3, 2))
  padding = [(k - 1 - lo, size + lo - (out - 1) * s - 1)
             for k, size, out, s, (lo, _) in zip(kernel.shape[:2], in_hw, g.shape[1:3], strides,
                                                 pads)]
  if _smaller_than_window(g, kernel):
    return _patches_conv(g, flipped, (1, 1), padding, lhs_dilation=strides, **kwargs)
  return jax.lax.conv_general_dilated(g, flipped, (1, 1), padding, lhs_dilation=strides,
                                      dimension_numbers=_CANONICAL, **kwargs)


def _conv_kernel_grad(x: jax.Array, g: jax.Array, kernel_hw: Sequence[int], strides, pads,
                      **kwargs) -> jax.Array:
  """The cotangent of a conv's HWIO kernel, itself a conv in XLA's canonical form: the input's
  channels play the batch and its examples the contracted features ([C, H, W, N] against g as
  [H', W', N, C'], g dilated by the strides), then back to HWIO."""
  padding = [(lo, k + (out - 1) * s - size - lo)
             for k, size, out, s, (lo, _) in zip(kernel_hw, x.shape[1:3], g.shape[1:3], strides,
                                                 pads)]
  out = jax.lax.conv_general_dilated(jnp.transpose(x, (3, 1, 2, 0)), jnp.transpose(g, (1, 2, 0, 3)),
                                     (1, 1), padding, rhs_dilation=strides,
                                     dimension_numbers=_CANONICAL, **kwargs)
  return jnp.transpose(out, (1, 2, 0, 3))


def _smaller_than_window(x: jax.Array, kernel: jax.Array) -> bool:
  """Whether an NHWC input is smaller than an HWIO kernel in a spatial dimension: the convolutions
  that XLA's CPU backend rewrites with lhs and rhs swapped (the kernel slid over by the input),
  into a form that it runs as a naive loop (a 2x2x512 input about 40x slower per FLOP than a
  4x4 one, `benchmarks/xla_cpu_traps.py`)."""
  return any(size < window for size, window in zip(x.shape[1:3], kernel.shape[:2]))


def _patches_conv(x: jax.Array, kernel: jax.Array, strides: Sequence[int], pads,
                  lhs_dilation: Sequence[int] = (1, 1), **kwargs) -> jax.Array:
  """An NHWC/HWIO convolution as one matmul: the input padded (and dilated), its kh * kw shifted
  (strided) views concatenated along the features, against the kernel as [kh * kw * C, C'].
  For inputs smaller than the kernel (`_smaller_than_window`), where the patches are few; its
  gradients are pads, slices and matmuls, no convolution. `kwargs`: `precision` and
  `preferred_element_type`, as `lax.conv_general_dilated` takes them."""
  kh, kw, cin, cout = kernel.shape
  padded = jax.lax.pad(x, jnp.zeros((), x.dtype),
                       [(0, 0, 0), *((lo, hi, d - 1) for (lo, hi), d in zip(pads, lhs_dilation)),
                        (0, 0, 0)])
  out_h, out_w = ((size - window) // s + 1
                  for size, window, s in zip(padded.shape[1:3], (kh, kw), strides))
  views = [padded[:, i:i + (out_h - 1) * strides[0] + 1:strides[0],
                  j:j + (out_w - 1) * strides[1] + 1:strides[1]]
           for i in range(kh) for j in range(kw)]
  return jnp.dot(jnp.concatenate(views, axis=-1), kernel.reshape(kh * kw * cin, cout), **kwargs)


@functools.cache
def sliced_grad_conv(chunks: int) -> Callable[..., jax.Array]:
  """`lax.conv_general_dilated` with a backward pass of its own, written for XLA's CPU backend.

  The forward pass is the plain convolution. The backward pass computes both cotangents as
  convolutions in XLA's canonical form (`_conv_input_grad`, `_conv_kernel_grad`), and the kernel
  gradient on `chunks` consecutive slices of the batch (each of at least MIN_GRAD_SLICE
  examples, so fewer slices for small batches), added up. Values are exactly the convolution's,
  gradients equal to float32 rounding. Three things XLA's CPU backend does make this pay:
    * jax's own transpose rules give convolutions with permuted dimension numbers, which XLA
      rewrites into its fast form only outside control flow: inside a conditional or a loop
      body it runs them as a naive loop, tens of times slower (`benchmarks/xla_cpu_traps.py`).
      Written in the canonical form, the gradients of a skipped stochastic-depth branch
      (`nn.cond`) or of a scanned loop run at full speed;
    * the input is saved for the backward pass behind an optimization barrier. Without it XLA
      fuses the transpose of the kernel gradient's input with the elementwise ops that produced
      it, duplicating them, and the residual stream of a ResNet is such a chain (add, BN, ReLU
      from block to block): every block recomputed the chain back to the stem, a cost that grew
      with the square of the depth (`benchmarks/xla_cpu_traps.py`, `make bench-peer`);
    * the kernel gradient, the slowest part of a CIFAR ResNet's step here, runs about twice as
      fast on slices of 16 images, whose activations stay in the L2 cache;
    * a convolution whose input is smaller than its kernel (a 3x3 conv of a 2x2 or 1x1 map:
      FractalNet's last block on 32x32 images, the last stages of small-image nets) is
      rewritten by XLA with its operands swapped into a form it runs as a naive loop (2x2x512:
      about 40x slower per FLOP); such convs (forward, or the input gradient of one whose output is
      smaller than its kernel) run here as one matmul over their patches (`_patches_conv`).
  Reverse-mode only (a custom VJP): forward-mode differentiation of such a conv raises. Other
  layouts, dilations or feature groups get the plain convolution. Cached, so that models built
  with the same option compare equal.

  Args:
    chunks: the most slices, >= 1.
  Returns:
    conv(lhs, rhs, window_strides, padding, **kwargs), `lax.conv_general_dilated`'s signature as
    `nn.Conv` calls it, with the batch first in `lhs` (Flax's NHWC).
  """
  def conv(lhs: jax.Array, rhs: jax.Array, window_strides, padding, *, lhs_dilation=None,
           rhs_dilation=None, dimension_numbers=None, feature_group_count: int = 1,
           **kwargs) -> jax.Array:
    plain = functools.partial(jax.lax.conv_general_dilated, window_strides=window_strides,
                              padding=padding, lhs_dilation=lhs_dilation,
                              rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                              feature_group_count=feature_group_count, **kwargs)
    dilated = any(d != 1 for d in (lhs_dilation or ()) + (rhs_dilation or ()))
    if (lhs.ndim != 4 or dilated or feature_group_count != 1
        or jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
        != _NHWC_HWIO):
      return plain(lhs, rhs)
    strides = tuple(window_strides)
    pads = (jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
            if isinstance(padding, str) else tuple(tuple(p) for p in padding))
    if _smaller_than_window(lhs, rhs) and all(p >= 0 for pair in pads for p in pair):
      return _patches_conv(lhs, rhs, strides, pads, **kwargs)
    slices = max(1, min(chunks, lhs.shape[0] // MIN_GRAD_SLICE))

    @jax.custom_vjp
    def canonical(x, k):
      return plain(x, k)

    def forward(x, k):
      return plain(x, k), (jax.lax.optimization_barrier(x), k)

    def backward(residuals, g):
      x, k = residuals
      dx = _conv_input_grad(g, k, x.shape[1:3], strides, pads, **kwargs)
      parts = [_conv_kernel_grad(xs, gs, k.shape[:2], strides, pads, **kwargs)
               for xs, gs in zip(jnp.array_split(x, slices), jnp.array_split(g, slices))]
      return dx, functools.reduce(jnp.add, parts).astype(k.dtype)

    canonical.defvjp(forward, backward)
    return canonical(lhs, rhs)
  return conv


def conv_op(grad_chunks: int) -> Callable[..., jax.Array] | None:
  """`nn.Conv`'s `conv_general_dilated` for a net's `conv_grad_chunks`: `sliced_grad_conv` above
  1, else None (Flax's own, the plain convolution)."""
  return sliced_grad_conv(grad_chunks) if grad_chunks > 1 else None


def conv3x3(features: int, *, strides: int = 1, grad_chunks: int = 1, name: str | None = None
            ) -> nn.Conv:
  """A 3x3 convolution, padding 1, no bias, He init; `grad_chunks` > 1 computes its kernel
  gradient on slices of the batch (`sliced_grad_conv`: the same values and gradients)."""
  return nn.Conv(features, (3, 3), strides=strides, padding=1, use_bias=False,
                 kernel_init=he_normal,
                 conv_general_dilated=conv_op(grad_chunks), name=name)


def conv1x1(features: int, *, strides: int = 1, grad_chunks: int = 1, name: str | None = None
            ) -> nn.Conv:
  """A 1x1 convolution, no bias, He init; `grad_chunks` as `conv3x3`'s."""
  return nn.Conv(features, (1, 1), strides=strides, padding=0, use_bias=False,
                 kernel_init=he_normal,
                 conv_general_dilated=conv_op(grad_chunks), name=name)


# Flax momentum 0.9 is PyTorch/Torch7 momentum 0.1, the convention of the papers' code
# (fb.resnet.torch); Flax's own default of 0.99 adapts ten times slower. epsilon 1e-5 likewise.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def batch_norm(train: bool, name: str, scale_init=nn.initializers.ones) -> nn.BatchNorm:
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                      scale_init=scale_init, name=name)


SHORTCUTS = ("A", "B", "C")


def check_shortcut(shortcut: str) -> None:
  if shortcut not in SHORTCUTS:
    raise ValueError(f"shortcut must be one of {SHORTCUTS} (A: zero-pad identity, B: projection "
                     f"where shapes change, C: projection everywhere), got {shortcut!r}")


def needs_projection(shortcut: str, changes_shape: bool) -> bool:
  """Whether a block's shortcut is a 1x1 conv projection (He et al. 2015, options A/B/C)."""
  return shortcut == "C" or (shortcut == "B" and changes_shape)


def pad_shortcut(x: jax.Array, features: int, strides: int) -> jax.Array:
  """Option A: parameter-free identity, strided subsampling, zero-padded new channels.

  Args:
    x: [N, H, W, C] block input.
    features: output channels, >= C.
    strides: spatial subsampling factor.
  Returns:
    [N, ceil(H/strides), ceil(W/strides), features]; the extra channels are zero, so they carry no
    signal and no gradient, exactly as fb.resnet.torch's CIFAR shortcut.
  """
  if strides > 1:
    x = x[:, ::strides, ::strides, :]
  extra = features - x.shape[-1]
  if extra < 0:
    raise ValueError(f"option A cannot shrink channels ({x.shape[-1]} -> {features})")
  if extra:
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra)))
  return x


@flax.struct.dataclass
class BlockControls:
  """Per-block controls, traced arrays so that one compiled function serves every setting.

  Attributes:
    gate: [num_blocks] multiplies each residual branch; 1 keeps it, 0 deletes it and keeps the
      shortcut (Veit et al. 2016's lesion).
    branch_grad: [num_blocks] scales the gradient that flows back through each branch.
    skip_grad: [num_blocks] scales the gradient that flows back through each shortcut. With
      branch_grad = r and skip_grad = 1 - r for a 0/1 route r, the backward pass follows one path
      (Veit's "gradient by path length") while every forward value is unchanged.
    path_stack: static. 0 is the ordinary network. K > 0 means the activations entering the
      first block hold K stacked copies of the batch ([K*N, ...]) and each join shifts the
      branch's cotangent by one copy, so the cotangent of copy k at a block input is the sum of
      the gradients of all paths through exactly k branches (see `analysis.path_gradients`).
    keep: training only, set by the network: [num_blocks] 0/1 draws of this mini-batch. A block
      with keep 0 does not compute its branch at all (forward and backward skipped under
      `nn.cond`): stochastic depth (Huang et al. 2016) and effective-path training (Veit et al.
      2016 §5). None: every branch runs.
    sample_survival: training only, set by the network: [num_blocks] survival probabilities of a
      per-sample drop-path (each example keeps the branch with probability p, scaled by 1/p).
    skip_dropped: static. True: a branch with keep 0 is skipped (`nn.cond`). False: it is
      computed and multiplied by 0 (see `network.ResNet.skip_dropped`).
    branch_gate: [k, num_blocks] or None: multiplies branch j of each block (on top of `gate`),
      so that one branch of a multi-residual block (Abdi & Nahavandi 2016) can be deleted. The
      block axis is last, as in every other field, so `slice` and `at` treat it alike.
    branch_route: [k, num_blocks] or None: scales the gradient through branch j of each block
      (on top of `branch_grad`); a one-hot column routes the backward pass through one branch.
  """
  gate: jax.Array
  branch_grad: jax.Array
  skip_grad: jax.Array
  path_stack: int = flax.struct.field(pytree_node=False, default=0)
  keep: jax.Array | None = None
  sample_survival: jax.Array | None = None
  skip_dropped: bool = flax.struct.field(pytree_node=False, default=True)
  branch_gate: jax.Array | None = None
  branch_route: jax.Array | None = None

  @classmethod
  def default(cls, num_blocks: int, path_stack: int = 0) -> "BlockControls":
    ones = jnp.ones((num_blocks,), jnp.float32)
    return cls(gate=ones, branch_grad=ones, skip_grad=ones, path_stack=path_stack)

  @classmethod
  def route(cls, route: jax.Array, branches: int = 1) -> "BlockControls":
    """Controls whose backward pass follows one path: through branch route[b] of block b where
    route[b] >= 1 (1..branches), through its shortcut where route[b] == 0."""
    route = jnp.asarray(route, jnp.float32)
    if branches == 1:
      return cls(gate=jnp.ones_like(route), branch_grad=route, skip_grad=1.0 - route)
    chosen = jnp.arange(1, branches + 1, dtype=jnp.float32)[:, None]
    onehot = (route[None, :] == chosen).astype(jnp.float32)  # [k, num_blocks]
    taken = jnp.sum(onehot, axis=0)
    return cls(gate=jnp.ones_like(route), branch_grad=taken, skip_grad=1.0 - taken,
               branch_route=onehot)

  @property
  def num_blocks(self) -> int:
    return self.gate.shape[-1]

  def slice(self, start: int, stop: int) -> "BlockControls":
    return jax.tree.map(lambda a: a[..., start:stop], self)

  def at(self, i: int) -> "BlockControls":
    return jax.tree.map(lambda a: a[..., i], self)


@jax.custom_vjp
def scale_gradient(x: jax.Array, scale: jax.Array) -> jax.Array:
  """Returns x exactly in the forward pass; multiplies its cotangent by `scale` in the backward.

  A custom VJP rather than `sg(x) + scale * (x - sg(x))`: the forward value then does not depend
  on `scale`, so vmapping over many gradient routes does not repeat the forward pass per route.
  """
  del scale
  return x


def _scale_fwd(x, scale):
  return x, scale


def _scale_bwd(scale, g):
  return (g * scale.astype(g.dtype), jnp.zeros_like(scale))


scale_gradient.defvjp(_scale_fwd, _scale_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def shift_cotangent(x: jax.Array, copies: int) -> jax.Array:
  """Identity forward; backward moves copy k's cotangent to copy k+1 (copy 0 gets zero).

  x is [copies * N, ...]. Taking a residual branch then adds one to the path length that a
  cotangent copy stands for.
  """
  return x


def _shift_fwd(x, copies):
  return x, None


def _shift_bwd(copies, _, g):
  n = g.shape[0] // copies
  shifted = jnp.concatenate([jnp.zeros_like(g[:n]), g[:-n]], axis=0)
  return (shifted,)


shift_cotangent.defvjp(_shift_fwd, _shift_bwd)


def residual_join(shortcut: jax.Array, branch: jax.Array | Sequence[jax.Array],
                  ctrl: BlockControls | None) -> jax.Array:
  """shortcut + branch: the single point where every residual block adds its paths.

  Args:
    shortcut: [N, H, W, C] identity or projection of the block input.
    branch: [N, H, W, C] residual function F(x), or a tuple of k such branches (a multi-residual
      block: `multi_residual_join`).
    ctrl: this block's controls (scalars), or None for the plain sum.
  Returns:
    [N, H, W, C]; a post-addition ReLU, where the block has one, is applied by the caller.
  """
  branches = tuple(branch) if isinstance(branch, (tuple, list)) else (branch,)
  return multi_residual_join(shortcut, branches, ctrl)


def multi_residual_join(shortcut: jax.Array, branches: Sequence[jax.Array],
                        ctrl: BlockControls | None) -> jax.Array:
  """shortcut + sum_j branches[j], each branch with its own lesion gate and gradient route.

  A block of k branches offers k + 1 routes. Each branch shifts its cotangent by one copy under
  `path_stack`, so copy j at the first block still counts the paths through exactly j branches
  (now C(n, j) k^j of them). With k = 1 this is the ordinary residual join.

  Args:
    shortcut: [N, H, W, C].
    branches: k arrays [N, H, W, C].
    ctrl: this block's controls (`gate` etc. scalars, `branch_gate`/`branch_route` [k] or None),
      or None for the plain sum.
  """
  if ctrl is None:
    return functools.reduce(jnp.add, branches, shortcut)
  out = scale_gradient(shortcut, ctrl.skip_grad)
  for j, branch in enumerate(branches):
    grad = ctrl.branch_grad if ctrl.branch_route is None else (
        ctrl.branch_grad * ctrl.branch_route[j])
    gate = ctrl.gate if ctrl.branch_gate is None else ctrl.gate * ctrl.branch_gate[j]
    branch = scale_gradient(branch, grad)
    if ctrl.path_stack:
      branch = shift_cotangent(branch, ctrl.path_stack)
    out = out + gate.astype(branch.dtype) * branch
  return out


def residual_unit(block: nn.Module, branch_fn: Callable[[nn.Module, jax.Array], jax.Array],
                  x: jax.Array, shortcut: jax.Array, ctrl: BlockControls | None,
                  train: bool) -> jax.Array:
  """shortcut + branch_fn(block, x), the branch skipped or dropped where the controls say so.

  `branch_fn` returns F(x), or a tuple of k branches (a multi-residual block: dropping the block
  drops all of them). Every residual block computes its branch through here, so that stochastic
  depth applies to any residual family: with `ctrl.keep` set (training), a dropped block's branch
  is not computed (`nn.cond`: its forward and backward are skipped, the saving Huang et al.
  report); with `ctrl.sample_survival` set, each example keeps the branch with probability p,
  scaled by 1/p. The sum itself is `residual_join`, the analysis hook.

  Args:
    block: the calling block; `branch_fn(block, x)` creates its submodules with explicit names.
    branch_fn: the residual function F.
    x: [N, H, W, C] block input (or its pre-activation), passed to branch_fn.
    shortcut: the block's shortcut, the shape of F(x).
    ctrl: this block's scalar controls, or None.
    train: whether the network is training (the drops act only then).
  """
  if ctrl is None or not train or block.is_initializing():
    return residual_join(shortcut, branch_fn(block, x), ctrl)
  if ctrl.sample_survival is not None:
    p = ctrl.sample_survival
    kept = jax.random.bernoulli(block.make_rng("dropout"), p, (x.shape[0], 1, 1, 1))
    scale = (kept / p).astype(x.dtype)
    return residual_join(shortcut, jax.tree.map(lambda b: b * scale, branch_fn(block, x)), ctrl)
  if ctrl.keep is not None and not ctrl.skip_dropped:
    keep = ctrl.keep.astype(x.dtype)
    return residual_join(shortcut, jax.tree.map(lambda b: b * keep, branch_fn(block, x)), ctrl)
  if ctrl.keep is not None:
    # `nn.cond` stays a real conditional only outside vmap (under vmap it becomes a select that
    # computes both sides); the train step does not vmap the model.
    return nn.cond(ctrl.keep > 0,
                   lambda mdl, x, skip: residual_join(skip, branch_fn(mdl, x), ctrl),
                   lambda mdl, x, skip: skip, block, x, shortcut)
  return residual_join(shortcut, branch_fn(block, x), ctrl)


def dense_join(features: tuple[jax.Array, ...], gates: tuple[jax.Array | float, ...],
               new: jax.Array, ctrl: BlockControls | None
               ) -> tuple[tuple[jax.Array, ...], tuple[jax.Array | float, ...]]:
  """A dense layer's output: its input feature maps, then its own `new` channels (DenseNet's
  concatenation, kept as a tuple; the next reader concatenates, `dense_read`).

  The controls act as in `residual_join`, the input maps playing the shortcut and the new
  channels the branch: branch_grad / skip_grad scale the cotangents of the new channels / of the
  carried input, and path_stack shifts the new channels' cotangent by one copy. The gate travels
  with the new channels to every later reader, which scales them after its BN-ReLU: gate 0
  deletes the layer, as if its channels were sliced out of every reader's first conv. (Zeroing
  them here would not: a reader's BN-ReLU turns a zero channel into the constant
  relu(beta - gamma mu / sqrt(var + eps)).)

  Args:
    features: the [N, H, W, C_j] maps the layer read.
    gates: their gates (1.0 for maps no lesion acts on).
    new: [N, H, W, k] the layer's output.
    ctrl: this layer's controls (scalars), or None.
  Returns:
    ((*features, new), (*gates, this layer's gate)).
  """
  if ctrl is None:
    return (*features, new), (*gates, 1.0)
  features = tuple(scale_gradient(f, ctrl.skip_grad) for f in features)
  new = scale_gradient(new, ctrl.branch_grad)
  if ctrl.path_stack:
    new = shift_cotangent(new, ctrl.path_stack)
  return (*features, new), (*gates, ctrl.gate)


def dense_read(features: tuple[jax.Array, ...], gates: tuple[jax.Array | float, ...],
               bn: nn.Module) -> jax.Array:
  """relu(bn(concatenated features)), each map's channels multiplied by its gate: how every
  reader of a dense block (a later layer, the transition, the head) takes its input, so that a
  deleted layer's channels reach none of them (`dense_join`).

  Returns:
    [N, H, W, sum of C_j].
  """
  x = jnp.concatenate(features, axis=-1) if len(features) > 1 else features[0]
  x = nn.relu(bn(x))
  if all(isinstance(g, float) and g == 1.0 for g in gates):
    return x
  scale = jnp.concatenate([jnp.full((f.shape[-1],), g, x.dtype) for f, g in zip(features, gates)])
  return x * scale.reshape((1,) * (x.ndim - 1) + (-1,))


def plain_join(identity: jax.Array, transform: jax.Array, ctrl: BlockControls | None) -> jax.Array:
  """A plain block's output, with its lesion: gate 0 replaces the block's whole transform by the
  parameter-free identity (option A), Veit et al.'s comparison with deleting a VGG layer.

  A plain block has no paths to route, so the gradient controls do not apply here.
  """
  if ctrl is None:
    return transform
  gate = ctrl.gate.astype(transform.dtype)
  return gate * transform + (1.0 - gate) * identity


