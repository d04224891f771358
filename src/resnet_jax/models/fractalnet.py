"""FractalNet (Larsson, Maire & Shakhnarovich 2017): fractal blocks of C columns joined by means,
trained with local and global drop-path; the names fractalnet_c{C}.

A fractal block expands as f_1(z) = conv(z), f_{C+1}(z) = join(f_C(f_C(z)), conv(z)); column c
(0 = shallowest) holds 2^c convs, so the deepest of C columns has 2^(C-1) per block and the
net of B = 5 blocks 2^(C-1) * 5 conv layers (C = 3: "FractalNet-20"; C = 4: 40 layers). The join
of f_{C+1} merges the C inputs of the outer f_C's last join and conv(z) into one join of C + 1
inputs, as the official generator (gustavla/fractalnet, generation/fractalnet.py) builds it.

Every conv is conv3x3 (with bias, Caffe's Xavier init) -> dropout -> BN -> ReLU, the order of the
official Caffe code (gustavla/fractalnet). Its BN has no affine scale and shift, as the official
code's (a Caffe BatchNorm layer has none of its own): the choice keeps the official parameter
counts, and the conv bias before it, cancelled by the mean subtraction, is kept for the same
reason. Each block is thus a mean of normalised, rectified columns with no learned rescaling.
Each block ends in a 2x2 max pool of every column, then the block's last join of the pooled
columns: the official generator's order (it pools each column's last output, then joins), not
a pool of the joined mean, which differs since a max does not commute with a mean. Padding SAME,
so a 1x1 map stays 1x1 on the 16x16 digits. The head averages the final map (1x1 on CIFAR, where
it is the official flatten) and a dense layer gives the logits.

Joins (`join`) average the inputs that survive:
  train, local drop-path (share 1 - global_drop of the mini-batches): each join drops each input
    with probability drop_path, redrawn per join and per mini-batch (the whole batch shares the
    draw, as the official code), and keeps one at random if all were dropped;
  train, global drop-path (share global_drop): one column, drawn per mini-batch, is the whole
    network: every join keeps only that column's input;
  eval: the plain mean;
  `columns` given (eval: the column analysis; train: that subnet alone): the mean over the
    inputs of those columns, no drop-path drawn.
A join that holds none of the kept columns (global drop-path or `columns`) cannot reach the
output (its output enters only convs of its own columns); it takes the plain mean, so it adds
nothing to the loss or the gradients.

BN running statistics (our choice; the official code never released global drop-path): a global
drop-path mini-batch normalises with its own statistics but does not move the running averages
(`global_stats=False`). Such a batch runs one column, another network than the one evaluated (the
plain mean of every column), and layers off that column would not run at all in a network of
that column alone. Measured on digits (fractalnet_c3, widths 8-16-32-64-64, 1,500 steps), the
running averages of every batch gave 64.5 % test error; the same weights with statistics averaged
over local drop-path batches only, 0.75 % (over global batches only, 82 %; recomputed on the full
net, 0.75 %). `global_stats=True` moves them in every batch, as a network that computes every
layer.
"""
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from resnet_jax.models import layers
from resnet_jax.models.family import Family, UnknownDepthError

WIDTHS = (64, 128, 256, 512, 512)
# Per-block dropout of the paper's "+dropout" rows (and the official CIFAR generator).
PAPER_DROPOUT = (0.0, 0.1, 0.2, 0.3, 0.4)
# Caffe's "xavier" filler: uniform with variance 1 / fan_in.
xavier = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
MAX_COLUMNS = 6


def num_paths(num_columns: int, num_blocks: int = len(WIDTHS)) -> int:
  """Paths through a FractalNet: f(1) = 1, f(C) = f(C-1)^2 + 1 per block, times over blocks.

  The expansion rule gives it: a path through f_{C+1} goes through conv(z) alone or through
  both copies of f_C. fractalnet_c3: 5^5 = 3,125; fractalnet_c4: 26^5 = 11,881,376.
  """
  if num_columns < 1 or num_blocks < 1:
    raise ValueError(f"num_columns and num_blocks must be >= 1, got {num_columns}, {num_blocks}")
  per_block = 1
  for _ in range(num_columns - 1):
    per_block = per_block ** 2 + 1
  return per_block ** num_blocks


def join(inputs: Sequence[jax.Array], keep: jax.Array | None) -> jax.Array:
  """The mean of the inputs whose `keep` is 1 (of all of them where none is, or keep is None).

  Args:
    inputs: k arrays [N, H, W, C].
    keep: [k] 0/1 floats, or None for the plain mean.
  Returns:
    [N, H, W, C].
  """
  stacked = jnp.stack(inputs)
  if keep is None:
    return jnp.mean(stacked, axis=0)
  keep = jnp.where(jnp.sum(keep) > 0, keep, jnp.ones_like(keep)).astype(stacked.dtype)
  return jnp.tensordot(keep, stacked, axes=1) / jnp.sum(keep)


