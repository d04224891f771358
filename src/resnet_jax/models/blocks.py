"""Residual and plain blocks. One small class per block *structure* (He 2015 v1, He 2016 v2).

Every block is called as `block(x, ctrl, train)` with `ctrl` its scalar `BlockControls` (or None).
A residual block computes its shortcut, then its branch through `layers.residual_unit` (which
can skip the branch for stochastic depth and ends in `layers.residual_join`); a plain twin ends
in `layers.plain_join`. A block owns its
shortcut and options, and declares in `residual` whether it adds a shortcut (paths to analyse).

Responses (He et al. 2015, Fig. 7) are sown into the "intermediates" collection under the names
`response1`, `response2`, ... in branch order, one per 3x3 conv: the output of the BN that
follows the conv, before its ReLU or the addition. In pre-activation units no BN follows the last
conv of the branch, so that response is the conv output itself, just before the addition.
"""
from typing import Callable, ClassVar

import flax.linen as nn
import jax

from resnet_jax.models import layers
from resnet_jax.models.layers import BlockControls


def _shortcut(identity: jax.Array, features: int, strides: int, shortcut: str,
              project: Callable[[], jax.Array]) -> jax.Array:
  """Option A/B/C: `project()` (a 1x1 conv projection) where the option asks for one, else
  `identity`, subsampled and zero-padded where the block changes the shape."""
  changes_shape = strides != 1 or identity.shape[-1] != features
  if layers.needs_projection(shortcut, changes_shape):
    return project()
  if changes_shape:
    return layers.pad_shortcut(identity, features, strides)
  return identity


def _post_shortcut(x: jax.Array, features: int, strides: int, train: bool,
                   shortcut: str) -> jax.Array:
  """The shortcut of a post-activation block: projections are 1x1 conv + BN."""
  project = lambda: layers.batch_norm(train, "bn_proj")(
      layers.conv1x1(features, strides=strides, name="conv_proj")(x))
  return _shortcut(x, features, strides, shortcut, project)


def _two_convs(block: nn.Module, x: jax.Array, train: bool) -> jax.Array:
  """conv3x3-BN-ReLU-conv3x3-BN of He et al. 2015's basic block (and its plain twin), sowing
  each BN output as a response."""
  y = layers.conv3x3(block.features, strides=block.strides, grad_chunks=block.conv_grad_chunks,
                     name="conv1")(x)
  y = layers.batch_norm(train, "bn1")(y)
  block.sow("intermediates", "response1", y)
  y = layers.conv3x3(block.features, grad_chunks=block.conv_grad_chunks, name="conv2")(nn.relu(y))
  y = layers.batch_norm(train, "bn2", _last_bn_scale(block))(y)
  block.sow("intermediates", "response2", y)
  return y


def _last_bn_scale(block: nn.Module):
  """The scale init of a residual branch's last BN: zeros with `zero_init_last_bn` (Goyal et al.
  2017, the Flax ImageNet example: each block starts as the identity), else ones."""
  zero = getattr(block, "zero_init_last_bn", False)
  return nn.initializers.zeros_init() if zero else nn.initializers.ones


class BasicBlock(nn.Module):
  """He et al. 2015 basic block: conv3x3-BN-ReLU-conv3x3-BN, add shortcut, ReLU."""
  residual: ClassVar[bool] = True
  features: int
  strides: int = 1
  shortcut: str = "A"
  conv_grad_chunks: int = 1  # layers.sliced_grad_conv
  zero_init_last_bn: bool = False  # the branch's last BN scale starts at 0 (`_last_bn_scale`)

  @nn.compact
  def __call__(self, x: jax.Array, ctrl: BlockControls | None, train: bool) -> jax.Array:
    skip = _post_shortcut(x, self.features, self.strides, train, self.shortcut)
    return nn.relu(layers.residual_unit(self, lambda m, x: _two_convs(m, x, train), x, skip,
                                        ctrl, train))


