"""Multi-residual networks (Abdi & Nahavandi 2016): pre-activation bottleneck units with k
parallel residual branches, summed and added to the identity.

A block of k branches offers k + 1 routes to a path (the shortcut or one branch), so a net of n
blocks unrolls into (k + 1)^n paths: Abdi & Nahavandi's argument is that more paths of the same
length (more, shorter effective paths per parameter) help more than more depth. The branches end
in `layers.multi_residual_join`, where each one has its own lesion gate and gradient route
(`BlockControls.branch_gate`, `branch_route`); stochastic depth drops a whole block.

The unit follows the official Torch code (masabdi/multi-resnet, models/multi-resnet.lua, built on
He et al.'s resnet-1k-layers): in an ordinary unit each branch is BN-ReLU-1x1-BN-ReLU-3x3-BN-
ReLU-1x1 on the identity's input; where the dimension grows (the first unit of each stage), one
BN-ReLU is shared by the branches and by a 1x1 projection shortcut, and the stride sits in each
branch's first 1x1 conv. With k = 1 this is `preact_bottleneck(stride_in_3x3=False)` exactly.
"""
from typing import ClassVar, Sequence

import flax.linen as nn
import jax

from resnet_jax.models import layers, network
from resnet_jax.models.family import Family, UnknownDepthError
from resnet_jax.models.layers import BlockControls
from resnet_jax.models.network import ResNet, bind
from resnet_jax.models.resnet import CIFAR_WIDTHS, blocks_per_stage, check_widths


class _Branch(nn.Module):
  """One residual branch: [BN-ReLU]-1x1 (stride)-BN-ReLU-3x3-BN-ReLU-1x1 (expansion x)."""
  features: int
  strides: int
  expansion: int
  preact: bool  # False where the block's shared BN-ReLU has pre-activated the input
  conv_grad_chunks: int = 1

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> tuple[jax.Array, jax.Array]:
    """Returns (F_j(x) [N, H', W', expansion * features], the 3x3 conv's BN output)."""
    if self.preact:
      x = nn.relu(layers.batch_norm(train, "bn1")(x))
    y = layers.conv1x1(self.features, strides=self.strides, name="conv1")(x)
    y = nn.relu(layers.batch_norm(train, "bn2")(y))
    y = layers.conv3x3(self.features, grad_chunks=self.conv_grad_chunks, name="conv2")(y)
    response = layers.batch_norm(train, "bn3")(y)
    y = layers.conv1x1(self.features * self.expansion, name="conv3")(nn.relu(response))
    return y, response


class MultiResBottleneck(nn.Module):
  """Abdi & Nahavandi 2016 multi-residual unit: x + sum_j F_j(x) over `branches` bottlenecks.

  Branch j's submodules sit under `branch{j}` (from 1); its 3x3 response is sown as
  `response{j}`, so responses come in branch order (for k <= 9).
  """
  residual: ClassVar[bool] = True
  features: int
  strides: int = 1
  branches: int = 1
  expansion: int = 4
  conv_grad_chunks: int = 1  # layers.sliced_grad_conv

  def _branches(self, x: jax.Array, shared: bool, train: bool) -> tuple[jax.Array, ...]:
    out = []
    for j in range(self.branches):
      y, response = _Branch(self.features, self.strides, self.expansion, preact=not shared,
                            conv_grad_chunks=self.conv_grad_chunks,
                            name=f"branch{j + 1}")(x, train)
      self.sow("intermediates", f"response{j + 1}", response)
      out.append(y)
    return tuple(out)

  @nn.compact
  def __call__(self, x: jax.Array, ctrl: BlockControls | None, train: bool) -> jax.Array:
    width = self.features * self.expansion
    grows = self.strides != 1 or x.shape[-1] != width
    if grows:
      # One BN-ReLU shared by the branches and the projection, as the official code's unit "for
      # increasing dimensions"; it stays outside the skippable branches (the shortcut reads it),
      # so a unit that stochastic depth drops still computes it. In the other units every
      # BN-ReLU is a branch's own.
      x = nn.relu(layers.batch_norm(train, "bn1")(x))
      skip = layers.conv1x1(width, strides=self.strides, name="conv_proj")(x)
    else:
      skip = x
    return layers.residual_unit(self, lambda m, x: m._branches(x, grows, train), x, skip, ctrl,
                                train)


def multires(depth: int, branches: int, *, num_classes: int = 10,
             widths: Sequence[int] = CIFAR_WIDTHS, scan_unroll: int | None = None) -> ResNet:
  """Abdi & Nahavandi 2016 CIFAR multi-residual net: 9n+2 layers, k branches per unit.

  A bare 3x3 conv stem (16 channels), three stages of n units with bottleneck widths `widths`
  (outputs 4x: 64/128/256 by default), a final BN-ReLU, pooling and a dense layer. Every branch
  has the parameters of one pre-activation bottleneck, so the count grows about k-fold; scale
  `widths` to compare k = 1, 2, 4 at a similar count (e.g. multires29_k1 with widths (16, 32,
  64) has 0.26M parameters, multires29_k2 with (11, 22, 45) and multires29_k4 with (8, 16, 32)
  about as many).
  """
  if branches < 1:
    raise UnknownDepthError(f"k, the residual branches per unit, must be >= 1, got {branches}")
  n = blocks_per_stage(depth, 3)
  return ResNet(stage_sizes=(n,) * 3, block=bind(MultiResBottleneck, branches=branches),
                widths=check_widths(widths, 3), stem=network.conv_stem, head=network.preact_head,
                num_classes=num_classes, scan_unroll=scan_unroll)


FAMILIES = (
    Family("multires{depth}_k{branches}", multires, ("multires200_k5", "multires398_k5"),
           "multires{9n+2}_k{k} (k >= 1 branches per unit: multires200_k5, multires398_k5)"),
)
