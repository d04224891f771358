"""The raw sources behind `load_dataset`: each data set's official splits, not yet normalised.

Every reader returns {"train_images": [N, H, W, C], "train_labels": [N] int32,
"test_images": [T, H, W, C], "test_labels": [T] int32, "max_value": float}, the images uint8
(float32 for synthetic) with pixels in [0, max_value].
"""
import os

import numpy as np

from resnet_jax.data import cifar, idx, tfds_source, transforms
from resnet_jax.data.errors import DataUnavailableError

NUM_CLASSES = {"digits": 10, "fashion_mnist": 10, "cifar10": 10, "cifar100": 100, "synthetic": 10}

DIGITS_TEST_SIZE = 400
DIGITS_TEST_SEED = 0
SYNTHETIC_TRAIN_SIZE = 10_000
SYNTHETIC_TEST_SIZE = 2_000
SYNTHETIC_SHAPE = (32, 32, 3)


def read_source(name: str, *, data_dir: str, archive: str, seed: int, image_size: int | None,
                limit: int | None, val_size: int) -> dict:
  """Reads the official train and test splits of a data set, as described in the module docstring.

  Args:
    name: one of dataset.DATASETS; data_dir, archive: as for `load_dataset`.
    seed: synthetic only: generates the images.
    image_size: synthetic only: generated at this size (None: SYNTHETIC_SHAPE).
    limit, val_size: synthetic only: it generates `limit` + `val_size` training and `limit` test
      images (SYNTHETIC_TRAIN_SIZE + val_size and SYNTHETIC_TEST_SIZE when `limit` is None).
  Raises:
    DataUnavailableError: if the data is not on this machine; the message says how to get it.
  """
  if name == "digits":
    return _digits()
  if name == "synthetic":
    train_size = SYNTHETIC_TRAIN_SIZE if limit is None else limit
    return _synthetic(seed, image_size, train_size + val_size,
                      SYNTHETIC_TEST_SIZE if limit is None else limit)
  if name == "fashion_mnist":
    return _fashion_mnist(data_dir)
  return _cifar(name, data_dir, archive)


def _digits() -> dict:
  from sklearn.datasets import load_digits  # sklearn ships the file; nothing is downloaded.
  bunch = load_digits()
  images = bunch.images.astype(np.uint8)[..., None]  # [1797, 8, 8, 1], values 0..16
  labels = bunch.target.astype(np.int32)
  pool, test = transforms.stratified_split(labels, DIGITS_TEST_SIZE, DIGITS_TEST_SEED)
  return {"train_images": images[pool], "train_labels": labels[pool],
          "test_images": images[test], "test_labels": labels[test], "max_value": 16.0}


def _synthetic(seed: int, image_size: int | None, train_size: int, test_size: int) -> dict:
  height, width, channels = SYNTHETIC_SHAPE
  if image_size is not None:
    height = width = image_size
  rng = np.random.default_rng(seed)
  num_classes = NUM_CLASSES["synthetic"]
  # Half a fixed template per class, half fresh noise: learnable, so a smoke run's loss must fall,
  # yet not so easy that a benchmark step differs from a real one (the cost does not depend on it).
  templates = rng.random((num_classes, height, width, channels), dtype=np.float32)

  def draw(n):
    labels = rng.integers(0, num_classes, n).astype(np.int32)
    noise = rng.random((n, height, width, channels), dtype=np.float32)
    return 0.5 * templates[labels] + 0.5 * noise, labels

  train_images, train_labels = draw(train_size)
  test_images, test_labels = draw(test_size)
  return {"train_images": train_images, "train_labels": train_labels,
          "test_images": test_images, "test_labels": test_labels, "max_value": 1.0}


def _fashion_mnist(data_dir: str) -> dict:
  directory = data_dir or idx.DEBIAN_FASHION_MNIST_DIR
  files = idx.find_fashion_mnist_files(directory) if os.path.isdir(directory) else None
  if files is not None:
    return dict(idx.read_fashion_mnist(files), max_value=255.0)
  # No IDX files: the same data may have been prepared for tfds (in data_dir when given).
  try:
    return dict(tfds_source.read_tfds("fashion_mnist", data_dir), max_value=255.0)
  except DataUnavailableError as err:
    raise DataUnavailableError(f"no Fashion-MNIST IDX files in {directory}, and {err}") from None


def _cifar(name: str, data_dir: str, archive: str) -> dict:
  if archive:
    if not os.path.isfile(archive):
      raise DataUnavailableError(f"--config.archive={archive} does not exist.\n"
                                 f"{tfds_source.how_to_get(name, data_dir)}")
    return dict(cifar.read_cifar_archive(archive, name), max_value=255.0)
  return dict(tfds_source.read_tfds(name, data_dir), max_value=255.0)
