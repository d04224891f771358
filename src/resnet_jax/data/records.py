"""The prepared ImageNet format: ArrayRecord shards of the original JPEG bytes, and dataset.json.

`python -m resnet_jax.data.prepare_imagenet` writes it (see there); a run reads it with
`open_prepared(directory)`. A prepared directory holds

    {out}/train-00000-of-01024.array_record ... (one record per image, in the order below)
    {out}/val-00000-of-00064.array_record ...
    {out}/dataset.json                          (written last: its presence means complete)
    {out}/.prepare/                             (per-shard notes that let a rerun skip shards)

Records: `encode_record(label, jpeg)` = the label as a little-endian uint32, then the JPEG bytes
as stored (the original file, or its RGB re-encoding when it was a PNG or CMYK). Shards are
written with `ArrayRecordWriter(path, "group_size:1,uncompressed")`: one record per chunk for
random access, and no zstd over JPEG bytes that do not compress (it made random reads 1.7x
slower). Images are in sorted class order, then sorted file name order within a class.

dataset.json: {"format": 1, "classes": [wnids, sorted: the label is the index], "num_classes",
"splits": {"train": {"count", "shards": [{"file", "count", "bytes"}, ...]}, "val": {...}},
"fingerprint", "reencoded": {"png": n, "cmyk": n, ...}, "skipped": [{"path", "reason"}],
"source": {"kind": "folders", "train_dir", "val_dir"} or {"kind": "tfds", ...}}. The fingerprint
is the sha256 of the concatenated sha256 digests of every record (label and bytes), split by
split in order: the same images in the same order give the same fingerprint, however sharded.
"""
import bisect
import dataclasses
import hashlib
import itertools
import json
import os
import struct
from typing import Iterable

from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

from resnet_jax.data.errors import CorruptDataError, DataUnavailableError

FORMAT = 1
INFO_FILE = "dataset.json"
SPLITS = ("train", "val")
WRITER_OPTIONS = "group_size:1,uncompressed"
# No read-ahead: the stream reads records in a shuffled order, one at a time.
READER_OPTIONS = "readahead_buffer_size:0"
PREPARE_COMMAND = ("python -m resnet_jax.data.prepare_imagenet --train_dir={train_dir} "
                   "--val_dir={val_dir} --out={out}")
_LABEL = struct.Struct("<I")


def encode_record(label: int, image: bytes) -> bytes:
  """One record: the label (uint32, little-endian) then the image bytes."""
  return _LABEL.pack(label) + image


def decode_record(raw: bytes) -> tuple[int, bytes]:
  """(label, image bytes) of a record written by `encode_record`."""
  if len(raw) <= _LABEL.size:
    raise CorruptDataError(f"a record of {len(raw)} bytes holds no image")
  return _LABEL.unpack_from(raw)[0], bytes(raw[_LABEL.size:])


def record_digest(raw: bytes) -> bytes:
  return hashlib.sha256(raw).digest()


def fingerprint(digests: Iterable[bytes]) -> str:
  """The fingerprint of a prepared data set from its records' digests, in order."""
  h = hashlib.sha256()
  for digest in digests:
    h.update(digest)
  return h.hexdigest()


def shard_name(split: str, index: int, num_shards: int) -> str:
  return f"{split}-{index:05d}-of-{num_shards:05d}.array_record"


def write_shard(path: str, records: Iterable[bytes],
                tmp_path: str = "") -> tuple[int, int, bytes]:
  """Writes `records` to a temporary file (`tmp_path`, by default `path` + ".tmp") and renames it
  to `path`, so that a killed writer leaves no file under the final name.

  Returns:
    (count, bytes of the file, the records' digests concatenated).
  """
  tmp = tmp_path or path + ".tmp"
  writer = ArrayRecordWriter(tmp, WRITER_OPTIONS)
  count, digests = 0, []
  try:
    for raw in records:
      writer.write(raw)
      digests.append(record_digest(raw))
      count += 1
  finally:
    writer.close()
  os.replace(tmp, path)
  return count, os.path.getsize(path), b"".join(digests)


def read_shard(path: str) -> list[bytes]:
  """Every record of a shard, in order."""
  reader = ArrayRecordReader(path)
  try:
    return list(reader.read_all())
  except RuntimeError as err:  # riegeli: a chunk's hash does not match
    raise CorruptDataError(f"{path}: corrupt shard ({_first_line(err)})") from None
  finally:
    reader.close()


