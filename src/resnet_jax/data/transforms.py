"""Host-side preprocessing: stratified hold-out, resizing, normalisation statistics."""
import math
from collections.abc import Iterable

import jax
import numpy as np

NORMALIZATIONS = ("pixel_mean", "channel_mean_std")
# Images per call of jax.image.resize. XLA may round a batch of one differently (by one ulp) from
# a larger batch, so whoever must reproduce a resize bit for bit feeds it the same chunks.
RESIZE_CHUNK = 4096


def stratified_split(labels: np.ndarray, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Splits indices into a kept part and a held-out part with the same class proportions.

  Each class c with n_c of the N examples gets floor(holdout * n_c / N) held-out slots; the few
  slots left over go to the classes with the largest fractional parts (ties broken at random, so
  that low class indices are not favoured). A hold-out smaller than the number of classes therefore
  misses some classes: that is as stratified as the labels allow.

  Args:
    labels: [N] integer class labels.
    holdout: number of examples to hold out, 0 <= holdout <= N.
    seed: seeds which examples of each class are held out.
  Returns:
    (kept, held): [N - holdout] and [holdout] int64 indices, each in increasing order so that the
    split keeps the source's order.
  """
  labels = np.asarray(labels)
  n = labels.shape[0]
  if not 0 <= holdout <= n:
    raise ValueError(f"cannot hold out {holdout} of {n} examples")
  rng = np.random.default_rng(seed)
  classes, counts = np.unique(labels, return_counts=True)
  quota = holdout * counts / max(n, 1)
  take = np.floor(quota).astype(np.int64)
  leftover = holdout - int(take.sum())
  order = np.lexsort((rng.random(len(classes)), -(quota - take)))
  take[order[:leftover]] += 1
  held = [rng.permutation(np.flatnonzero(labels == c))[:t] for c, t in zip(classes, take)]
  held = np.sort(np.concatenate(held)) if held else np.zeros((0,), np.int64)
  kept = np.setdiff1d(np.arange(n), held, assume_unique=True)
  return kept, held


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize to a square size, antialiased when shrinking (jax.image.resize "linear").

  Bilinear rather than nearest because nearest upsampling of 8x8 digits would only replicate each
  pixel into a 2x2 block, giving the network blocky inputs with no new information either way.
  Antialiased because plain bilinear shrinking samples only the pixels next to each output centre,
  aliasing fine texture (Fashion-MNIST 28 -> 14) instead of averaging it.

  Runs on the CPU whatever jax's default device: this is host-side preprocessing, so the pixels do
  not depend on which accelerator loaded the data, and no accelerator memory is taken.

  Args:
    images: [N, H, W, C] float images.
    size: output height and width.
  Returns:
    [N, size, size, C] float32 numpy array.
  """
  num, height, width, channels = images.shape
  if (height, width) == (size, size):
    return images.astype(np.float32)
  out = np.empty((num, size, size, channels), np.float32)
  with jax.default_device(jax.local_devices(backend="cpu")[0]):
    # In chunks: jax holds its own copy of the input and output, which for the whole of
    # Fashion-MNIST would add half a gigabyte.
    for start in range(0, num, RESIZE_CHUNK):
      chunk = images[start:start + RESIZE_CHUNK].astype(np.float32, copy=False)
      out[start:start + len(chunk)] = jax.image.resize(
          chunk, (len(chunk), size, size, channels), "linear", antialias=True)
  return out


def _moments(chunks: Iterable[np.ndarray], axes: tuple[int, ...], with_m2: bool
             ) -> tuple[int, np.ndarray, np.ndarray | float]:
  """Count, mean and sum of squared deviations over `axes` of images that come in chunks.

  Args:
    chunks: [n_i, H, W, C] float arrays.
    axes: the axes reduced, (0,) or (0, 1, 2).
    with_m2: whether to compute the squared deviations (skipped for pixel_mean, which needs none).
  Returns:
    (count, mean, m2): values reduced per output element, and float64 arrays shaped like the
    input with `axes` kept as size 1 (m2 stays 0.0 unless with_m2).
  """
  count, mean, m2 = 0, 0.0, 0.0
  for chunk in chunks:
    n = math.prod(chunk.shape[a] for a in axes)
    if n == 0:
      continue
    # float64 accumulation: a float32 sum over 45k x 32 x 32 pixels loses digits in the mean.
    chunk_mean = chunk.mean(axis=axes, dtype=np.float64, keepdims=True)
    delta = chunk_mean - mean
    if with_m2:
      dev = chunk - chunk_mean
      chunk_m2 = np.sum(np.multiply(dev, dev, out=dev), axis=axes, keepdims=True)
      # Chan et al.'s update: squared deviations from the mean of everything so far, without a
      # second pass over the images. With count 0 it adds exact zeros, so that one chunk gives
      # numpy's mean and std of that chunk bit for bit.
      m2 = m2 + chunk_m2 + delta * delta * (count * n / (count + n))
    mean = mean + delta * (n / (count + n))
    count += n
  return count, mean, m2


def normalization_stats(chunks: Iterable[np.ndarray], normalization: str
                        ) -> tuple[np.ndarray, np.ndarray]:
  """Mean and standard deviation to normalise with, from the training images alone.

  The images come in chunks so that the training split need not be held as float32 when it is not
  wanted (`load_dataset(splits=("test",))`). A single chunk gives exactly numpy's float64 mean and
  std of it; several give the same up to float64 rounding, invisible in the float32 results
  except, rarely, in the last bit.

  Args:
    chunks: [n_i, H, W, C] float images scaled to [0, 1]; together the training split.
    normalization: "pixel_mean" (He et al. 2015: subtract the mean image, no division) or
      "channel_mean_std" (subtract each channel's mean and divide by its standard deviation).
  Returns:
    (mean, std), float32 and broadcastable against [N, H, W, C]: mean is [H, W, C] and std [1, 1, C]
    of ones for "pixel_mean"; both [1, 1, C] for "channel_mean_std".
  Raises:
    ValueError: on an unknown normalization, no images, or a constant channel.
    TypeError: if `chunks` is one array rather than an iterable of them.
  """
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
  if isinstance(chunks, np.ndarray):
    # Iterating over it would pass single images as chunks and silently give wrong statistics.
    raise TypeError("normalization_stats takes an iterable of [n, H, W, C] chunks, e.g. [images]")
  pixel_mean = normalization == "pixel_mean"
  # pixel_mean averages each pixel over the images, channel_mean_std each channel over all pixels.
  count, mean, m2 = _moments(chunks, (0,) if pixel_mean else (0, 1, 2), with_m2=not pixel_mean)
  if count == 0:
    raise ValueError("normalisation statistics need at least one training image")
  channels = mean.shape[-1]
  if pixel_mean:
    return mean[0].astype(np.float32), np.ones((1, 1, channels), np.float32)
  mean = mean.reshape(1, 1, channels)
  std = np.sqrt(m2 / count).reshape(1, 1, channels)
  if np.any(std == 0):
    raise ValueError(f"a channel is constant over the training images (std {std.ravel()}); "
                     "channel_mean_std cannot normalise it")
  return mean.astype(np.float32), std.astype(np.float32)
