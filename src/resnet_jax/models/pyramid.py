"""Han, Kim & Kim 2017, Deep Pyramidal Residual Networks: units that widen at every step, as
builders of `network.ResNet`, and the names `pyramidnet{d}_a{alpha}` (additive, basic units),
`pyramidnet_mul{d}_a{alpha}` (multiplicative) and `pyramidnet_bottleneck{d}_a{alpha}`.

Details from the authors' code (jhkim89/PyramidNet, dyhan0920/PyramidNet-PyTorch): a 3x3 conv
(16) - BN stem without ReLU; units BN-conv3x3-BN-ReLU-conv3x3-BN with no ReLU after the
addition; the shortcut is a 2x2 average pool where the unit strides, then zero channels appended
up to the unit's width; head BN-ReLU-pool-dense. The width grows by alpha / N per unit (N = all
units; multiplicative: by a factor alpha^(1/N), so the last unit is 16 alpha wide), accumulated in
floating point and rounded per unit with floor(x + 0.5). Since every unit has its own width,
the stages run unrolled (`stages.UnrolledStage`). alpha may be fractional: the official
multiplicative PyramidNet-110 (mulpyramidnet.lua, 1.7M parameters) has alpha = 4.75, named
`pyramidnet_mul110_a4.75`.
"""
import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax.models import layers, network, resnet
from resnet_jax.models.family import Family
from resnet_jax.models.layers import BlockControls
from resnet_jax.models.network import ResNet, bind

STEM_WIDTH = 16
GROWTHS = ("additive", "multiplicative")
# "round": floor(x + 0.5), the official code; "floor": the README's parameter counts (1.7M for
# pyramidnet110_a48 is 1,732,856 with floor, 1,772,706 with round).
WIDTH_ROUNDINGS = ("round", "floor")


def unit_widths(num_units: int, alpha: float, growth: str = "additive",
                rounding: str = "round") -> tuple[int, ...]:
  """The width of each of the net's num_units units, from a 16-channel stem."""
  if growth not in GROWTHS:
    raise ValueError(f"growth must be one of {GROWTHS}, got {growth!r}")
  if rounding not in WIDTH_ROUNDINGS:
    raise ValueError(f"width_rounding must be one of {WIDTH_ROUNDINGS} (round: floor(x + 0.5) as "
                     f"the official code, floor: the README's counts), got {rounding!r}")
  width, widths = float(STEM_WIDTH), []
  for _ in range(num_units):
    width = width + alpha / num_units if growth == "additive" else width * alpha ** (1 / num_units)
    widths.append(math.floor(width + 0.5) if rounding == "round" else math.floor(width))
  return tuple(widths)


def pool_pad_shortcut(x: jax.Array, features: int, strides: int) -> jax.Array:
  """The parameter-free pyramidal shortcut: 2x2 average pool where the unit strides, then zero
  channels appended.

  Args:
    x: [N, H, W, C] unit input.
    features: the unit's output channels, >= C.
    strides: 1 or the pool's size and stride.
  Returns:
    [N, ceil(H/strides), ceil(W/strides), features]. An odd size pools its last row and column
    alone (PyTorch's ceil_mode), so the shape matches the strided 3x3 conv's.
  """
  if strides > 1:
    x = nn.avg_pool(x, (strides, strides), strides=(strides, strides), padding="SAME",
                    count_include_pad=False)
  extra = features - x.shape[-1]
  if extra < 0:
    raise ValueError(f"a pyramidal unit cannot shrink channels ({x.shape[-1]} -> {features})")
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra))) if extra else x


class PyramidBlock(nn.Module):
  """The pyramidal basic unit: BN-conv3x3-BN-ReLU-conv3x3-BN, add, no ReLU after the addition."""
  residual: ClassVar[bool] = True
  features: int
  strides: int = 1
  conv_grad_chunks: int = 1  # layers.sliced_grad_conv

  def _branch(self, x: jax.Array, train: bool) -> jax.Array:
    y = layers.batch_norm(train, "bn1")(x)
    y = layers.conv3x3(self.features, strides=self.strides, grad_chunks=self.conv_grad_chunks,
                       name="conv1")(y)
    y = layers.batch_norm(train, "bn2")(y)
    self.sow("intermediates", "response1", y)
    y = layers.conv3x3(self.features, grad_chunks=self.conv_grad_chunks,
                       name="conv2")(nn.relu(y))
    y = layers.batch_norm(train, "bn3")(y)
    self.sow("intermediates", "response2", y)
    return y

  @nn.compact
  def __call__(self, x: jax.Array, ctrl: BlockControls | None, train: bool) -> jax.Array:
    skip = pool_pad_shortcut(x, self.features, self.strides)
    return layers.residual_unit(self, lambda m, x: m._branch(x, train), x, skip, ctrl, train)


