"""Shared plumbing of the analyses: input checks, fixed-shape chunking, the loss.

Every analysis runs one jitted core with the model as a static argument and everything else
(variables, images, masks, routes, permutations) as traced arrays. Inputs are cut into chunks of
one fixed shape (the last chunk padded, padded examples weighted 0), so a call compiles once per
(model, chunk shape) however many mask rows or images it is given.
"""
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from resnet_jax.models import ResNet
from resnet_jax.models.densenet import DenseNet

# Default budget of images pushed through the network at once, counting every mask row / route /
# path copy as a separate image. Eval forwards of 32x32 CIFAR nets take ~0.1-1 MB per image, and
# input-gradient backward passes keep only ReLU masks, so 512 stays within a few GB even at
# ResNet-110 depth.
DEFAULT_MAX_BATCH = 512


def eval_variables(variables: Mapping[str, Any]) -> dict:
  """The collections that an eval-mode forward reads: params and BN running statistics."""
  if "params" not in variables:
    raise ValueError(f"variables need a 'params' collection, got {sorted(variables)}")
  out = {"params": variables["params"]}
  if "batch_stats" in variables:
    out["batch_stats"] = variables["batch_stats"]
  return out


def check_images(images: Any) -> jax.Array:
  """images [N, H, W, C] as a float jax.Array, if N >= 1 and every value is finite.

  Non-finite pixels must not reach the analyses: argmax of NaN logits is class 0 (a lesion error
  of 1 - share of class 0) and NaN gradients have norms that read as 0, so a corrupt input would
  come back as plausible numbers.
  """
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[0] < 1:
    raise ValueError(f"images must be [N, H, W, C] with N >= 1, got shape {images.shape}")
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"images must be floating point, got {images.dtype}")
  bad = np.asarray(jnp.sum(~jnp.isfinite(images), axis=(1, 2, 3)))  # [N] per-image counts
  if bad.any():
    where = np.flatnonzero(bad)
    shown = ", ".join(str(i) for i in where[:10]) + (", ..." if where.size > 10 else "")
    raise ValueError(f"images hold {int(bad.sum())} non-finite values (NaN or inf) in "
                     f"{where.size} of {images.shape[0]} images, at indices [{shown}]")
  return images


def check_labels(model: Any, images: jax.Array, labels: Any) -> jax.Array:
  """Integer class labels [N], one per image, within [0, num_classes)."""
  labels = np.asarray(labels)
  if labels.shape != (images.shape[0],):
    raise ValueError(f"labels must be [N] = [{images.shape[0]}] (one per image), got shape "
                     f"{labels.shape}")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be integers, got {labels.dtype}")
  num_classes = getattr(model, "num_classes", None)
  if labels.size and (labels.min() < 0 or (num_classes and labels.max() >= num_classes)):
    raise ValueError(f"labels must lie in [0, {num_classes}), got range "
                     f"[{labels.min()}, {labels.max()}]")
  return jnp.asarray(labels, jnp.int32)


def check_block_network(model: Any) -> None:
  """The He/Veit analyses act on the blocks of a network of blocks, a `models.ResNet` or a
  `models.DenseNet` (their controls, responses and stages); a FractalNet has columns instead
  (`analysis.columns`)."""
  if not isinstance(model, (ResNet, DenseNet)):
    raise ValueError(f"this analysis needs a network of blocks (resnet*, plain*, preact_*, wrn*, "
                     f"pyramidnet*, multires*, densenet*), got {type(model).__name__}; a "
                     "FractalNet has the column analysis (analysis.column_analysis)")


def check_residual(model: Any) -> None:
  """Paths exist only in residual nets; a plain twin has one path through every block."""
  check_block_network(model)
  if not model.is_residual:
    raise ValueError("path analyses need a residual network; plain nets have a single path "
                     "(use the lesion and response analyses for plain twins)")


def branches_per_block(model: Any) -> int:
  """k, the residual branches each block adds to its shortcut (`ResNet.branches_per_block`); a
  model that does not say has one branch per block, as every residual family but Abdi &
  Nahavandi's multi-residual nets."""
  return int(getattr(model, "branches_per_block", 1))