class BatchNorm(nn.Module):
  """BN without affine (the official code's), whose running averages move only where `update`.

  `update` is traced (a per-mini-batch draw), so skipping needs no recompile. The statistics are
  flax's `nn.BatchNorm`'s: "batch_stats" {"mean", "var"}, momentum and epsilon of `layers`.
  """

  @nn.compact
  def __call__(self, x: jax.Array, train: bool, update: Any = True) -> jax.Array:
    features = (x.shape[-1],)
    mean = self.variable("batch_stats", "mean", lambda: jnp.zeros(features, jnp.float32))
    var = self.variable("batch_stats", "var", lambda: jnp.ones(features, jnp.float32))
    if train:
      m = jnp.mean(x, axis=(0, 1, 2))
      v = jnp.mean(jnp.square(x - m.reshape(1, 1, 1, -1)), axis=(0, 1, 2))
      if not self.is_initializing():
        keep = layers.BN_MOMENTUM
        mean.value = jnp.where(update, keep * mean.value + (1 - keep) * m, mean.value)
        var.value = jnp.where(update, keep * var.value + (1 - keep) * v, var.value)
    else:
      m, v = mean.value, var.value
    shape = (1, 1, 1, -1)
    return (x - m.reshape(shape)) * jax.lax.rsqrt(v.reshape(shape) + layers.BN_EPSILON)


class FractalNet(nn.Module):
  """B fractal blocks of `num_columns` columns, each column 2x2 max-pooled before the block's last
  join; mean-pool, dense.

  Called as `apply(variables, images, train=False, columns=None)`: images [N, H, W, C] float,
  logits [N, num_classes]. `columns` ([num_columns] 0/1, traced, so one compile serves every
  subset) keeps only those columns (at eval: the column analysis; in training: that subnet
  alone, no drop-path). Otherwise training draws drop-path with the "minibatch" rng (per
  mini-batch, the same on every device; dropout uses "dropout"); eval and init draw nothing.

  Attributes:
    num_columns: C.
    widths: channels of each block (B = len(widths)).
    dropout: per-block dropout rate after each conv.
    drop_path: local drop-path: probability that a join drops an input.
    global_drop: share of mini-batches trained with global drop-path (one column).
    global_stats: whether global drop-path mini-batches move the BN running averages too.
    num_classes: logits per image.
    conv_grad_chunks: > 1: every conv is `layers.sliced_grad_conv(conv_grad_chunks)` (the same
      values and gradients; on a CPU its last block's 3x3 convs of 2x2 maps run about 40x
      faster, see there); `get_model` sets the backend's default.
  """
  num_columns: int
  widths: Sequence[int] = WIDTHS
  dropout: Sequence[float] = (0.0,) * len(WIDTHS)
  drop_path: float = 0.15
  global_drop: float = 0.5
  global_stats: bool = False
  num_classes: int = 10
  conv_grad_chunks: int = 1

  # What the analyses ask of a network: FractalNet has no residual sum (the Veit analyses refuse
  # it) and its blocks are the fractal blocks.
  is_residual: ClassVar[bool] = False

  @property
  def num_blocks(self) -> int:
    return len(self.widths)

  def block_names(self) -> tuple[str, ...]:
    return tuple(f"block{b + 1}" for b in range(self.num_blocks))

  def _conv(self, x, width, rate, policy, name):
    train = policy["train"]
    x = nn.Conv(width, (3, 3), padding=1, kernel_init=xavier,
                conv_general_dilated=layers.conv_op(self.conv_grad_chunks),
                name=f"{name}_conv")(x)
    if rate:
      x = nn.Dropout(rate, deterministic=not train, name=f"{name}_dropout")(x)
    x = BatchNorm(name=f"{name}_bn")(x, train, policy["update_stats"])
    return nn.relu(x)

  def _columns(self, x, k, first, block, policy, counter):
    """The k column outputs of f_k(x) (columns first..first+k-1), not yet joined."""
    width, rate = self.widths[block], self.dropout[block]
    name = f"block{block + 1}_col{first + 1}_{counter[first]}"
    counter[first] += 1
    shallow = self._conv(x, width, rate, policy, name)
    if k == 1:
      return [shallow]
    inner = self._columns(x, k - 1, first + 1, block, policy, counter)
    deep = self._columns(self._join(inner, first + 1, policy), k - 1, first + 1, block, policy,
                         counter)
    return [shallow] + deep

  def _join(self, inputs, first, policy):
    """Joins the outputs of columns first..first+len(inputs)-1 under the call's policy."""
    if len(inputs) == 1:
      return inputs[0]
    k = len(inputs)
    if policy["drop"]:
      local = jax.random.bernoulli(self.make_rng("minibatch"), 1.0 - self.drop_path, (k,))
      rescue = jax.nn.one_hot(jax.random.randint(self.make_rng("minibatch"), (), 0, k), k)
      local = jnp.where(jnp.any(local), local.astype(jnp.float32), rescue)
      chosen = (jnp.arange(first, first + k) == policy["column"]).astype(jnp.float32)
      keep = jnp.where(policy["global"], chosen, local)
    elif policy["columns"] is not None:
      keep = policy["columns"][first:first + k]
    else:
      keep = None
    if keep is not None:
      # The weights each join used, for tests and inspection (kept only when "intermediates"
      # is mutable).
      self.sow("intermediates", "join_keep", keep)
    return join(inputs, keep)

  def _policy(self, train: bool, columns: jax.Array | None) -> dict[str, Any]:
    """What the joins do this call: fixed `columns`, drop-path drawn per mini-batch, or means."""
    if columns is not None:
      columns = jnp.asarray(columns, jnp.float32)
      if columns.shape != (self.num_columns,):
        raise ValueError(f"columns must be [num_columns] = [{self.num_columns}] 0/1 values, got "
                         f"shape {columns.shape}")
      return {"drop": False, "columns": columns}
    if not (train and (self.drop_path > 0 or self.global_drop > 0)):
      return {"drop": False, "columns": None}
    return {"drop": True,
            "global": jax.random.bernoulli(self.make_rng("minibatch"), self.global_drop),
            "column": jax.random.randint(self.make_rng("minibatch"), (), 0, self.num_columns)}

  @nn.compact
  def __call__(self, images: jax.Array, train: bool = False,
               columns: jax.Array | None = None) -> jax.Array:
    if images.ndim != 4:
      raise ValueError(f"images must be [N, H, W, C], got shape {images.shape}")
    policy = dict(self._policy(train, columns), train=train)
    # Global drop-path batches run one column: a different network from the one evaluated, whose
    # statistics would bias the running averages (see the module docstring).
    policy["update_stats"] = (True if self.global_stats or not policy["drop"]
                              else jnp.logical_not(policy["global"]))
    x = images
    pool = lambda y: nn.max_pool(y, (2, 2), strides=(2, 2), padding="SAME")
    for block in range(self.num_blocks):
      counter = [1] * self.num_columns
      columns_out = self._columns(x, self.num_columns, 0, block, policy, counter)
      # Each column is pooled before the block's last join, as the official generator does.
      x = self._join([pool(y) for y in columns_out], 0, policy)
    return nn.Dense(self.num_classes, name="head")(jnp.mean(x, axis=(1, 2)))