class RecordSource:
  """Random access to one split's records: `len(source)`, `source[i] -> (label, jpeg)`.

  Picklable and cheap to pickle (paths and counts): the ArrayRecord readers open lazily in the
  process that reads, so grain's worker processes each open their own.
  """

  def __init__(self, paths: Iterable[str], counts: Iterable[int]):
    self.paths, self.counts = tuple(paths), tuple(int(c) for c in counts)
    self._ends = list(itertools.accumulate(self.counts))
    self._readers, self._pid = {}, os.getpid()

  def __getstate__(self):
    return {"paths": self.paths, "counts": self.counts}

  def __setstate__(self, state):
    self.__init__(state["paths"], state["counts"])

  def __len__(self) -> int:
    return self._ends[-1] if self._ends else 0

  def __repr__(self) -> str:
    return f"RecordSource({len(self)} records in {len(self.paths)} shards)"

  def __getitem__(self, index) -> tuple[int, bytes]:
    index = int(index)
    if not 0 <= index < len(self):
      raise IndexError(f"record {index} of {len(self)}")
    shard = bisect.bisect_right(self._ends, index)
    start = self._ends[shard] - self.counts[shard]
    return self._read(shard, [index - start])[0]

  def __getitems__(self, indices) -> list[tuple[int, bytes]]:
    """Several records, read shard by shard."""
    by_shard: dict[int, list[tuple[int, int]]] = {}
    for position, index in enumerate(indices):
      index = int(index)
      if not 0 <= index < len(self):
        raise IndexError(f"record {index} of {len(self)}")
      shard = bisect.bisect_right(self._ends, index)
      by_shard.setdefault(shard, []).append((position, index - self._ends[shard]
                                             + self.counts[shard]))
    out = [None] * len(indices)
    for shard, wanted in by_shard.items():
      for (position, _), record in zip(wanted, self._read(shard, [i for _, i in wanted])):
        out[position] = record
    return out

  def _read(self, shard: int, offsets: list[int]) -> list[tuple[int, bytes]]:
    path = self.paths[shard]
    try:
      raws = self._reader(shard).read(offsets)
    except RuntimeError as err:
      raise CorruptDataError(f"{path}: corrupt shard ({_first_line(err)})") from None
    try:
      return [decode_record(raw) for raw in raws]
    except CorruptDataError as err:
      raise CorruptDataError(f"{path}: {err}") from None

  def _reader(self, shard: int) -> ArrayRecordReader:
    if self._pid != os.getpid():  # a forked copy: the parent's readers are not ours to use
      self._readers, self._pid = {}, os.getpid()
    reader = self._readers.get(shard)
    if reader is None:
      path = self.paths[shard]
      try:
        reader = ArrayRecordReader(path, READER_OPTIONS)
      except (RuntimeError, OSError) as err:
        raise CorruptDataError(f"{path}: cannot open the shard ({_first_line(err)})") from None
      if reader.num_records() != self.counts[shard]:
        raise CorruptDataError(f"{path}: {reader.num_records()} records, dataset.json says "
                               f"{self.counts[shard]} (a truncated or replaced shard)")
      self._readers[shard] = reader
    return reader


@dataclasses.dataclass(frozen=True)
class Prepared:
  """A prepared directory, checked: every shard dataset.json lists is there at its size."""
  directory: str
  info: dict

  @property
  def classes(self) -> tuple[str, ...]:
    return tuple(self.info["classes"])

  @property
  def num_classes(self) -> int:
    return self.info["num_classes"]

  @property
  def fingerprint(self) -> str:
    return self.info["fingerprint"]

  @property
  def splits(self) -> tuple[str, ...]:
    return tuple(self.info["splits"])

  def size(self, split: str) -> int:
    return self._split(split)["count"]

  def source(self, split: str) -> RecordSource:
    shards = self._split(split)["shards"]
    return RecordSource([os.path.join(self.directory, s["file"]) for s in shards],
                        [s["count"] for s in shards])

  def _split(self, split: str) -> dict:
    if split not in self.info["splits"]:
      raise DataUnavailableError(f"{self.directory} has no {split!r} split (it has "
                                 f"{', '.join(self.splits)})")
    return self.info["splits"][split]


def open_prepared(directory: str) -> Prepared:
  """Reads and checks a prepared directory.

  Raises:
    DataUnavailableError: no directory, or no dataset.json in it (never prepared, or the prepare
      did not finish); the message gives the command.
    CorruptDataError: dataset.json unreadable or of another format, or a shard it lists missing
      or of another size (truncated).
  """
  directory = os.path.abspath(os.path.expanduser(directory))
  command = prepare_command(directory)
  if not os.path.isdir(directory):
    raise DataUnavailableError(f"no prepared ImageNet at {directory} (no such directory); "
                               f"prepare it with: {command}")
  info_path = os.path.join(directory, INFO_FILE)
  if not os.path.isfile(info_path):
    raise DataUnavailableError(f"{directory} holds no {INFO_FILE}: it was never prepared, or "
                               f"the prepare did not finish; run (again): {command}")
  try:
    with open(info_path) as f:
      info = json.load(f)
    version = info.get("format")
  except (OSError, ValueError, AttributeError) as err:
    raise CorruptDataError(f"{info_path}: unreadable ({_first_line(err)}); run the prepare "
                           f"command again: {command}") from None
  command = prepare_command(directory, info.get("source"))
  if version != FORMAT:
    raise CorruptDataError(f"{info_path}: format {version!r}, this version reads format "
                           f"{FORMAT}; prepare the data again: {command}")
  for split in info["splits"].values():
    for shard in split["shards"]:
      path = os.path.join(directory, shard["file"])
      if not os.path.isfile(path):
        raise CorruptDataError(f"{path}: missing shard of {directory}; rerun the prepare "
                               f"command to rewrite it: {command}")
      size = os.path.getsize(path)
      if size != shard["bytes"]:
        raise CorruptDataError(f"{path}: {size} bytes, {INFO_FILE} says {shard['bytes']} (a "
                               f"truncated or replaced shard); rerun the prepare command to "
                               f"rewrite it: {command}")
  return Prepared(directory, info)


def prepare_command(out: str, source: dict | None = None) -> str:
  """The command that prepares `out` (again), from the source dataset.json records if any."""
  source = source if isinstance(source, dict) else {}
  if source.get("kind") == "tfds":
    return (f"python -m resnet_jax.data.prepare_imagenet --tfds_dir={source.get('data_dir')} "
            f"--out={out}")
  return PREPARE_COMMAND.format(train_dir=source.get("train_dir", "IMAGENET/train"),
                                val_dir=source.get("val_dir", "IMAGENET/val"), out=out)


def summary(prepared: Prepared) -> dict:
  """What a run records of its data (data.json)."""
  return {"dataset": "imagenet", "directory": prepared.directory, "classes": prepared.num_classes,
          **{split: prepared.size(split) for split in prepared.splits},
          "fingerprint": prepared.fingerprint}


def _first_line(err: BaseException) -> str:
  return (str(err).strip().splitlines() or [type(err).__name__])[0]
