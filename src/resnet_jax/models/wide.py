"""Zagoruyko & Komodakis 2016, Wide Residual Networks: the wide pre-activation block and the
`wrn{depth}_{k}` nets (WRN-d-k), as builders of `network.ResNet`.

The block lives here rather than in `blocks.py`: it is this paper's structure (dropout between
the convolutions, a projection decided by the width alone), and a family is one module.
Layout from the authors' code (szagoruyko/wide-residual-networks, models/wide-resnet.lua): a
16-channel 3x3 stem, three stages of n = (d - 4) / 6 blocks of widths 16k, 32k, 64k, a final
BN-ReLU, global average pool, a dense layer; no biases in the convolutions.
"""
from typing import ClassVar

import flax.linen as nn
import jax

from resnet_jax.models import blocks, layers, network
from resnet_jax.models.family import Family, UnknownDepthError
from resnet_jax.models.layers import BlockControls
from resnet_jax.models.network import ResNet, bind

STEM_WIDTH = 16
BASE_WIDTHS = (16, 32, 64)


class WideBlock(nn.Module):
  """The wide basic block: BN-ReLU-conv3x3-BN-ReLU-Dropout-conv3x3, add.

  As in the authors' code, the shortcut is a 1x1 conv on the *pre-activated* input where the
  width changes (the block's BN-ReLU is then shared by both paths, and runs even where stochastic
  depth drops the block), else the raw input (the BN-ReLU is then the branch's alone). Responses
  are named as `blocks.PreActBlock`'s: the BN after conv1 and the conv2 output.
  """
  residual: ClassVar[bool] = True
  features: int
  strides: int = 1
  dropout: float = 0.0
  conv_grad_chunks: int = 1  # layers.sliced_grad_conv

  def _branch(self, pre: jax.Array, train: bool) -> jax.Array:
    y = layers.conv3x3(self.features, strides=self.strides, grad_chunks=self.conv_grad_chunks,
                       name="conv1")(pre)
    y = layers.batch_norm(train, "bn2")(y)
    self.sow("intermediates", "response1", y)
    # Per-example draws from the "dropout" stream (steps.model_rngs); none when not training.
    y = nn.Dropout(self.dropout, deterministic=not train, name="dropout")(nn.relu(y))
    y = layers.conv3x3(self.features, grad_chunks=self.conv_grad_chunks, name="conv2")(y)
    self.sow("intermediates", "response2", y)
    return y

  @nn.compact
  def __call__(self, x: jax.Array, ctrl: BlockControls | None, train: bool) -> jax.Array:
    # The official test is the width alone (nInputPlane ~= nOutputPlane); in these nets every
    # stride-2 block also widens, the stride is checked only to keep the shapes right.
    project = x.shape[-1] != self.features or self.strides != 1
    shortcut = lambda z: (layers.conv1x1(self.features, strides=self.strides, name="conv_proj")(z)
                          if project else z)
    return blocks.preact_unit(self, lambda m, pre: m._branch(pre, train), x, ctrl, train,
                              shared=project, shortcut=shortcut)


def check_dropout(dropout: float) -> float:
  if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
    raise ValueError(f"dropout is the rate between a block's convolutions, in [0, 1) (the WRN "
                     f"recipe uses 0.3), got {dropout!r}")
  return float(dropout)


def wide_resnet(depth: int, k: int, *, num_classes: int = 10, dropout: float = 0.0,
                scan_unroll: int | None = None) -> ResNet:
  """WRN-depth-k: depth = 6n + 4 (n blocks per stage), widths 16k, 32k, 64k.

  `dropout` is the rate between the two convolutions of every block (0.3 in the paper's dropout
  runs and in `experiments/configs/wide.py`; 0 here, as the paper's main table).
  """
  n, remainder = divmod(depth - 4, 6)
  if remainder or n < 1:
    raise UnknownDepthError(f"a Wide ResNet's depth is 6n+4 with n >= 1 (10, 16, 22, 28, 40, "
                            f"...), got {depth}")
  if k < 1:
    raise UnknownDepthError(f"the widening factor k must be >= 1 (wrn28_10: k = 10), got {k}")
  block = bind(WideBlock, dropout=check_dropout(dropout))
  return ResNet(stage_sizes=(n,) * 3, block=block, widths=tuple(w * k for w in BASE_WIDTHS),
                stem=network.conv_stem, head=network.preact_head, stem_width=STEM_WIDTH,
                num_classes=num_classes, scan_unroll=scan_unroll)


FAMILIES = (
    Family("wrn{depth}_{k}", wide_resnet,
           ("wrn16_4", "wrn16_8", "wrn22_8", "wrn28_10", "wrn28_12", "wrn40_1", "wrn40_2",
            "wrn40_4"),
           "wrn{6n+4}_{k} (Wide ResNet WRN-d-k: wrn16_8, wrn28_10, wrn40_4, ...)"),
)