class PlainBlock(nn.Module):
  """The plain twin of `BasicBlock`: the same two layers, no shortcut.

  `ctrl.gate` = 0 replaces the block by the parameter-free option-A identity (a lesion).
  """
  residual: ClassVar[bool] = False
  features: int
  strides: int = 1
  conv_grad_chunks: int = 1  # layers.sliced_grad_conv

  @nn.compact
  def __call__(self, x: jax.Array, ctrl: BlockControls | None, train: bool) -> jax.Array:
    y = _two_convs(self, x, train)
    identity = layers.pad_shortcut(x, self.features, self.strides)
    return layers.plain_join(identity, nn.relu(y), ctrl)


class Bottleneck(nn.Module):
  """He et al. 2015 bottleneck: 1x1 (features) - 3x3 (features) - 1x1 (4 * features).

  The paper (v1) strides the first 1x1 conv; `stride_in_3x3=True` strides the 3x3 conv instead
  (the "v1.5" placement of torchvision, Flax and MLPerf). Parameter counts are the same.
  """
  residual: ClassVar[bool] = True
  features: int
  strides: int = 1
  shortcut: str = "B"
  stride_in_3x3: bool = False
  expansion: int = 4
  conv_grad_chunks: int = 1  # layers.sliced_grad_conv
  zero_init_last_bn: bool = False  # the branch's last BN scale starts at 0 (`_last_bn_scale`)

  def _branch(self, x: jax.Array, train: bool) -> jax.Array:
    s1, s3 = (1, self.strides) if self.stride_in_3x3 else (self.strides, 1)
    y = layers.conv1x1(self.features, strides=s1, name="conv1")(x)
    y = nn.relu(layers.batch_norm(train, "bn1")(y))
    y = layers.conv3x3(self.features, strides=s3, grad_chunks=self.conv_grad_chunks,
                       name="conv2")(y)
    y = layers.batch_norm(train, "bn2")(y)
    self.sow("intermediates", "response1", y)
    y = nn.relu(y)
    y = layers.conv1x1(self.features * self.expansion, name="conv3")(y)
    return layers.batch_norm(train, "bn3", _last_bn_scale(self))(y)

  @nn.compact
  def __call__(self, x: jax.Array, ctrl: BlockControls | None, train: bool) -> jax.Array:
    skip = _post_shortcut(x, self.features * self.expansion, self.strides, train, self.shortcut)
    return nn.relu(layers.residual_unit(self, lambda m, x: m._branch(x, train), x, skip, ctrl,
                                        train))


def _preactivate(x: jax.Array, train: bool) -> jax.Array:
  """relu(bn1(x)), bn1 created under the unit being called (or its branch under `nn.cond`)."""
  return nn.relu(layers.batch_norm(train, "bn1")(x))


def preact_unit(block: nn.Module, branch_fn: Callable[[nn.Module, jax.Array], jax.Array],
                x: jax.Array, ctrl: BlockControls | None, train: bool, *, shared: bool,
                shortcut: Callable[[jax.Array], jax.Array]) -> jax.Array:
  """A pre-activation unit: shortcut + branch_fn(block, relu(bn1(x))), bn1 where it belongs.

  Where the shortcut reads the pre-activated input too (`shared`: a projection, or the network's
  first unit), the BN-ReLU is shared by both paths and runs outside the branch that stochastic
  depth can skip: a dropped unit still computes it, and its running statistics still see the
  batch. Otherwise it belongs to the branch alone and runs inside it: a dropped unit computes
  nothing.

  Args:
    block: the calling unit; bn1 is created under it.
    branch_fn: branch_fn(block, pre) -> F, the rest of the branch.
    x: [N, H, W, C] unit input.
    shared: whether `shortcut` reads the pre-activated input.
    shortcut: shortcut(pre) where shared, else shortcut(x).
  """
  if shared:
    pre = _preactivate(x, train)
    return layers.residual_unit(block, branch_fn, pre, shortcut(pre), ctrl, train)
  return layers.residual_unit(block, lambda m, x: branch_fn(m, _preactivate(x, train)), x,
                              shortcut(x), ctrl, train)