class PyramidBottleneck(nn.Module):
  """The pyramidal bottleneck: BN-1x1-BN-ReLU-3x3-BN-ReLU-1x1 (4 features)-BN, add, no ReLU.

  The stride sits in the 3x3 conv, as in the authors' code.
  """
  residual: ClassVar[bool] = True
  features: int
  strides: int = 1
  expansion: int = 4
  conv_grad_chunks: int = 1  # layers.sliced_grad_conv

  def _branch(self, x: jax.Array, train: bool) -> jax.Array:
    y = layers.batch_norm(train, "bn1")(x)
    y = layers.conv1x1(self.features, name="conv1")(y)
    y = nn.relu(layers.batch_norm(train, "bn2")(y))
    y = layers.conv3x3(self.features, strides=self.strides, grad_chunks=self.conv_grad_chunks,
                       name="conv2")(y)
    y = layers.batch_norm(train, "bn3")(y)
    self.sow("intermediates", "response1", y)
    y = layers.conv1x1(self.features * self.expansion, name="conv3")(nn.relu(y))
    return layers.batch_norm(train, "bn4")(y)

  @nn.compact
  def __call__(self, x: jax.Array, ctrl: BlockControls | None, train: bool) -> jax.Array:
    skip = pool_pad_shortcut(x, self.features * self.expansion, self.strides)
    return layers.residual_unit(self, lambda m, x: m._branch(x, train), x, skip, ctrl, train)


def pyramid_stem(net: nn.Module, images: jax.Array, train: bool) -> jax.Array:
  """Han et al.: 3x3 conv - BN, no ReLU (each unit's branch starts with its own BN). The BN output
  is the stem's response."""
  x = layers.conv3x3(net.stem_features, grad_chunks=net.conv_grad_chunks, name="stem_conv")(images)
  x = layers.batch_norm(train, "stem_bn")(x)
  net.sow("intermediates", "response", x)
  return x


def _pyramid(depth: int, alpha: float, layers_per_block: int, block_cls: type[nn.Module],
             growth: str, num_classes: int, width_rounding: str) -> ResNet:
  n = resnet.blocks_per_stage(depth, layers_per_block)
  if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 1 <= alpha < math.inf:
    raise ValueError(f"alpha (the widening of the whole net, the number after _a) must be a "
                     f"number >= 1 (48, 4.75, ...), got {alpha!r}")
  widths = unit_widths(3 * n, alpha, growth, width_rounding)
  per_stage = tuple(widths[s * n:(s + 1) * n] for s in range(3))
  return ResNet(stage_sizes=(n,) * 3, block=bind(block_cls),
                widths=tuple(stage[-1] for stage in per_stage), unit_widths=per_stage,
                stem=pyramid_stem, head=network.preact_head, stem_width=STEM_WIDTH,
                num_classes=num_classes)


def pyramidnet(depth: int, alpha: float, *, num_classes: int = 10,
               width_rounding: str = "round") -> ResNet:
  """Additive PyramidNet with basic units, depth 6n + 2: widths grow by alpha / 3n per unit."""
  return _pyramid(depth, alpha, 2, PyramidBlock, "additive", num_classes, width_rounding)


def pyramidnet_mul(depth: int, alpha: float, *, num_classes: int = 10,
                   width_rounding: str = "round") -> ResNet:
  """Multiplicative PyramidNet with basic units, depth 6n + 2: widths grow by alpha^(1/3n)."""
  return _pyramid(depth, alpha, 2, PyramidBlock, "multiplicative", num_classes, width_rounding)


def pyramidnet_bottleneck(depth: int, alpha: float, *, num_classes: int = 10,
                          width_rounding: str = "round") -> ResNet:
  """Additive PyramidNet with bottleneck units, depth 9n + 2 (outputs 4x the unit's width)."""
  return _pyramid(depth, alpha, 3, PyramidBottleneck, "additive", num_classes, width_rounding)


FAMILIES = (
    Family("pyramidnet{depth}_a{alpha}", pyramidnet,
           ("pyramidnet110_a48", "pyramidnet110_a84", "pyramidnet110_a270"),
           "pyramidnet{6n+2}_a{alpha} (additive PyramidNet: pyramidnet110_a48, ...)",
           decimal=("alpha",)),
    Family("pyramidnet_mul{depth}_a{alpha}", pyramidnet_mul,
           ("pyramidnet_mul110_a4.75", "pyramidnet_mul110_a8"),
           "pyramidnet_mul{6n+2}_a{alpha} (alpha may be fractional: pyramidnet_mul110_a4.75)",
           decimal=("alpha",)),
    Family("pyramidnet_bottleneck{depth}_a{alpha}", pyramidnet_bottleneck,
           ("pyramidnet_bottleneck272_a200",), "pyramidnet_bottleneck{9n+2}_a{alpha}",
           decimal=("alpha",)),
)
