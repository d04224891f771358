"""Stages of blocks, scanned so that compile time does not grow with depth.

A stage is its first block (which may change the shape: stride, width, or the network's first
pre-activation) followed by `num_blocks - 1` identical blocks that run under `nn.scan`. (A stage
whose blocks all differ, as PyramidNet's, is an `UnrolledStage`.) The
parameters of those blocks are stacked along a leading axis (`stage{s}/blocks/block/...`), their
controls travel as scanned arrays, and permuting them is a gather on that axis
(`surgery.permute_stage_blocks`). The compile time of an unrolled net grows faster than its
depth; as a loop, the ResNet-1202 train step compiles faster than the unrolled ResNet-110 one
(`make bench-compile`).

The scan is unrolled (`scan_unroll`) for stages of up to FULL_UNROLL_MAX scanned blocks: XLA's CPU
backend runs convolution gradients inside a loop about ten times slower than unrolled ones (a
ResNet-20 train step at batch 64 on 16x16 images: 1.25 s as a loop, 0.12 s unrolled, measured on
a 2-core CPU), while the unrolled ResNet-110 train step (17 blocks per stage) still compiles in
about 20 s. A single scanned block runs under a vmap over an axis of one instead, since jax
lowers even a one-block scan to a loop. The parameter layout is the same every way.
"""
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax.models.layers import BlockControls

ModuleDef = Callable[..., nn.Module]

# Every per-block collection is stacked along the scan axis; "intermediates" too, so responses of
# scanned blocks come out as [num_blocks - 1, ...] arrays.
_SCANNED_COLLECTIONS = {"params": 0, "batch_stats": 0, "intermediates": 0}

# Up to ResNet-110 (and the 164-layer bottleneck nets: 17 scanned blocks per stage) the loop is
# unrolled; deeper stages run as a real loop so that compile time stays flat.
FULL_UNROLL_MAX = 17


def default_unroll(num_scanned: int) -> int:
  return num_scanned if num_scanned <= FULL_UNROLL_MAX else 1


class _ScanBody(nn.Module):
  block: ModuleDef
  train: bool

  @nn.compact
  def __call__(self, x: jax.Array, ctrl: BlockControls) -> tuple[jax.Array, None]:
    return self.block(name="block")(x, ctrl, self.train), None


class Stage(nn.Module):
  """`first_block`, then `num_blocks - 1` scanned copies of `block`."""
  first_block: ModuleDef
  block: ModuleDef
  num_blocks: int
  scan_unroll: int | None = None  # None: default_unroll

  @nn.compact
  def __call__(self, x: jax.Array, ctrl: BlockControls, train: bool) -> jax.Array:
    x = self.first_block(name="block1")(x, ctrl.at(0), train)
    if self.num_blocks > 1:
      length = self.num_blocks - 1
      unroll = default_unroll(length) if self.scan_unroll is None else self.scan_unroll
      # The block axis of every control is last ([k, blocks] per-branch controls); scan wants it
      # first.
      scanned = jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0), ctrl.slice(1, self.num_blocks))
      if length == 1 and self.scan_unroll is None and not self.is_initializing():
        # One scanned block (ResNet-14, WRN-16-k): jax lowers a scan of length 1 to a one-trip
        # loop, and XLA's CPU backend runs the convolution gradients of a loop body many times
        # slower (ResNet-14's train step: 4.5x ResNet-32's). A vmap over an axis of one reads and
        # writes the same stacked variables without a loop. (Init keeps the scan, whose rng
        # splitting gives the parameters; the two split a "dropout" rng differently. An explicit
        # scan_unroll keeps the scan.)
        # x gets the axis of one too: a broadcast (unbatched) x is refused by custom VJPs such as
        # layers.scale_gradient, whose cotangent would come back batched.
        one = nn.vmap(_ScanBody, variable_axes=_SCANNED_COLLECTIONS,
                      split_rngs={"params": True, "dropout": True}, in_axes=0,
                      out_axes=0, axis_size=1)
        stacked, _ = one(block=self.block, train=train, name="blocks")(x[None], scanned)
        return stacked[0]
      scan = nn.scan(_ScanBody, variable_axes=_SCANNED_COLLECTIONS,
                     split_rngs={"params": True, "dropout": True}, in_axes=0,
                     length=length, unroll=max(1, min(unroll, length)))
      x, _ = scan(block=self.block, train=train, name="blocks")(x, scanned)
    return x


class UnrolledStage(nn.Module):
  """Blocks that differ from one another (PyramidNet widens every unit), one after the other.

  They cannot share a scan, so each has its own parameters under `block{i}` (from 1), the name the
  first block of a scanned `Stage` has too: the layout of a stage is `block1`, ..., `block{k}`,
  then, in a scanned stage, the stacked `blocks`. Compile time grows with the number of blocks
  (the 54 units of PyramidNet-110 compile like the unrolled ResNet-110).
  """
  first_block: ModuleDef
  block: ModuleDef
  widths: Sequence[int]  # one per block
  strides: int  # of the first block

  @nn.compact
  def __call__(self, x: jax.Array, ctrl: BlockControls, train: bool) -> jax.Array:
    if ctrl.num_blocks != len(self.widths):
      raise ValueError(f"{len(self.widths)} unit widths for a stage of {ctrl.num_blocks} blocks")
    for i, width in enumerate(self.widths):
      block = self.first_block if i == 0 else self.block
      x = block(features=width, strides=self.strides if i == 0 else 1,
                name=f"block{i + 1}")(x, ctrl.at(i), train)
    return x


def block_names(stage_sizes: Sequence[int]) -> tuple[str, ...]:
  """Names of the residual blocks in network order: stage{s}_block{i}, both from 1."""
  return tuple(f"stage{s + 1}_block{i + 1}" for s, n in enumerate(stage_sizes) for i in range(n))


def check_images(images: jax.Array) -> None:
  if images.ndim != 4:
    raise ValueError(f"images must be [N, H, W, C] (rank 4, NHWC), got shape {images.shape}")
  if not jnp.issubdtype(images.dtype, jnp.floating):
    # Integer pixels would run (convolutions promote them) on the wrong scale: the models expect
    # images normalised as `resnet_jax.data` returns them.
    raise ValueError(f"images must be floating point (normalised pixels), got {images.dtype}")


def enter_blocks(module: nn.Module, x: jax.Array, controls: BlockControls | None,
                 num_blocks: int) -> tuple[jax.Array, BlockControls]:
  """Prepares the activations entering the first residual block.

  Fills in default controls, checks their length, stacks `path_stack` copies of the batch, and
  marks the first block's input as the "block_input" perturbation, so that
  `jax.grad` with respect to `variables["perturbations"]["block_input"]` is the gradient with
  respect to that input (the quantity of Veit et al.'s path analysis).
  """
  if controls is None:
    controls = BlockControls.default(num_blocks)
  if controls.num_blocks != num_blocks:
    raise ValueError(f"controls are for {controls.num_blocks} blocks, the model has {num_blocks}")
  if controls.path_stack:
    x = jnp.tile(x, (controls.path_stack,) + (1,) * (x.ndim - 1))
  if module.is_initializing():
    # Kept out of `init`'s variables: a zero perturbation has the batch's shape, and would then
    # break `apply` at any other batch size. Analyses pass it in explicitly.
    return x, controls
  return module.perturb("block_input", x), controls
