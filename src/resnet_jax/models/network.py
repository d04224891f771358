"""One network abstraction for every residual family: stem, stages of blocks, head.

A family module (e.g. `resnet.py`) builds a `ResNet` by choosing its parts: the block (a block
class with its options bound by `bind`), the stage sizes and widths, a stem and a head. The
network then asks nothing about its block: the block class owns its shortcut and options and
declares whether it joins a shortcut (`residual`), so `is_residual`, `num_blocks`, `stage_sizes`
and `block_names()` describe any model the same way, for the analyses and the training code.

Stems and heads are functions `part(net, x, train)` called inside the network's compact
`__call__`: their submodules (`stem_conv`, `stem_bn`, `final_bn`, `head`) then sit directly in
the network's parameters, as in the papers' layer naming.
"""
import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax.models import layers, stages
from resnet_jax.models.layers import BlockControls

ModuleDef = stages.ModuleDef
Part = Callable[[nn.Module, jax.Array, bool], jax.Array]


@functools.cache
def bind(block_cls: type[nn.Module], **options) -> ModuleDef:
  """`functools.partial(block_cls, **options)`, one object per distinct call.

  Cached so that two models built with the same options hold the same partial: models then
  compare equal and hash alike, which jitted analyses need (the model is a static argument).
  """
  return functools.partial(block_cls, **options)


DROP_MODES = ("batch", "sample")
# Options of the network rather than of one family: every residual net built on `ResNet` takes
# them (`get_model(name, stochastic_depth=0.5)`).
NETWORK_OPTIONS = ("stochastic_depth", "drop_mode", "active_blocks", "skip_dropped")


def check_drops(num_blocks: int, stochastic_depth: float | None = None, drop_mode: str = "batch",
                active_blocks: int | None = None, skip_dropped: bool = True) -> None:
  """ValueError unless the stochastic-depth options make sense for a net of num_blocks blocks."""
  if not isinstance(skip_dropped, bool):
    raise ValueError(f"skip_dropped must be True or False, got {skip_dropped!r}")
  if stochastic_depth is not None and (isinstance(stochastic_depth, bool) or not isinstance(
      stochastic_depth, (int, float)) or not 0 < stochastic_depth <= 1):
    raise ValueError("stochastic_depth is p_L, the survival probability of the last block, in "
                     f"(0, 1] (Huang et al. use 0.5), got {stochastic_depth!r}")
  if drop_mode not in DROP_MODES:
    raise ValueError(f"drop_mode must be one of {DROP_MODES} (batch: the paper's per-mini-batch "
                     f"draw, sample: per-example drop-path), got {drop_mode!r}")
  if active_blocks is not None:
    if isinstance(active_blocks, bool) or not isinstance(active_blocks, int) or not (
        1 <= active_blocks <= num_blocks):
      raise ValueError(f"active_blocks must be an integer in [1, {num_blocks}] (the net's "
                       f"blocks), got {active_blocks!r}")
    if stochastic_depth is not None or drop_mode != "batch":
      raise ValueError("active_blocks (exactly k blocks per mini-batch) excludes "
                       "stochastic_depth and drop_mode='sample'")


def cifar_stem(net: nn.Module, images: jax.Array, train: bool) -> jax.Array:
  """He et al. 2015 §4.2: 3x3 conv - BN - ReLU. The BN output is the stem's response (Fig. 7)."""
  x = layers.conv3x3(net.stem_features, grad_chunks=net.conv_grad_chunks, name="stem_conv")(images)
  x = layers.batch_norm(train, "stem_bn")(x)
  net.sow("intermediates", "response", x)
  return nn.relu(x)


def conv_stem(net: nn.Module, images: jax.Array, train: bool) -> jax.Array:
  """He et al. 2016: a bare 3x3 conv; the first unit applies the first BN-ReLU."""
  del train
  return layers.conv3x3(net.stem_features, grad_chunks=net.conv_grad_chunks,
                        name="stem_conv")(images)