def check_count(value: Any, name: str, minimum: int = 1) -> int:
  """`value` as an int, if it is an integer >= minimum (a budget, a number of samples)."""
  if not isinstance(value, (int, np.integer)) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
  return int(value)


def check_counts(values: Any, name: str, maximum: int | None = None) -> np.ndarray:
  """[K] int64: `values` flattened, if non-empty with entries in [0, maximum] (or >= 0)."""
  values = np.asarray(values, np.int64).reshape(-1)
  if values.size == 0 or values.min() < 0 or (maximum is not None and values.max() > maximum):
    bound = ">= 0" if maximum is None else f"in [0, {maximum}]"
    raise ValueError(f"{name} must be a non-empty list of integers {bound}, got "
                     f"{values.tolist()}")
  return values


def check_batch(model: Any, variables: Mapping[str, Any], images: Any, labels: Any,
                max_batch: int) -> tuple[dict, jax.Array, jax.Array, int]:
  """The checks of every labelled analysis: (eval variables, images, labels, max_batch)."""
  images = check_images(images)
  labels = check_labels(model, images, labels)
  max_batch = check_count(max_batch, "max_batch")
  return eval_variables(variables), images, labels, max_batch


def random_subsets(key: jax.Array, sizes: np.ndarray, samples: int, n: int) -> np.ndarray:
  """[K, samples, n] bool: uniform random subsets of n items, sizes[k] of them in row k.

  Each row ranks the items by uniform noise and keeps the sizes[k] lowest ranks; every subset of
  that size is equally likely.
  """
  u = np.asarray(jax.random.uniform(key, (sizes.size, samples, n)))
  ranks = np.argsort(np.argsort(u, axis=-1), axis=-1)
  return ranks < sizes[:, None, None]


def random_batches(key: jax.Array, num_batches: int, num_images: int,
                   batch_size: int) -> np.ndarray:
  """[num_batches, batch_size] int64: independent uniform random batches of image indices.

  Each row holds batch_size distinct indices of range(num_images) in random order (a batch drawn
  without repeats, as from a shuffled epoch); rows are independent of one another. The draw is a
  numpy Generator seeded by the key's data: reproducible from the key, and fast for a small batch
  from a large split (a JAX permutation of every row of 50,000 indices takes minutes on a CPU).

  Raises:
    ValueError: num_batches < 1, batch_size < 1, or batch_size > num_images.
  """
  num_batches = check_count(num_batches, "num_batches")
  batch_size = check_count(batch_size, "batch_size")
  if batch_size > num_images:
    raise ValueError(f"a batch of {batch_size} distinct images needs at least {batch_size} "
                     f"images, got {num_images}")
  rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel())
  return np.stack([rng.choice(num_images, batch_size, replace=False)
                   for _ in range(num_batches)]).astype(np.int64)


def pad_rows(x: Any, size: int, fill: float = 0) -> jax.Array:
  """Pads axis 0 of x up to `size` with `fill`."""
  x = jnp.asarray(x)
  extra = size - x.shape[0]
  if extra <= 0:
    return x
  pad = jnp.full((extra,) + x.shape[1:], fill, x.dtype)
  return jnp.concatenate([x, pad], axis=0)


def image_chunks(images: jax.Array, labels: jax.Array,
                 chunk: int) -> Iterator[tuple[jax.Array, jax.Array, jax.Array]]:
  """Yields (images, labels, weights) chunks of exactly `chunk` examples; padding has weight 0."""
  n = images.shape[0]
  for start in range(0, n, chunk):
    stop = min(start + chunk, n)
    weights = jnp.ones((stop - start,), jnp.float32)
    yield (pad_rows(images[start:stop], chunk), pad_rows(labels[start:stop], chunk),
           pad_rows(weights, chunk))


