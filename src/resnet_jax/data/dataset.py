"""`load_dataset`: every data set as normalised float32 numpy arrays, split into train/val/test.

The whole data set lives in host memory (CIFAR's 60k images are 0.7 GB as float32) and batches are
picked on device by `resnet_jax.augment.batch_indices`, so there is no input pipeline to tune.
`splits=` keeps only some splits, e.g. the test images when analysing a trained network.

Sources and defaults:

| name          | source                                          | native  | val   | test   |
|---------------|-------------------------------------------------|---------|-------|--------|
| digits        | sklearn.datasets.load_digits (1,797 real scans) | 8x8x1   | 200   | 400    |
| fashion_mnist | IDX files (data_dir, else Debian's), else tfds  | 28x28x1 | 5,000 | 10,000 |
| cifar10       | official archive if `archive`, else tfds        | 32x32x3 | 5,000 | 10,000 |
| cifar100      | official archive if `archive`, else tfds        | 32x32x3 | 5,000 | 10,000 |
| synthetic     | seeded noise around one template per class      | 32x32x3 | 0     | 2,000  |

("val": training images held out as the validation split, by default.)

digits has no official test split: a fixed stratified 400 (seed 0 whatever `seed` is, so test
numbers stay comparable across runs) is the test split, and the validation images come out of the
remaining 1,397, giving 1,197 / 200 / 400. Digits are upsampled to 16x16 by default so that a
three-stage CIFAR ResNet sees 16/8/4 feature maps instead of 8/4/2.
"""
import dataclasses
from collections.abc import Iterable, Sequence

import numpy as np

from resnet_jax.data import transforms
from resnet_jax.data.sources import NUM_CLASSES, read_source

DATASETS = ("digits", "fashion_mnist", "cifar10", "cifar100", "synthetic")
NORMALIZATIONS = transforms.NORMALIZATIONS

DEFAULT_VAL_SIZE = {"digits": 200, "fashion_mnist": 5000, "cifar10": 5000, "cifar100": 5000,
                    "synthetic": 0}
DEFAULT_IMAGE_SIZE = {"digits": 16}
SPLITS = ("train", "val", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """A data set in memory, normalised with statistics of its training split.

  A split not asked for in `load_dataset(splits=...)` is empty: images [0, H, W, C], labels [0].

  Attributes:
    name: one of DATASETS.
    train_images: [N, H, W, C] float32, normalised.
    train_labels: [N] int32 in [0, num_classes).
    val_images: [M, H, W, C] float32 held out of the official training split (M may be 0).
    val_labels: [M] int32.
    test_images: [T, H, W, C] float32.
    test_labels: [T] int32.
    num_classes: number of classes.
    normalization: "pixel_mean" or "channel_mean_std".
    mean: subtracted after scaling pixels to [0, 1]; [H, W, C] for "pixel_mean", [1, 1, C] for
      "channel_mean_std".
    std: [1, 1, C] divisor after the subtraction (ones for "pixel_mean").
  """
  name: str
  train_images: np.ndarray
  train_labels: np.ndarray
  val_images: np.ndarray
  val_labels: np.ndarray
  test_images: np.ndarray
  test_labels: np.ndarray
  num_classes: int
  normalization: str = "pixel_mean"
  mean: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((1, 1, 1), np.float32))
  std: np.ndarray = dataclasses.field(default_factory=lambda: np.ones((1, 1, 1), np.float32))

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """(H, W, C) of every image."""
    return tuple(self.train_images.shape[1:])

  def __repr__(self) -> str:
    # The default repr would print every pixel.
    return (f"Dataset({self.name!r}, train={self.train_images.shape}, "
            f"val={self.val_images.shape}, test={self.test_images.shape}, "
            f"num_classes={self.num_classes}, normalization={self.normalization!r})")


def _check_int(name: str, value, minimum: int) -> None:
  if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                            or value < minimum):
    raise ValueError(f"{name} must be None or an int >= {minimum}, got {value!r}")


