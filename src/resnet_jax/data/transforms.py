"""Host-side preprocessing in numpy: stratified hold-out, resizing, normalisation statistics."""
import numpy as np

NORMALIZATIONS = ("pixel_mean", "channel_mean_std")


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


def _linear_weights(in_size: int, out_size: int) -> np.ndarray:
  """[out_size, in_size] interpolation matrix of a triangle filter with half-pixel centres."""
  scale = out_size / in_size
  # Upsampling interpolates between the two nearest source pixels; downsampling widens the filter
  # by 1/scale so that it averages all the source pixels it covers instead of aliasing.
  radius = max(1.0, 1.0 / scale)
  centres = (np.arange(out_size) + 0.5) / scale - 0.5
  weights = np.maximum(0.0, 1.0 - np.abs(centres[:, None] - np.arange(in_size)[None, :]) / radius)
  # Near the border part of the filter falls outside the image; renormalising the inside weights
  # is what keeps a constant image constant.
  return weights / weights.sum(axis=1, keepdims=True)


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize to a square size (antialiased when shrinking), as jax.image.resize "linear".

  Bilinear rather than nearest because nearest upsampling of 8x8 digits would only replicate each
  pixel into a 2x2 block, giving the network blocky inputs with no new information either way.

  Args:
    images: [N, H, W, C] float images.
    size: output height and width.
  Returns:
    [N, size, size, C] float32.
  """
  _, height, width, _ = images.shape
  if (height, width) == (size, size):
    return images.astype(np.float32)
  rows = _linear_weights(height, size).astype(np.float32)
  cols = _linear_weights(width, size).astype(np.float32)
  return np.einsum("oh,nhwc,pw->nopc", rows, images.astype(np.float32), cols, optimize=True)


def normalization_stats(train_images: np.ndarray, normalization: str
                        ) -> tuple[np.ndarray, np.ndarray]:
  """Mean and standard deviation to normalise with, from the training images alone.

  Args:
    train_images: [N, H, W, C] float images scaled to [0, 1].
    normalization: "pixel_mean" (He et al. 2015: subtract the mean image, no division) or
      "channel_mean_std" (subtract each channel's mean and divide by its standard deviation).
  Returns:
    (mean, std), float32 and broadcastable against [N, H, W, C]: mean is [H, W, C] and std [1, 1, C]
    of ones for "pixel_mean"; both [1, 1, C] for "channel_mean_std".
  """
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
  channels = train_images.shape[-1]
  # float64 accumulation: a float32 sum over 45k x 32 x 32 pixels loses digits in the mean.
  if normalization == "pixel_mean":
    mean = train_images.mean(axis=0, dtype=np.float64)
    std = np.ones((1, 1, channels))
  else:
    mean = train_images.mean(axis=(0, 1, 2), dtype=np.float64).reshape(1, 1, channels)
    std = train_images.std(axis=(0, 1, 2), dtype=np.float64).reshape(1, 1, channels)
    if np.any(std == 0):
      raise ValueError(f"a channel is constant over the training images (std {std.ravel()}); "
                       "channel_mean_std cannot normalise it")
  return mean.astype(np.float32), std.astype(np.float32)
