"""Whole networks: He et al. 2015 CIFAR and ImageNet nets, He et al. 2016 pre-activation nets.

Each is called as `model.apply(variables, images, train=False, controls=None)` with images
[N, H, W, C] float32, and returns logits [N, num_classes] ([K*N, num_classes] when
`controls.path_stack` = K). `num_blocks` and `block_names()` describe the residual blocks that
the controls address, in network order.
"""
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax.models import blocks, layers, stages
from resnet_jax.models.layers import BlockControls

CIFAR_WIDTHS = (16, 32, 64)
IMAGENET_WIDTHS = (64, 128, 256, 512)


def _head(x: jax.Array, num_classes: int) -> jax.Array:
  x = jnp.mean(x, axis=(1, 2))
  return nn.Dense(num_classes, name="head")(x)


class CifarResNet(nn.Module):
  """He et al. 2015 §4.2: 3x3 conv stem (16), 3 stages of n blocks at widths 16/32/64, stride 2 at
  the entries of stages 2 and 3, global average pool, dense head. 6n+2 weighted layers.

  `block_cls` is `blocks.BasicBlock` (ResNet) or `blocks.PlainBlock` (its plain twin).
  """
  blocks_per_stage: int
  block_cls: stages.ModuleDef = blocks.BasicBlock
  num_classes: int = 10
  shortcut: str = "A"
  widths: Sequence[int] = CIFAR_WIDTHS
  scan_unroll: int | None = None  # scanned blocks unrolled per loop step; None: stages' default

  @property
  def stage_sizes(self) -> tuple[int, ...]:
    return (self.blocks_per_stage,) * 3

  @property
  def is_residual(self) -> bool:
    return self.block_cls is not blocks.PlainBlock

  @property
  def num_blocks(self) -> int:
    return 3 * self.blocks_per_stage

  def block_names(self) -> tuple[str, ...]:
    return stages.block_names((self.blocks_per_stage,) * 3)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False,
               controls: BlockControls | None = None) -> jax.Array:
    stages.check_images(images)
    x = layers.conv3x3(self.widths[0], name="stem_conv")(images)
    x = layers.batch_norm(train, "stem_bn")(x)
    self.sow("intermediates", "response", x)
    x = nn.relu(x)
    x, controls = stages.enter_blocks(self, x, controls, self.num_blocks)
    kwargs = {} if self.block_cls is blocks.PlainBlock else {"shortcut": self.shortcut}
    x = stages.run_stages(x, controls, train, block_cls=self.block_cls,
                          stage_sizes=(self.blocks_per_stage,) * 3, widths=self.widths,
                          strides=(1, 2, 2), block_kwargs=kwargs, first_block_kwargs={},
                          scan_unroll=self.scan_unroll)
    return _head(x, self.num_classes)


class PreActCifarResNet(nn.Module):
  """He et al. 2016 full pre-activation CIFAR nets, with the paper's special first and last units:
  the first unit activates right after the stem conv, before splitting into two paths; the last
  unit is followed by an extra BN-ReLU before pooling.

  `block_cls` is `blocks.PreActBlock` (basic, 6n+2 layers) or `blocks.PreActBottleneck` (9n+2
  layers, stage outputs 64/128/256).
  """
  blocks_per_stage: int
  block_cls: stages.ModuleDef = blocks.PreActBlock
  num_classes: int = 10
  shortcut: str = "A"
  widths: Sequence[int] = CIFAR_WIDTHS
  scan_unroll: int | None = None  # scanned blocks unrolled per loop step; None: stages' default

  @property
  def stage_sizes(self) -> tuple[int, ...]:
    return (self.blocks_per_stage,) * 3

  @property
  def is_residual(self) -> bool:
    return self.block_cls is not blocks.PlainBlock

  @property
  def num_blocks(self) -> int:
    return 3 * self.blocks_per_stage

  def block_names(self) -> tuple[str, ...]:
    return stages.block_names((self.blocks_per_stage,) * 3)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False,
               controls: BlockControls | None = None) -> jax.Array:
    stages.check_images(images)
    x = layers.conv3x3(self.widths[0], name="stem_conv")(images)
    x, controls = stages.enter_blocks(self, x, controls, self.num_blocks)
    x = stages.run_stages(x, controls, train, block_cls=self.block_cls,
                          stage_sizes=(self.blocks_per_stage,) * 3, widths=self.widths,
                          strides=(1, 2, 2), block_kwargs={"shortcut": self.shortcut},
                          first_block_kwargs={"first": True}, scan_unroll=self.scan_unroll)
    x = nn.relu(layers.batch_norm(train, "final_bn")(x))
    return _head(x, self.num_classes)


class ImageNetResNet(nn.Module):
  """He et al. 2015 Table 1: 7x7/2 conv stem (64), 3x3/2 max-pool, 4 stages at widths
  64/128/256/512 (x4 outputs for bottlenecks), stride 2 at the entries of stages 2-4."""
  stage_sizes: Sequence[int]
  block_cls: stages.ModuleDef = blocks.BasicBlock
  num_classes: int = 1000
  shortcut: str = "B"
  stride_in_3x3: bool = False
  widths: Sequence[int] = IMAGENET_WIDTHS
  scan_unroll: int | None = None

  @property
  def is_residual(self) -> bool:
    return self.block_cls is not blocks.PlainBlock

  @property
  def num_blocks(self) -> int:
    return sum(self.stage_sizes)

  def block_names(self) -> tuple[str, ...]:
    return stages.block_names(self.stage_sizes)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False,
               controls: BlockControls | None = None) -> jax.Array:
    stages.check_images(images)
    x = nn.Conv(self.widths[0], (7, 7), strides=2, padding=3, use_bias=False,
                kernel_init=layers.he_normal, name="stem_conv")(images)
    x = layers.batch_norm(train, "stem_bn")(x)
    x = nn.relu(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    x, controls = stages.enter_blocks(self, x, controls, self.num_blocks)
    if self.block_cls is blocks.PlainBlock:
      kwargs = {}
    elif self.block_cls is blocks.Bottleneck:
      kwargs = {"shortcut": self.shortcut, "stride_in_3x3": self.stride_in_3x3}
    else:
      kwargs = {"shortcut": self.shortcut}
    x = stages.run_stages(x, controls, train, block_cls=self.block_cls,
                          stage_sizes=self.stage_sizes, widths=self.widths, strides=(1, 2, 2, 2),
                          block_kwargs=kwargs, first_block_kwargs={},
                          scan_unroll=self.scan_unroll)
    return _head(x, self.num_classes)