def _check_args(name: str, *, archive: str, normalization: str, val_size, limit, image_size,
                splits) -> None:
  """Raises ValueError on arguments that no data source could satisfy, before reading anything."""
  if name not in DATASETS:
    raise ValueError(f"unknown data set {name!r}; choose one of {DATASETS}")
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
  _check_int("val_size", val_size, 0)
  _check_int("limit", limit, 1)
  _check_int("image_size", image_size, 1)
  if archive and name not in ("cifar10", "cifar100"):
    raise ValueError(f"archive= is only for ('cifar10', 'cifar100'), not {name!r}")
  # A bare string is a sequence too, of letters: splits="test" would otherwise fail as unknown "t".
  if isinstance(splits, str) or not splits or not set(splits) <= set(SPLITS):
    raise ValueError(f"splits must be a non-empty sequence of names from {SPLITS}, such as "
                     f"('test',); got {splits!r}")


def _split(raw: dict, name: str, val_size: int, seed: int, limit: int | None
           ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
  """Which raw images make up each split.

  Args:
    raw: as returned by `sources.read_source`.
    name, val_size, seed, limit: as for `load_dataset` (val_size resolved to an int).
  Returns:
    {"train": (images, labels, index), "val": ..., "test": ...}: the split is images[index]
    ([n, H, W, C]) and labels[index] ([n]); index is [n] int64, already cut to `limit`.
  """
  num_train = raw["train_labels"].shape[0]
  if val_size >= num_train:
    raise ValueError(f"val_size={val_size} must be smaller than the {num_train} training images "
                     f"of {name}")
  kept, held = transforms.stratified_split(raw["train_labels"], val_size, seed)
  all_test = np.arange(raw["test_labels"].shape[0])
  return {"train": (raw["train_images"], raw["train_labels"], kept[:limit]),
          "val": (raw["train_images"], raw["train_labels"], held[:limit]),
          "test": (raw["test_images"], raw["test_labels"], all_test[:limit])}


def _to_float(images: np.ndarray, index: np.ndarray, max_value: float,
              image_size: int | None) -> np.ndarray:
  """Scales images[index] to [0, 1] in float32 and resizes them.

  Args:
    images: [N, H, W, C] pixels in [0, max_value].
    index: [n] indices into images.
    max_value: the largest pixel value of the source (16 for digits, 255 for photos).
    image_size: S, the output height and width; None keeps H x W.
  Returns:
    [n, S, S, C] float32.
  """
  x = images[index].astype(np.float32) / np.float32(max_value)
  return x if image_size is None else transforms.resize_bilinear(x, image_size)


def _train_chunks(train: tuple[np.ndarray, np.ndarray, np.ndarray], arrays: dict[str, np.ndarray],
                  splits: Sequence[str], max_value: float, image_size: int | None
                  ) -> Iterable[np.ndarray]:
  """The training split as kept, in float32 chunks for `transforms.normalization_stats`.

  Args:
    train: the "train" entry of `_split`'s result.
    arrays: the materialised splits, f"{split}_images" [n, S, S, C] float32, not yet normalised.
    splits, max_value, image_size: as given to `load_dataset` and `_to_float`.
  Returns:
    [the whole split, [N, S, S, C]] when it is in `splits`: it is in memory anyway, and as one
    chunk it gives numpy's statistics exactly. Otherwise chunks of RESIZE_CHUNK images, made one at
    a time so that the split is never held whole as float32; they fall where `resize_bilinear`
    cuts its own chunks, so their pixels are bit for bit those of the whole split.
  """
  if "train" in splits:
    return [arrays["train_images"]]
  images, _, index = train
  step = transforms.RESIZE_CHUNK
  return (_to_float(images, index[start:start + step], max_value, image_size)
          for start in range(0, len(index), step))


def _normalize(arrays: dict[str, np.ndarray], mean: np.ndarray, std: np.ndarray,
               normalization: str) -> None:
  """Normalises every f"{split}_images" [n, H, W, C] of `arrays` in place."""
  for split in ("train", "val", "test"):
    x = arrays[f"{split}_images"]
    # In place: CIFAR's float32 copy is large enough that a second one matters.
    x -= mean
    if normalization != "pixel_mean":
      x /= std


def load_dataset(name: str, *, data_dir: str = "", archive: str = "", val_size: int | None = None,
                 normalization: str = "pixel_mean", seed: int = 0, image_size: int | None = None,
                 limit: int | None = None, splits: Sequence[str] = SPLITS) -> Dataset:
  """Loads, splits, resizes and normalises a data set.

  Steps, in order: read the official train/test splits; hold `val_size` training images out as
  validation (stratified by class, chosen by `seed`); keep the first `limit` images of each split;
  scale pixels to [0, 1]; resize; normalise every split with statistics of the training split as
  kept (so that with `limit` the statistics describe exactly the images trained on).

  Args:
    name: one of DATASETS.
    data_dir: fashion_mnist: a directory holding the four IDX files, else a tfds data_dir;
      cifar10/100: a tfds data_dir. "" means /usr/share/datasets/fashion-mnist for fashion_mnist
      and tfds's default directory otherwise. Unused by digits and synthetic.
    archive: cifar10/100 only: path of the official python .tar.gz; read instead of tfds.
    val_size: training images held out as validation; None means DEFAULT_VAL_SIZE[name] (5,000 for
      CIFAR is He et al. 2015's 45k/5k split). 0 gives an empty validation split.
    normalization: "pixel_mean" (He et al. 2015: subtract the per-pixel mean image) or
      "channel_mean_std" (per-channel standardisation).
    seed: chooses the validation images; for synthetic also generates the images.
    image_size: resize to image_size x image_size, bilinearly (see `transforms.resize_bilinear`);
      None means DEFAULT_IMAGE_SIZE (16 for digits) or the native size. synthetic is generated at
      that size directly.
    limit: keep only the first `limit` images of each split after the validation split. For
      synthetic it is also the number generated: `limit` train (plus `val_size`) and `limit` test
      images, or sources.SYNTHETIC_TRAIN_SIZE / SYNTHETIC_TEST_SIZE when None.
    splits: the splits to materialise; the others come back empty. The statistics are still those
      of the training split as kept, computed chunk by chunk when "train" is not asked for, so that
      e.g. analysing test images does not hold the training split as float32.
  Returns:
    The Dataset; images [*, H, W, C] float32, labels int32.
  Raises:
    ValueError: on an unknown name or normalization, `archive` for a non-CIFAR data set, a negative
      or non-integer val_size/limit/image_size, val_size not smaller than the training split, or
      `splits` empty or naming anything but "train", "val" and "test".
    DataUnavailableError: if the data is not on this machine; the message says how to get it.
  """
  _check_args(name, archive=archive, normalization=normalization, val_size=val_size, limit=limit,
              image_size=image_size, splits=splits)
  val_size = DEFAULT_VAL_SIZE[name] if val_size is None else int(val_size)
  image_size = DEFAULT_IMAGE_SIZE.get(name) if image_size is None else int(image_size)
  raw = read_source(name, data_dir=data_dir, archive=archive, seed=seed, image_size=image_size,
                    limit=limit, val_size=val_size)
  parts = _split(raw, name, val_size, seed, limit)
  arrays = {}
  for split, (images, labels, index) in parts.items():
    # A split not asked for gets an empty index, hence arrays [0, S, S, C] and [0].
    index = index if split in splits else index[:0]
    arrays[f"{split}_images"] = _to_float(images, index, raw["max_value"], image_size)
    arrays[f"{split}_labels"] = labels[index].astype(np.int32)
  chunks = _train_chunks(parts["train"], arrays, splits, raw["max_value"], image_size)
  mean, std = transforms.normalization_stats(chunks, normalization)
  _normalize(arrays, mean, std, normalization)
  return Dataset(name=name, num_classes=NUM_CLASSES[name], normalization=normalization, mean=mean,
                 std=std, **arrays)