def imagenet_stem(net: nn.Module, images: jax.Array, train: bool) -> jax.Array:
  """He et al. 2015 Table 1: 7x7/2 conv - BN - ReLU - 3x3/2 max-pool."""
  x = nn.Conv(net.stem_features, (7, 7), strides=2, padding=3, use_bias=False,
              kernel_init=layers.he_normal, name="stem_conv")(images)
  x = nn.relu(layers.batch_norm(train, "stem_bn")(x))
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def pooled_head(net: nn.Module, x: jax.Array, train: bool) -> jax.Array:
  """Global average pool and a dense layer to the logits."""
  del train
  return nn.Dense(net.num_classes, name="head")(jnp.mean(x, axis=(1, 2)))


def preact_head(net: nn.Module, x: jax.Array, train: bool) -> jax.Array:
  """He et al. 2016: "an extra activation right after [the last unit's] addition", then pool."""
  x = nn.relu(layers.batch_norm(train, "final_bn")(x))
  return pooled_head(net, x, train)


class ResNet(nn.Module):
  """stem -> stages of blocks -> head; called as `apply(variables, images, train, controls)`.

  Stage s (from 1) holds `stage_sizes[s-1]` blocks of width `widths[s-1]` (or of the widths
  `unit_widths[s-1]`, one per block); the first block of every stage after the first strides by 2
  (every family here halves the resolution there).

  Attributes:
    stage_sizes: blocks per stage.
    block: the block, `bind(BlockClass, **options)`; called as
      `block(features=, strides=, name=)(x, ctrl, train)`.
    widths: per-stage block width (a bottleneck's output is a multiple of it).
    stem_width: the stem's channels where they differ from widths[0] (Wide ResNets and
      PyramidNets keep a 16-channel stem), else None.
    unit_widths: per stage, the width of each of its blocks, where the blocks of a stage differ
      (PyramidNet widens every unit), else None. Such stages run unrolled
      (`stages.UnrolledStage`, blocks under stage{s}/block{i}), and their blocks cannot be
      reordered (`reorderable` is False); `widths` then holds each stage's last width.
    stem, head: `part(net, x, train)` functions (`cifar_stem`, `pooled_head`, ...).
    first_block: the network's first block where it differs from `block` (He et al. 2016's
      first unit), else None.
    num_classes: logits per image.
    scan_unroll: scanned blocks unrolled per loop step; None: `stages.default_unroll`.
    stochastic_depth: p_L of stochastic depth (Huang et al. 2016), or None for a constant-depth
      net. Block l of L survives a mini-batch with p_l = 1 - l/L (1 - p_L) (linear decay); at
      test time every branch runs, multiplied by p_l.
    drop_mode: "batch" (the paper and its code: one draw per block per mini-batch, a dropped
      branch is not computed, no scaling at train time) or "sample" (per-example drop-path with
      1/p_l at train time and none at test time, as timm).
    active_blocks: effective-path training (Veit et al. 2016 §5): exactly this many blocks,
      chosen uniformly, run in each mini-batch (the others' branches are skipped); at test time
      every branch runs, multiplied by active_blocks / num_blocks, its survival probability.
      §5 says nothing of test time ("we sample exactly 23 modules during each training batch"),
      and the authors' released code (gcr/fb.resnet.torch-lesion-study) holds no k-of-n
      sampler; the dropped-branch training it does hold, stochastic depth (its
      models/StochasticDrop.lua, and Huang et al.'s ResidualDrop that lesion-study.lua loads),
      multiplies each branch by its survival probability at test time, which we follow.
      None: off.
    skip_dropped: in "batch" mode, True skips a dropped block's branch (`nn.cond`: forward and
      backward not computed, the paper's time saving). False computes it and multiplies it by 0:
      the same outputs and gradients (a dropped block's BN running statistics still see the
      batch, the one difference). On XLA's CPU backend jax's own convolution gradients run as
      naive loops inside a conditional, tens of times slower than outside one
      (`benchmarks/xla_cpu_traps.py`), so with `conv_grad_chunks=1` skipping costs time there
      instead of saving it; the CPU default (`layers.sliced_grad_conv`, whose gradients are
      convolutions in XLA's canonical form) runs them at full speed inside the conditional
      (`make bench`'s stochastic-depth rows). 1x1 convolutions (bottleneck branches,
      projections) keep jax's gradients.
    conv_grad_chunks: the slices of the batch on which every 3x3 conv (stem and blocks) computes
      its kernel gradient (`layers.sliced_grad_conv`): the same values and gradients, faster on
      XLA's CPU backend; passed to each block. 1: the plain convolution. `get_model` sets the
      backend's default.

  `apply` takes images [N, H, W, C] float and returns logits [N, num_classes]
  ([K*N, num_classes] when `controls.path_stack` = K).
  """
  stage_sizes: Sequence[int]
  block: ModuleDef
  widths: Sequence[int]
  stem: Part = cifar_stem
  head: Part = pooled_head
  first_block: ModuleDef | None = None
  num_classes: int = 10
  stem_width: int | None = None
  unit_widths: Sequence[Sequence[int]] | None = None
  scan_unroll: int | None = None
  stochastic_depth: float | None = None
  drop_mode: str = "batch"
  active_blocks: int | None = None
  skip_dropped: bool = True
  conv_grad_chunks: int = 1

  @property
  def num_blocks(self) -> int:
    return sum(self.stage_sizes)

  @property
  def stem_features(self) -> int:
    return self.widths[0] if self.stem_width is None else self.stem_width

  def survival(self) -> jax.Array | None:
    """[num_blocks] probability that each block's branch runs in a training mini-batch, or None
    when every branch always runs."""
    n = self.num_blocks
    if self.active_blocks is not None:
      return jnp.full((n,), self.active_blocks / n, jnp.float32)
    if self.stochastic_depth is None:
      return None
    depth = jnp.arange(1, n + 1, dtype=jnp.float32)
    return 1.0 - depth / n * (1.0 - self.stochastic_depth)

  def _drops(self, controls: BlockControls, train: bool) -> BlockControls:
    """The controls of this mini-batch's dropped blocks (training) or of the expected network
    (test: each branch multiplied by its survival probability, a lesion gate of p_l)."""
    survival = self.survival()
    if survival is None or self.is_initializing():
      return controls
    if self.drop_mode == "sample":  # scaled by 1/p_l in training, so nothing to do at test time
      return controls.replace(sample_survival=survival) if train else controls
    if not train:
      return controls.replace(gate=controls.gate * survival)
    # One draw per mini-batch, the same on every device ("minibatch" stream, see steps.py).
    key = self.make_rng("minibatch")
    if self.active_blocks is not None:
      chosen = jax.random.permutation(key, self.num_blocks)[:self.active_blocks]
      keep = jnp.zeros((self.num_blocks,), jnp.float32).at[chosen].set(1.0)
    else:
      keep = jax.random.bernoulli(key, survival).astype(jnp.float32)
    return controls.replace(keep=keep, skip_dropped=self.skip_dropped)

  @property
  def is_residual(self) -> bool:
    """Whether the blocks add a shortcut (paths exist), as the block class declares."""
    return getattr(self.block, "func", self.block).residual

  @property
  def reorderable(self) -> bool:
    """Whether blocks 2..n of every stage share one shape, so that any order of them is a network
    (Veit et al.'s reordering, `surgery.permute_stage_blocks`); False where the widths change
    within a stage."""
    return self.unit_widths is None

  @property
  def branches_per_block(self) -> int:
    """k, the residual branches each block adds to its shortcut: a block offers k + 1 routes
    (1 for every family but the multi-residual nets, whose block sets `branches`)."""
    options = getattr(self.block, "keywords", {})
    return options.get("branches", getattr(getattr(self.block, "func", self.block), "branches", 1))

  def block_names(self) -> tuple[str, ...]:
    return stages.block_names(self.stage_sizes)

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False,
               controls: BlockControls | None = None) -> jax.Array:
    stages.check_images(images)
    x = self.stem(self, images, train)
    x, controls = stages.enter_blocks(self, x, controls, self.num_blocks)
    controls = self._drops(controls, train)
    offset = 0
    for s, (n, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
      first = self.first_block if s == 0 and self.first_block is not None else self.block
      first, block = (functools.partial(b, conv_grad_chunks=self.conv_grad_chunks)
                      for b in (first, self.block))
      strides = 1 if s == 0 else 2
      if self.unit_widths is None:
        stage = stages.Stage(functools.partial(first, features=width, strides=strides),
                             functools.partial(block, features=width, strides=1), n,
                             self.scan_unroll, name=f"stage{s + 1}")
      else:
        stage = stages.UnrolledStage(first, block, tuple(self.unit_widths[s]), strides,
                                     name=f"stage{s + 1}")
      x = stage(x, controls.slice(offset, offset + n), train)
      offset += n
    return self.head(self, x, train)
