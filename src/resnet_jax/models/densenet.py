"""Huang et al. 2017, DenseNet and DenseNet-BC for CIFAR: dense layers, transitions, the nets and
their names (`densenet{L}_k{k}`, `densenet_bc{L}_k{k}`).

A dense block's layer l reads the concatenation of the block input and every earlier layer's k
new channels, and adds k channels of its own. For the analyses the *dense layers* are the blocks
(`stage{s}_block{i}`, three dense blocks = three stages): the concatenation carries a layer's
input to its output unchanged, so it plays the shortcut and the layer's k new channels the
branch. `layers.dense_join` is where the per-block controls act: a lesion (gate 0) deletes the
layer, its k channels masked after the BN-ReLU of every later reader (`layers.dense_read`: the
block's later layers, the transition, the head), exactly as if they were sliced out of each
reader's first conv; routes and path-length copies scale and shift cotangents exactly as
`residual_join` does. Dense layers cannot be reordered (each sees
a wider input than the one before), so `reorderable` is False.

A dense block is unrolled (its input width grows, so its layers cannot share one scanned body).
A block's features travel as a tuple of maps, concatenated only where a layer reads them. With
`memory_efficient` (Pleiss et al. 2017) the concat-BN-ReLU-conv that opens each layer is
rematerialised in the backward pass (`nn.remat`, saving only the conv output) instead of kept
from the forward pass. On XLA:CPU this changes neither the peak memory nor the quadratic growth
(`make bench-densenet`): the compiler already recomputes the cheap concat-BN-ReLU, and what grows
with the square of the depth is scheduled by XLA, not stored by the model.
"""
import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax.ad_checkpoint import checkpoint_name

from resnet_jax.models import layers, stages
from resnet_jax.models.family import Family, UnknownDepthError
from resnet_jax.models.layers import BlockControls

# The one activation the memory-efficient layers keep for the backward pass (see `_opening`).
_SAVED = "dense_conv"
_REMAT_POLICY = jax.checkpoint_policies.save_only_these_names(_SAVED)


def _opening(mdl: nn.Module, features: tuple[jax.Array, ...], gates: tuple[jax.Array, ...],
             width: int, kernel: int, train: bool, grad_chunks: int) -> jax.Array:
  """concat - BN - ReLU - conv(width, kernel): the part of a layer that reads the whole block."""
  x = layers.dense_read(features, gates, layers.batch_norm(train, "bn1"))
  conv = layers.conv1x1 if kernel == 1 else layers.conv3x3
  return checkpoint_name(conv(width, grad_chunks=grad_chunks, name="conv1")(x), _SAVED)


class DenseLayer(nn.Module):
  """BN-ReLU-conv3x3(k), or with `bottleneck` (BC) BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k); dropout
  after each conv; returns its input features followed by its own k channels (`dense_join`).

  Called as `layer(features, gates, ctrl, train)` with `features` the tuple of [N, H, W, C_j] maps
  of the block so far (kept apart so that no layer's concatenation outlives it) and `gates` their
  lesion gates (`layers.dense_read`); returns both with its own appended. Responses `response1`
  (and `response2` for BC) are the conv outputs, the first before dropout.
  """
  growth: int
  bottleneck: bool = False
  dropout: float = 0.0
  memory_efficient: bool = False
  conv_grad_chunks: int = 1  # layers.sliced_grad_conv

  @nn.compact
  def __call__(self, features: tuple[jax.Array, ...], gates: tuple[jax.Array | float, ...],
               ctrl: BlockControls | None, train: bool):
    width, kernel = (4 * self.growth, 1) if self.bottleneck else (self.growth, 3)
    opening = functools.partial(_opening, width=width, kernel=kernel, train=train,
                                grad_chunks=self.conv_grad_chunks)
    if self.memory_efficient:
      opening = nn.remat(opening, policy=_REMAT_POLICY)
    y = opening(self, tuple(features), tuple(gates))
    self.sow("intermediates", "response1", y)
    y = nn.Dropout(self.dropout, deterministic=not train)(y)
    if self.bottleneck:
      y = nn.relu(layers.batch_norm(train, "bn2")(y))
      y = layers.conv3x3(self.growth, grad_chunks=self.conv_grad_chunks, name="conv2")(y)
      self.sow("intermediates", "response2", y)
      y = nn.Dropout(self.dropout, deterministic=not train)(y)
    return layers.dense_join(tuple(features), tuple(gates), y, ctrl)