def _check_rate(value: Any, name: str, closed: bool = False) -> float:
  """value as a float, if it is a number in [0, 1) (or [0, 1] where closed)."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
      0 <= value < 1 or (closed and value == 1)):
    raise ValueError(f"{name} must be a number in [0, 1{']' if closed else ')'}, got {value!r}")
  return float(value)


def _check_flag(value: Any, name: str) -> bool:
  if not isinstance(value, bool):
    raise ValueError(f"{name} must be True or False, got {value!r}")
  return value


def fractalnet(num_columns: int, *, num_classes: int = 10, widths: Sequence[int] = WIDTHS,
               dropout: bool | Sequence[float] = False, drop_path: float = 0.15,
               global_drop: float = 0.5, global_stats: bool = False) -> FractalNet:
  """Larsson et al. 2017's CIFAR FractalNet with `num_columns` columns (C).

  Args:
    widths: channels per block; B = len(widths) blocks (the paper's 64-128-256-512-512).
    dropout: False (none), True (the paper's 0 / .1 / .2 / .3 / .4 per block, for B = 5) or one
      rate per block.
    drop_path: local drop-path probability per join input (the paper's 0.15); 0 and
      global_drop=0 train without drop-path (the paper's plain rows).
    global_drop: share of mini-batches trained on one global column (the paper's 50 %).
    global_stats: False: only the other mini-batches move the BN running averages (see the
      module docstring); True: every mini-batch does, as a network that computes every layer.
  """
  if not 1 <= num_columns <= MAX_COLUMNS:
    raise UnknownDepthError(f"fractalnet_c{{C}} exists for C in 1..{MAX_COLUMNS}, got "
                            f"{num_columns}")
  widths = tuple(widths)
  if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1
                           for w in widths):
    raise ValueError(f"widths must be one integer >= 1 per block, got {widths}")
  if dropout is True or dropout is False:
    if dropout and len(widths) != len(PAPER_DROPOUT):
      raise ValueError(f"dropout=True is the paper's {PAPER_DROPOUT} for 5 blocks; give one "
                       f"rate per block for {len(widths)} blocks")
    rates = PAPER_DROPOUT if dropout else (0.0,) * len(widths)
  else:
    rates = tuple(dropout) if isinstance(dropout, (tuple, list)) else None
    if rates is None or len(rates) != len(widths):
      raise ValueError(f"dropout must be True, False or one rate per block ({len(widths)}), got "
                       f"{dropout!r}")
    rates = tuple(_check_rate(r, "each dropout rate") for r in rates)
  return FractalNet(num_columns=num_columns, widths=widths, dropout=rates,
                    drop_path=_check_rate(drop_path, "drop_path", closed=True),
                    global_drop=_check_rate(global_drop, "global_drop", closed=True),
                    global_stats=_check_flag(global_stats, "global_stats"),
                    num_classes=num_classes)


FAMILIES = (
    Family("fractalnet_c{columns}", fractalnet, ("fractalnet_c3", "fractalnet_c4"),
           f"fractalnet_c{{C}} (C = 1..{MAX_COLUMNS} columns; c3 is FractalNet-20, c4 40 layers)"),
)