def split_budget(num_rows: int, num_images: int, max_batch: int) -> tuple[int, int]:
  """(rows per call, images per call) with rows * images <= max_batch where possible.

  Images are cut first (a single row may not fit), then as many rows as fit are vmapped.
  """
  image_chunk = max(1, min(num_images, max_batch))
  row_chunk = max(1, min(num_rows, max_batch // image_chunk))
  return row_chunk, image_chunk


def weighted_cross_entropy(logits: jax.Array, labels: jax.Array, weights: jax.Array,
                           inv_total: jax.Array) -> jax.Array:
  """sum_i w_i CE(logits_i, y_i) * inv_total: the batch-mean loss of a chunk's share.

  With inv_total = 1 / (number of real images in the whole batch), the gradients of the chunks add
  up to the gradient of the mean cross-entropy over the whole batch.
  """
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  return jnp.sum(weights * ce) * inv_total


def _row_chunk(rows: Any, pad_row: Any, start: int, stop: int, size: int) -> Any:
  """Rows start..stop-1 of the pytree `rows`, padded with copies of `pad_row` to `size` rows."""
  fill = size - (stop - start)
  return jax.tree.map(lambda r, p: jnp.concatenate([r[start:stop]] + [p[None]] * fill), rows,
                      pad_row)


def run_chunked(fn, rows, pad_row, images, labels, max_batch: int, reduce: bool) -> np.ndarray:
  """Runs a jitted core over fixed-shape chunks of rows (masks, routes, orders) and images.

  Args:
    fn: called as fn(images, labels, weights, rows) with [image_chunk, ...] images, labels and
      0/1 weights (0 = padding) and a [row_chunk, ...] pytree of rows; returns [row_chunk] per-row
      sums over the images (reduce=True) or [row_chunk, image_chunk, ...] per-image values.
    rows: pytree of arrays with leading axis num_rows.
    pad_row: pytree of one row, used to fill the last row chunk.
    images, labels: [N, ...] and [N].
    max_batch: budget of rows x images per call (see `split_budget`).
    reduce: True: add the outputs of the image chunks; False: concatenate them along axis 1.
  Returns:
    [num_rows] or [num_rows, N, ...] numpy array; padded rows and images are dropped.
  """
  num_rows = jax.tree.leaves(rows)[0].shape[0]
  row_chunk, image_chunk = split_budget(num_rows, images.shape[0], max_batch)
  pending = []  # device arrays; converted at the end so that dispatch stays asynchronous
  for start in range(0, num_rows, row_chunk):
    stop = min(start + row_chunk, num_rows)
    chunk = _row_chunk(rows, pad_row, start, stop, row_chunk)
    parts = [fn(x, y, w, chunk) for x, y, w in image_chunks(images, labels, image_chunk)]
    pending.append((stop - start, parts))
  out = []
  for count, parts in pending:
    parts = [np.asarray(p) for p in parts]
    if reduce:
      part = np.sum(np.stack(parts), axis=0)
    else:
      part = np.concatenate(parts, axis=1)[:, :images.shape[0]]
    out.append(part[:count])
  return np.concatenate(out, axis=0)


def run_batched_rows(fn, rows: jax.Array, batches: np.ndarray, images: jax.Array,
                     labels: jax.Array, max_batch: int) -> np.ndarray:
  """Like `run_chunked` (reduce=True), but row r runs on its own batch images[batches[r]].

  Args:
    fn: called as fn(images, labels, weights, rows) with [row_chunk, image_chunk, ...] images,
      [row_chunk, image_chunk] labels, [image_chunk] 0/1 weights (0 = padding) and
      [row_chunk, ...] rows; returns [row_chunk] per-row sums over the images.
    rows: [R, ...] array.
    batches: [R, B] int indices into images and labels.
    images, labels: [N, ...] and [N].
    max_batch: budget of rows x batch images per call (see `split_budget`).
  Returns:
    [R] float64 sums over each row's batch; extra rows (copies of the last) are dropped.
  """
  num_rows, batch = batches.shape
  row_chunk, image_chunk = split_budget(num_rows, batch, max_batch)
  pending = []  # device arrays; converted at the end so that dispatch stays asynchronous
  for start in range(0, num_rows, row_chunk):
    index = np.minimum(np.arange(start, start + row_chunk), num_rows - 1)
    for first in range(0, batch, image_chunk):
      cols = np.arange(first, first + image_chunk)
      picked = jnp.asarray(batches[index][:, np.minimum(cols, batch - 1)])
      pending.append((start, fn(jnp.take(images, picked, axis=0), labels[picked],
                                jnp.asarray(cols < batch, jnp.float32), rows[index])))
  out = np.zeros(num_rows + row_chunk)
  for start, part in pending:
    out[start:start + row_chunk] += np.asarray(part, np.float64)
  return out[:num_rows]