class DenseBlock(nn.Module):
  """`num_layers` dense layers (`block1`, `block2`, ...) on a tuple of feature maps and their
  gates; `ctrl` holds the layers' controls ([num_layers] arrays)."""
  num_layers: int
  layer: stages.ModuleDef

  @nn.compact
  def __call__(self, features: tuple[jax.Array, ...], gates: tuple[jax.Array | float, ...],
               ctrl: BlockControls, train: bool):
    for i in range(self.num_layers):
      features, gates = self.layer(name=f"block{i + 1}")(features, gates, ctrl.at(i), train)
    return features, gates


class Transition(nn.Module):
  """BN-ReLU-conv1x1(width)-dropout-avgpool2 between dense blocks: reads the block's features
  and their gates, returns the one new map (gate 1.0)."""
  width: int
  dropout: float = 0.0
  conv_grad_chunks: int = 1  # layers.sliced_grad_conv

  @nn.compact
  def __call__(self, features: tuple[jax.Array, ...], gates: tuple[jax.Array | float, ...],
               train: bool) -> tuple[tuple[jax.Array], tuple[float]]:
    x = layers.dense_read(features, gates, layers.batch_norm(train, "bn"))
    x = layers.conv1x1(self.width, grad_chunks=self.conv_grad_chunks, name="conv")(x)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return (nn.avg_pool(x, (2, 2), strides=(2, 2)),), (1.0,)


class DenseNet(nn.Module):
  """stem conv3x3 (no BN) -> dense blocks with transitions -> BN-ReLU-pool-FC head.

  Called as `apply(variables, images, train, controls)` like `network.ResNet`: images
  [N, H, W, C] float -> logits [N, num_classes] ([K*N, ...] when `controls.path_stack` = K).

  Attributes:
    stage_sizes: dense layers per dense block.
    growth: k, the channels every dense layer adds.
    stem_width: channels of the stem conv (16, or 2k for BC).
    bottleneck: BC layers (a 1x1 conv to 4k channels first).
    compression: theta; a transition maps m channels to floor(theta * m).
    dropout: rate after every conv but the stem's (0.2 in the paper without augmentation).
    memory_efficient: rematerialise each layer's concat-BN-ReLU-conv in the backward pass.
    num_classes: logits per image.
    conv_grad_chunks: > 1: every conv is `layers.sliced_grad_conv(conv_grad_chunks)` (the same
      values and gradients; DenseNet-BC-100's step at batch 128 about 0.65 of the plain
      convolutions' on a 2-core CPU); `get_model` sets the backend's default.
  """
  stage_sizes: Sequence[int]
  growth: int
  stem_width: int
  bottleneck: bool = False
  compression: float = 1.0
  dropout: float = 0.0
  memory_efficient: bool = False
  num_classes: int = 10
  conv_grad_chunks: int = 1

  # The concatenation carries every layer's input to its output: paths exist (the analyses
  # route, count and lesion them), but no two layers are interchangeable.
  is_residual = True
  reorderable = False

  @property
  def num_blocks(self) -> int:
    return sum(self.stage_sizes)

  def block_names(self) -> tuple[str, ...]:
    return stages.block_names(self.stage_sizes)

  def transition_widths(self) -> tuple[int, ...]:
    """Output channels of each transition: floor(theta * m) of the m channels entering it."""
    widths, m = [], self.stem_width
    for n in self.stage_sizes[:-1]:
      m = math.floor(self.compression * (m + n * self.growth))
      widths.append(m)
    return tuple(widths)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False,
               controls: BlockControls | None = None) -> jax.Array:
    stages.check_images(images)
    x = layers.conv3x3(self.stem_width, grad_chunks=self.conv_grad_chunks,
                       name="stem_conv")(images)
    x, controls = stages.enter_blocks(self, x, controls, self.num_blocks)
    features, gates, offset = (x,), (1.0,), 0
    transitions = self.transition_widths()
    layer = functools.partial(DenseLayer, growth=self.growth, bottleneck=self.bottleneck,
                              dropout=self.dropout, memory_efficient=self.memory_efficient,
                              conv_grad_chunks=self.conv_grad_chunks)
    for s, n in enumerate(self.stage_sizes):
      features, gates = DenseBlock(n, layer, name=f"stage{s + 1}")(
          features, gates, controls.slice(offset, offset + n), train)
      offset += n
      if s < len(transitions):
        features, gates = Transition(transitions[s], self.dropout,
                                     conv_grad_chunks=self.conv_grad_chunks,
                                     name=f"transition{s + 1}")(features, gates, train)
    x = layers.dense_read(features, gates, layers.batch_norm(train, "final_bn"))
    return nn.Dense(self.num_classes, name="head")(jnp.mean(x, axis=(1, 2)))


