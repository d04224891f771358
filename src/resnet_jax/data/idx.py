"""Reader for the IDX files of MNIST and Fashion-MNIST, validated before use.

The IDX format is a big-endian header followed by raw bytes: a 4-byte magic number whose third byte
is the element type (0x08: unsigned byte) and whose fourth is the number of dimensions, then one
4-byte size per dimension, then the payload. Every check below exists because a truncated download
would otherwise become a silently short or mis-shaped array.
"""
import gzip
import os
import struct
import zlib

import numpy as np

from resnet_jax.data.errors import CorruptDataError, DataUnavailableError

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions [N, rows, cols].
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension [N].

FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}
# Debian/Ubuntu's `dataset-fashion-mnist` package installs the four official files here.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = 10


def _open(path: str):
  # The official files are gzipped; accept the gunzipped form too because many people unpack them.
  return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


def _parse_header(path: str, head: bytes, expected_magic: int) -> tuple[int, tuple[int, ...]]:
  if len(head) < 4:
    raise CorruptDataError(f"{path}: truncated IDX file ({len(head)} bytes, no header)")
  (magic,) = struct.unpack(">I", head[:4])
  if magic != expected_magic:
    raise CorruptDataError(f"{path}: IDX magic number {magic}, expected {expected_magic} "
                     f"({'images' if expected_magic == IMAGES_MAGIC else 'labels'}); "
                     "the file is corrupt or not the right one")
  ndim = magic & 0xFF
  header_len = 4 + 4 * ndim
  if len(head) < header_len:
    raise CorruptDataError(f"{path}: truncated IDX header ({len(head)} of {header_len} bytes)")
  dims = struct.unpack(f">{ndim}I", head[4:header_len])
  return header_len, tuple(int(d) for d in dims)


def read_idx(path: str, expected_magic: int) -> np.ndarray:
  """Reads a whole IDX file of unsigned bytes.

  Args:
    path: an IDX file, gzipped if its name ends in .gz.
    expected_magic: IMAGES_MAGIC or LABELS_MAGIC.
  Returns:
    uint8 array of the shape in the header, e.g. [N, 28, 28] for images, [N] for labels.
  Raises:
    ValueError: naming the file, if it is not valid gzip, has the wrong magic number, or its
      payload is not exactly as long as its header says.
  """
  try:
    with _open(path) as f:
      raw = f.read()
  except (OSError, EOFError, zlib.error) as err:
    # gzip reports a cut-short download as EOFError and a damaged one as BadGzipFile/zlib.error.
    raise CorruptDataError(f"{path}: unreadable IDX file, corrupt or truncated ({err})") from err
  header_len, dims = _parse_header(path, raw, expected_magic)
  expected = int(np.prod(dims))
  payload = len(raw) - header_len
  if payload != expected:
    raise CorruptDataError(
        f"{path}: IDX header says {dims} = {expected} bytes of data but the file "
        f"holds {payload}; the file is truncated or corrupt")
  return np.frombuffer(raw, dtype=np.uint8, offset=header_len).reshape(dims)


def find_fashion_mnist_files(directory: str) -> dict[str, str] | None:
  """Locates the four Fashion-MNIST IDX files in a directory.

  Args:
    directory: where to look; each file may be gzipped (official name) or already gunzipped.
  Returns:
    {"train_images": path, ...} when all four are there, None when none is.
  Raises:
    DataUnavailableError: when only some are there, naming the missing ones, because a partial
      download should not quietly send us to another source.
  """
  found, missing = {}, []
  for key, name in FASHION_MNIST_FILES.items():
    candidates = [os.path.join(directory, name), os.path.join(directory, name[:-len(".gz")])]
    path = next((p for p in candidates if os.path.isfile(p)), None)
    if path is None:
      missing.append(name)
    else:
      found[key] = path
  if not found:
    return None
  if missing:
    raise DataUnavailableError(f"{directory} holds only part of Fashion-MNIST: missing "
                               f"{', '.join(missing)} (the four official IDX files are "
                               f"{', '.join(FASHION_MNIST_FILES.values())})")
  return found


def read_fashion_mnist(files: dict[str, str]) -> dict[str, np.ndarray]:
  """Reads and cross-checks the four Fashion-MNIST IDX files.

  Args:
    files: as returned by `find_fashion_mnist_files`.
  Returns:
    {"train_images": [60000, 28, 28, 1] uint8, "train_labels": [60000] int32,
     "test_images": [10000, 28, 28, 1] uint8, "test_labels": [10000] int32} for the official files
    (other counts and image sizes are accepted if the files agree with each other).
  Raises:
    ValueError: naming the offending file, if any file is invalid, image and label counts differ,
      the two splits have different image sizes, or a label is not below 10.
  """
  out = {}
  for split in ("train", "test"):
    images_path, labels_path = files[f"{split}_images"], files[f"{split}_labels"]
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[0] != labels.shape[0]:
      raise CorruptDataError(
          f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
          f"{labels.shape[0]} labels")
    if labels.size and labels.max() >= FASHION_MNIST_CLASSES:
      raise CorruptDataError(f"{labels_path}: label {labels.max()} is not below "
                       f"{FASHION_MNIST_CLASSES}; the file is corrupt")
    out[f"{split}_images"] = images[..., None]
    out[f"{split}_labels"] = labels.astype(np.int32)
  if out["train_images"].shape[1:] != out["test_images"].shape[1:]:
    raise CorruptDataError(
        f"{files['train_images']} and {files['test_images']} have different image "
        f"sizes {out['train_images'].shape[1:3]} and {out['test_images'].shape[1:3]}")
  return out