def _preact_unit_of(block: nn.Module, branch_fn, x: jax.Array, ctrl: BlockControls | None,
                    train: bool, features: int) -> jax.Array:
  """He et al. 2016: projections take the pre-activated input ("these projection shortcuts are
  also with pre-activation"), and so does the network's first unit, whose activation comes
  "right after conv1 and before splitting into two paths"."""
  changes_shape = block.strides != 1 or x.shape[-1] != features
  shared = block.first or layers.needs_projection(block.shortcut, changes_shape)
  shortcut = lambda z: _shortcut(
      z, features, block.strides, block.shortcut,
      lambda: layers.conv1x1(features, strides=block.strides, name="conv_proj")(z))
  return preact_unit(block, branch_fn, x, ctrl, train, shared=shared, shortcut=shortcut)


class PreActBlock(nn.Module):
  """He et al. 2016 full pre-activation basic unit: BN-ReLU-conv3x3-BN-ReLU-conv3x3, add."""
  residual: ClassVar[bool] = True
  features: int
  strides: int = 1
  shortcut: str = "A"
  first: bool = False
  conv_grad_chunks: int = 1  # layers.sliced_grad_conv

  def _branch(self, pre: jax.Array, train: bool) -> jax.Array:
    y = layers.conv3x3(self.features, strides=self.strides, grad_chunks=self.conv_grad_chunks,
                       name="conv1")(pre)
    y = layers.batch_norm(train, "bn2")(y)
    self.sow("intermediates", "response1", y)
    y = layers.conv3x3(self.features, grad_chunks=self.conv_grad_chunks,
                       name="conv2")(nn.relu(y))
    self.sow("intermediates", "response2", y)
    return y

  @nn.compact
  def __call__(self, x: jax.Array, ctrl: BlockControls | None, train: bool) -> jax.Array:
    return _preact_unit_of(self, lambda m, pre: m._branch(pre, train), x, ctrl, train,
                           self.features)


class PreActBottleneck(nn.Module):
  """He et al. 2016 pre-activation bottleneck: BN-ReLU-1x1-BN-ReLU-3x3-BN-ReLU-1x1, add.

  By default the stride sits in the 3x3 conv, as in fb.resnet.torch's pre-activation nets;
  `stride_in_3x3=False` strides the first 1x1 conv instead, as the authors' released code does
  (KaimingHe/resnet-1k-layers, resnet-pre-act.lua). Parameter counts are the same.
  """
  residual: ClassVar[bool] = True
  features: int
  strides: int = 1
  shortcut: str = "B"
  first: bool = False
  stride_in_3x3: bool = True
  expansion: int = 4
  conv_grad_chunks: int = 1  # layers.sliced_grad_conv

  def _branch(self, pre: jax.Array, train: bool) -> jax.Array:
    s1, s3 = (1, self.strides) if self.stride_in_3x3 else (self.strides, 1)
    y = layers.conv1x1(self.features, strides=s1, name="conv1")(pre)
    y = nn.relu(layers.batch_norm(train, "bn2")(y))
    y = layers.conv3x3(self.features, strides=s3, grad_chunks=self.conv_grad_chunks,
                       name="conv2")(y)
    y = layers.batch_norm(train, "bn3")(y)
    self.sow("intermediates", "response1", y)
    return layers.conv1x1(self.features * self.expansion, name="conv3")(nn.relu(y))

  @nn.compact
  def __call__(self, x: jax.Array, ctrl: BlockControls | None, train: bool) -> jax.Array:
    return _preact_unit_of(self, lambda m, pre: m._branch(pre, train), x, ctrl, train,
                           self.features * self.expansion)