def _layers_per_block(depth: int, convs_per_layer: int) -> int:
  """l of a three-block net of depth 3 * convs_per_layer * l + 4 (stem, 2 transitions, FC)."""
  per_block, remainder = divmod(depth - 4, 3 * convs_per_layer)
  if remainder or per_block < 1:
    step = 3 * convs_per_layer
    valid = ", ".join(str(step * n + 4) for n in (1, 2, 4, 12))
    raise UnknownDepthError(f"the depth of this family must be of the form {step}l+4 with "
                            f"l >= 1 ({valid}, ...), got {depth}")
  return per_block


def _check_options(growth: int, dropout: float, memory_efficient: bool | None,
                   default_memory: bool) -> bool:
  if growth < 1:
    raise UnknownDepthError(f"the growth rate k must be >= 1, got {growth}")
  if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
    raise ValueError(f"dropout must be a rate in [0, 1) (0.2: the paper without augmentation), "
                     f"got {dropout!r}")
  if memory_efficient is None:
    return default_memory
  if not isinstance(memory_efficient, bool):
    raise ValueError(f"memory_efficient must be True, False or None (None: True for BC nets, "
                     f"False otherwise), got {memory_efficient!r}")
  return memory_efficient


def densenet(depth: int, growth: int, *, num_classes: int = 10, dropout: float = 0.0,
             memory_efficient: bool | None = None) -> DenseNet:
  """Huang et al. 2017 DenseNet: stem 16 channels, (depth - 4) / 3 layers BN-ReLU-conv3x3(k) per
  block, transitions keep the width (theta = 1). `memory_efficient` None means False."""
  per_block = _layers_per_block(depth, 1)
  memory = _check_options(growth, dropout, memory_efficient, False)
  return DenseNet(stage_sizes=(per_block,) * 3, growth=growth, stem_width=16,
                  dropout=float(dropout), memory_efficient=memory, num_classes=num_classes)


def densenet_bc(depth: int, growth: int, *, num_classes: int = 10, dropout: float = 0.0,
                memory_efficient: bool | None = None) -> DenseNet:
  """Huang et al. 2017 DenseNet-BC: stem 2k channels, (depth - 4) / 6 bottleneck layers per
  block, transitions halve the width (theta = 0.5). `memory_efficient` None means True."""
  per_block = _layers_per_block(depth, 2)
  memory = _check_options(growth, dropout, memory_efficient, True)
  return DenseNet(stage_sizes=(per_block,) * 3, growth=growth, stem_width=2 * growth,
                  bottleneck=True, compression=0.5, dropout=float(dropout),
                  memory_efficient=memory, num_classes=num_classes)


def num_paths(model: DenseNet) -> int:
  """Paths from the stem's output to the head: every subset of the dense layers, 2^num_blocks.

  Inside a dense block of l layers a path visits an increasing sequence of layers, any subset;
  the block's output (the concatenation the transition reads) holds each subset's end, so l
  layers give 2^l paths, 2^(l-1) of them ending in the last layer. Every path passes the
  transitions, so a net has 2^(sum of l) paths, of length k (dense layers visited) C(n, k): the
  same counts as a ResNet of as many blocks (`analysis.paths.path_counts(model.num_blocks)`).
  """
  return 2 ** model.num_blocks


FAMILIES = (
    Family("densenet{depth}_k{growth}", densenet,
           ("densenet40_k12", "densenet100_k12", "densenet100_k24"),
           "densenet{3l+4}_k{k} (densenet40_k12, densenet100_k24, ...)"),
    Family("densenet_bc{depth}_k{growth}", densenet_bc,
           ("densenet_bc100_k12", "densenet_bc250_k24", "densenet_bc190_k40"),
           "densenet_bc{6l+4}_k{k} (densenet_bc100_k12, densenet_bc190_k40, ...)"),
)
