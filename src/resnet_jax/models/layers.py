"""Convolutions, BatchNorm, shortcuts and the one place where a block joins its two paths.

`residual_join` is the only analysis hook of the model zoo: every residual block ends in it, and
the per-block controls (`BlockControls`) act there and nowhere else.
"""
import functools
from typing import Callable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp

# He et al. 2015 initialise convolutions with N(0, 2/n); we take n = k*k*out_channels (the
# "fan_out" form, as fb.resnet.torch and torchvision do; the paper allows either fan).
he_normal = nn.initializers.variance_scaling(2.0, "fan_out", "normal")

conv3x3 = functools.partial(nn.Conv, kernel_size=(3, 3), padding=1, use_bias=False,
                            kernel_init=he_normal)
conv1x1 = functools.partial(nn.Conv, kernel_size=(1, 1), padding=0, use_bias=False,
                            kernel_init=he_normal)

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
  """
  gate: jax.Array
  branch_grad: jax.Array
  skip_grad: jax.Array
  path_stack: int = flax.struct.field(pytree_node=False, default=0)
  keep: jax.Array | None = None
  sample_survival: jax.Array | None = None
  skip_dropped: bool = flax.struct.field(pytree_node=False, default=True)

  @classmethod
  def default(cls, num_blocks: int, path_stack: int = 0) -> "BlockControls":
    ones = jnp.ones((num_blocks,), jnp.float32)
    return cls(gate=ones, branch_grad=ones, skip_grad=ones, path_stack=path_stack)

  @classmethod
  def route(cls, route: jax.Array) -> "BlockControls":
    """Controls whose backward pass goes through the branch where route == 1, else the skip."""
    route = jnp.asarray(route, jnp.float32)
    return cls(gate=jnp.ones_like(route), branch_grad=route, skip_grad=1.0 - route)

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


def residual_join(shortcut: jax.Array, branch: jax.Array, ctrl: BlockControls | None) -> jax.Array:
  """shortcut + branch: the single point where every residual block adds its two paths.

  Args:
    shortcut: [N, H, W, C] identity or projection of the block input.
    branch: [N, H, W, C] residual function F(x).
    ctrl: this block's controls (scalars), or None for the plain sum.
  Returns:
    [N, H, W, C]; a post-addition ReLU, where the block has one, is applied by the caller.
  """
  if ctrl is None:
    return shortcut + branch
  shortcut = scale_gradient(shortcut, ctrl.skip_grad)
  branch = scale_gradient(branch, ctrl.branch_grad)
  if ctrl.path_stack:
    branch = shift_cotangent(branch, ctrl.path_stack)
  return shortcut + ctrl.gate.astype(branch.dtype) * branch


def residual_unit(block: nn.Module, branch_fn: Callable[[nn.Module, jax.Array], jax.Array],
                  x: jax.Array, shortcut: jax.Array, ctrl: BlockControls | None,
                  train: bool) -> jax.Array:
  """shortcut + branch_fn(block, x), the branch skipped or dropped where the controls say so.

  Every residual block computes its branch through here, so that stochastic depth applies to any
  residual family: with `ctrl.keep` set (training), a dropped block's branch is not computed
  (`nn.cond`: its forward and backward are skipped, the saving Huang et al. report); with
  `ctrl.sample_survival` set, each example keeps the branch with probability p, scaled by 1/p.
  The sum itself is `residual_join`, the analysis hook.

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
    return residual_join(shortcut, branch_fn(block, x) * (kept / p).astype(x.dtype), ctrl)
  if ctrl.keep is not None and not ctrl.skip_dropped:
    return residual_join(shortcut, branch_fn(block, x) * ctrl.keep.astype(x.dtype), ctrl)
  if ctrl.keep is not None:
    # `nn.cond` stays a real conditional only outside vmap (under vmap it becomes a select that
    # computes both sides); the train step does not vmap the model.
    return nn.cond(ctrl.keep > 0,
                   lambda mdl, x, skip: residual_join(skip, branch_fn(mdl, x), ctrl),
                   lambda mdl, x, skip: skip, block, x, shortcut)
  return residual_join(shortcut, branch_fn(block, x), ctrl)


def plain_join(identity: jax.Array, transform: jax.Array, ctrl: BlockControls | None) -> jax.Array:
  """A plain block's output, with its lesion: gate 0 replaces the block's whole transform by the
  parameter-free identity (option A), Veit et al.'s comparison with deleting a VGG layer.

  A plain block has no paths to route, so the gradient controls do not apply here.
  """
  if ctrl is None:
    return transform
  gate = ctrl.gate.astype(transform.dtype)
  return gate * transform + (1.0 - gate) * identity


