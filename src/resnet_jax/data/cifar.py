"""Reader for the official CIFAR-10/100 "python version" archives, checked against their MD5.

The archives hold Python pickles. Unpickling runs code named inside the file, so the archive is
read only after its MD5 matches the published one, and the unpickler admits only the few globals
that a pickled dict of numpy arrays needs.
"""
import dataclasses
import hashlib
import io
import pickle
import tarfile
import zlib

import numpy as np

from resnet_jax.data.errors import CorruptDataError


@dataclasses.dataclass(frozen=True)
class CifarArchive:
  """Layout of one official archive (https://www.cs.toronto.edu/~kriz/cifar.html).

  Attributes:
    filename: the official file name.
    md5: the MD5 published on the CIFAR page.
    directory: top-level folder inside the tarball.
    train_members: pickles whose concatenation is the training split, in order.
    test_members: pickles of the test split.
    label_key: key of the labels in each pickle (CIFAR-100 also has b"coarse_labels").
    num_classes: labels lie in [0, num_classes).
  """
  filename: str
  md5: str
  directory: str
  train_members: tuple[str, ...]
  test_members: tuple[str, ...]
  label_key: bytes
  num_classes: int


ARCHIVES = {
    "cifar10": CifarArchive(
        filename="cifar-10-python.tar.gz", md5="c58f30108f718f92721af3b95e74349a",
        directory="cifar-10-batches-py",
        train_members=tuple(f"data_batch_{i}" for i in range(1, 6)), test_members=("test_batch",),
        label_key=b"labels", num_classes=10),
    "cifar100": CifarArchive(
        filename="cifar-100-python.tar.gz", md5="eb9058c3a382ffc7106e4002c42a8d85",
        directory="cifar-100-python", train_members=("train",), test_members=("test",),
        label_key=b"fine_labels", num_classes=100),
}

_IMAGE_BYTES = 3 * 32 * 32


def file_md5(path: str) -> str:
  """Hex MD5 of a file, read in 1 MiB chunks so that a 160 MB archive is never held twice."""
  digest = hashlib.md5()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


class _ArrayUnpickler(pickle.Unpickler):
  """Admits only what a dict of numpy arrays, lists and byte strings needs."""

  _ALLOWED = {
      # numpy < 2 wrote numpy.core, numpy >= 2 writes numpy._core; the official files have the
      # former.
      ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
      ("numpy", "ndarray"), ("numpy", "dtype"),
      # Protocol-2 pickles written by Python 3 encode bytes objects through _codecs.encode.
      ("_codecs", "encode"),
  }

  def find_class(self, module, name):
    if (module, name) not in self._ALLOWED:
      raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
    return super().find_class(module, name)


def _parse_batch(archive_path: str, member: str, blob: bytes,
                 spec: CifarArchive) -> tuple[np.ndarray, np.ndarray]:
  where = f"{archive_path}:{member}"
  try:
    # encoding="bytes" because the official pickles come from Python 2, whose str keys are bytes.
    batch = _ArrayUnpickler(io.BytesIO(blob), encoding="bytes").load()
  except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
    raise CorruptDataError(f"{where}: not a valid CIFAR batch pickle ({err})") from err
  if not isinstance(batch, dict) or b"data" not in batch or spec.label_key not in batch:
    keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
    raise CorruptDataError(
        f"{where}: expected a dict with b'data' and {spec.label_key!r}, got {keys}")
  data = np.asarray(batch[b"data"])
  labels = np.asarray(batch[spec.label_key])
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _IMAGE_BYTES:
    raise CorruptDataError(f"{where}: b'data' is {data.dtype}{list(data.shape)}, "
                     f"expected uint8[n, {_IMAGE_BYTES}]")
  if labels.shape != (data.shape[0],):
    raise CorruptDataError(f"{where}: {labels.shape[0] if labels.ndim else 'no'} labels for "
                     f"{data.shape[0]} images")
  if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
    raise CorruptDataError(f"{where}: labels outside [0, {spec.num_classes})")
  # Each row is the red plane, then green, then blue, each 32x32 row-major: [n, C, H, W] -> NHWC.
  images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels.astype(np.int32)


def read_cifar_archive(path: str, name: str, *, expected_md5: str | None = None
                       ) -> dict[str, np.ndarray]:
  """Reads an official CIFAR python archive after verifying its MD5.

  Args:
    path: the .tar.gz as downloaded from the CIFAR page.
    name: "cifar10" or "cifar100".
    expected_md5: the MD5 the file must have; None means the published one. Tests pass the MD5 of
      the small archives they build; there is deliberately no way to skip the check.
  Returns:
    {"train_images": [50000, 32, 32, 3] uint8, "train_labels": [50000] int32,
     "test_images": [10000, 32, 32, 3] uint8, "test_labels": [10000] int32} for the official files.
  Raises:
    FileNotFoundError: if `path` does not exist.
    ValueError: if the MD5 differs (truncated or corrupt download; the message gives both
      digests), or the archive cannot be decompressed, lacks a member, or a member is malformed.
  """
  if name not in ARCHIVES:
    raise ValueError(f"no CIFAR archive layout for {name!r}; choose one of {tuple(ARCHIVES)}")
  spec = ARCHIVES[name]
  expected_md5 = spec.md5 if expected_md5 is None else expected_md5
  actual_md5 = file_md5(path)
  if actual_md5 != expected_md5:
    raise CorruptDataError(
        f"{path} is truncated or corrupt: md5 {actual_md5}, expected {expected_md5} "
        f"(the official {spec.filename}); download it again")

  wanted = {f"{spec.directory}/{m}" for m in spec.train_members + spec.test_members}
  blobs = {}
  try:
    with tarfile.open(path, "r:gz") as tar:
      # Walk the members in stream order: random access into a gzip stream re-decompresses it.
      for member in tar:
        if member.name in wanted and member.isfile():
          blobs[member.name] = tar.extractfile(member).read()
  except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
    raise CorruptDataError(
        f"{path}: cannot read the archive, truncated or corrupt ({err})") from err
  missing = sorted(wanted - set(blobs))
  if missing:
    raise CorruptDataError(f"{path}: missing {', '.join(missing)}; is this {spec.filename}?")

  out = {}
  for split, members in (("train", spec.train_members), ("test", spec.test_members)):
    parts = [_parse_batch(path, m, blobs.pop(f"{spec.directory}/{m}"), spec) for m in members]
    out[f"{split}_images"] = np.concatenate([p[0] for p in parts])
    out[f"{split}_labels"] = np.concatenate([p[1] for p in parts])
  return out
