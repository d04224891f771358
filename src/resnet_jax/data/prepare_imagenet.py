"""Prepares ImageNet for the streamed input path: ArrayRecord shards of the JPEGs, dataset.json.

    python -m resnet_jax.data.prepare_imagenet --train_dir=IMAGENET/train \\
        --val_dir=IMAGENET/val --out=DIR [--train_shards=1024 --val_shards=64 --workers=N]
    python -m resnet_jax.data.prepare_imagenet --tfds_dir=TFDS_DATA_DIR --out=DIR

The first reads the usual folder layout, `train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG` (the
validation images sorted into class folders, as ILSVRC's devkit labels them). The second reads a
tfds `imagenet2012` build in ArrayRecord format (`tfds build imagenet2012
--file_format=array_record`) through `tfds.data_source`, without TensorFlow; its "validation"
split becomes "val". A run then takes `--config.data_dir=DIR`. `records.py` describes what DIR
holds; the labels are the indices of the sorted wnids.

It runs on `--workers` processes (default: every core), one shard at a time each, with a progress
bar. Every image is decoded once, as the train crops decode it (simplejpeg, strict); what is not
a plain JPEG is re-encoded as an RGB JPEG (quality 95) and counted in dataset.json's "reencoded":
"png" (ImageNet's train split holds one PNG named .JPEG), "cmyk" (it holds 22 CMYK JPEGs),
"jpeg_warnings" (a JPEG libjpeg decodes only with warnings, decoded by Pillow), or the format's
name. A file that cannot be read or decoded at all is skipped, counted and listed in
"skipped" with the reason, never silently.

A shard is written under a temporary name and renamed when complete, with a note in
DIR/.prepare/ of what went into it; dataset.json is written last. So a prepare that was killed
(or a shard deleted) is finished by running the same command again: shards already complete for
the same input files are kept, only the others are written.
"""
import collections
import dataclasses
import hashlib
import io
import json
import multiprocessing
import os
from typing import Iterator

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from resnet_jax.data import records
from resnet_jax.data.errors import CorruptDataError, DataUnavailableError

DEFAULT_TRAIN_SHARDS = 1024  # about 1,250 images and 140 MB each for ImageNet's 1.28M
DEFAULT_VAL_SHARDS = 64
JPEG_QUALITY = 95
WORK_DIR = ".prepare"
TFDS_NAME = "imagenet2012"
TFDS_SPLITS = {"train": "train", "val": "validation"}


@dataclasses.dataclass(frozen=True)
class ShardTask:
  """What goes into one shard: files (path, label) or a range of a tfds split."""
  split: str
  index: int
  num_shards: int
  files: tuple[tuple[str, int], ...] = ()
  tfds: tuple[str, str, int, int] = ()  # (data_dir, tfds split, start, stop)

  @property
  def file(self) -> str:
    return records.shard_name(self.split, self.index, self.num_shards)

  @property
  def size(self) -> int:
    return len(self.files) if self.files else self.tfds[3] - self.tfds[2]

  def key(self) -> str:
    """A digest of the input: a complete shard of another input is written again."""
    h = hashlib.sha256(repr((self.file, self.tfds)).encode())
    for path, label in self.files:
      h.update(f"{path}\0{label}\0{_file_stamp(path)}\n".encode())
    return h.hexdigest()


def check_image(data: bytes) -> tuple[bytes, str | None]:
  """The bytes to store for an image file, and why they were re-encoded (None: not).

  Returns:
    (JPEG bytes that simplejpeg decodes strictly, None or "png" / "cmyk" / "jpeg_warnings" / the
    format's name).
  Raises:
    CorruptDataError: the file is no image, or its data cannot be decoded.
  """
  is_jpeg = data[:2] == b"\xff\xd8"
  if is_jpeg:
    try:
      if simplejpeg.decode_jpeg_header(data)[2] in ("Gray", "YCbCr", "RGB"):
        simplejpeg.decode_jpeg(data, colorspace="RGB")
        return data, None
    except ValueError:
      pass  # CMYK, or libjpeg's warnings: Pillow decides below whether the data is readable
  try:
    with Image.open(io.BytesIO(data)) as image:
      kind = (("cmyk" if image.mode in ("CMYK", "YCCK") else "jpeg_warnings") if is_jpeg
              else image.format.lower())
      rgb = image.convert("RGB")
  except UnidentifiedImageError:
    raise CorruptDataError(f"not an image ({len(data)} bytes Pillow cannot identify)") from None
  except (OSError, ValueError, SyntaxError) as err:  # truncated or corrupt compressed data
    raise CorruptDataError(f"undecodable: {err}") from None
  buffer = io.BytesIO()
  rgb.save(buffer, format="JPEG", quality=JPEG_QUALITY)
  return buffer.getvalue(), kind


def list_folders(train_dir: str, val_dir: str) -> tuple[list[str], dict[str, list]]:
  """The classes (sorted wnids of train_dir) and each split's (path, label) in record order."""
  classes = _class_folders(train_dir, "--train_dir")
  found = {"train": _files(train_dir, classes, classes)}
  val_classes = _class_folders(val_dir, "--val_dir")
  unknown = sorted(set(val_classes) - set(classes))
  if unknown:
    more = " ..." if len(unknown) > 5 else ""
    raise DataUnavailableError(f"--val_dir={val_dir} has class folders that --train_dir does not "
                               f"have: {', '.join(unknown[:5])}{more}")
  found["val"] = _files(val_dir, val_classes, classes)
  return classes, found


def _class_folders(directory: str, flag: str) -> list[str]:
  if not os.path.isdir(directory):
    raise DataUnavailableError(f"{flag}={directory}: no such directory")
  classes = sorted(e.name for e in os.scandir(directory) if e.is_dir()
                   and not e.name.startswith("."))
  if not classes:
    raise DataUnavailableError(
        f"{flag}={directory} has no class folders: the layout is {flag[2:-4]}/<wnid>/*.JPEG "
        "(sort a flat validation folder into wnid folders with the devkit's labels first)")
  return classes


def _files(directory: str, folders: list[str], classes: list[str]) -> list[tuple[str, int]]:
  label_of = {wnid: i for i, wnid in enumerate(classes)}
  out = []
  for wnid in folders:
    folder = os.path.join(directory, wnid)
    names = sorted(e.name for e in os.scandir(folder) if e.is_file()
                   and not e.name.startswith("."))
    out.extend((os.path.join(folder, name), label_of[wnid]) for name in names)
  return out


def _tfds_source(data_dir: str, split: str):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return tfds.data_source(TFDS_NAME, split=split, data_dir=data_dir or None, download=False,
                            deserialize_method=tfds.decode.DeserializeMethod.RAW_BYTES)
  except Exception as err:  # pylint: disable=broad-except
    # tfds reports an unprepared data set through several unrelated types; its first line says.
    raise DataUnavailableError(
        f"--tfds_dir={data_dir}: tfds cannot open {TFDS_NAME} ({split}) as ArrayRecord "
        f"({type(err).__name__}: {records._first_line(err)}); build it with tfds build "  # pylint: disable=protected-access
        f"{TFDS_NAME} --file_format=array_record --data_dir={data_dir}") from None


def _tfds_classes(data_dir: str) -> list[str]:
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  names = list(tfds.builder(TFDS_NAME, data_dir=data_dir or None).info.features["label"].names)
  if names != sorted(names):
    raise CorruptDataError(f"tfds {TFDS_NAME}'s labels are not the sorted wnids")
  return names


def _tfds_example(element) -> tuple[bytes | np.ndarray, int]:
  """(image, label) of a tfds element: a serialized tf.train.Example (a build read as raw
  bytes), parsed with tfds' own protos, or an already decoded dict."""
  if isinstance(element, dict):
    return element["image"], int(element["label"])
  from tensorflow_datasets.proto import tf_example_pb2  # pylint: disable=g-import-not-at-top
  feature = tf_example_pb2.Example.FromString(bytes(element)).features.feature
  return feature["image"].bytes_list.value[0], int(feature["label"].int64_list.value[0])


def _inputs(task: ShardTask) -> Iterator[tuple[str, int, bytes]]:
  """(name, label, bytes or None and the reason) of each input of a shard."""
  if task.files:
    for path, label in task.files:
      try:
        with open(path, "rb") as f:
          yield path, label, f.read()
      except OSError as err:
        yield path, label, err
    return
  data_dir, split, start, stop = task.tfds
  source = _tfds_source(data_dir, split)
  for i in range(start, stop):
    image, label = _tfds_example(source[i])
    if isinstance(image, np.ndarray):  # a source that decodes: store its pixels as a JPEG
      buffer = io.BytesIO()
      Image.fromarray(image.squeeze()).convert("RGB").save(buffer, format="JPEG",
                                                            quality=JPEG_QUALITY)
      image = buffer.getvalue()
    yield f"tfds:{TFDS_NAME}/{split}[{i}]", label, image


def _prepare_shard(task: ShardTask, out: str) -> dict:
  """Writes one shard unless a complete one of the same input is there; returns its note."""
  final = os.path.join(out, task.file)
  note_path = os.path.join(out, WORK_DIR, task.file + ".json")
  key = task.key()
  note = _read_json(note_path)
  if (note and note.get("key") == key and os.path.isfile(final)
      and os.path.getsize(final) == note.get("bytes")):
    return dict(note, reused=True)
  reencoded, skipped = collections.Counter(), []

  def encoded():
    for name, label, data in _inputs(task):
      try:
        if isinstance(data, OSError):
          raise CorruptDataError(f"unreadable: {data}")
        stored, kind = check_image(data)
      except CorruptDataError as err:
        skipped.append({"path": name, "reason": str(err)})
        continue
      if kind:
        reencoded[kind] += 1
      yield records.encode_record(label, stored)

  count, size, digests = records.write_shard(
      final, encoded(), tmp_path=os.path.join(out, WORK_DIR, task.file + ".tmp"))
  note = {"key": key, "file": task.file, "count": count, "bytes": size,
          "digests": digests.hex(), "reencoded": dict(reencoded), "skipped": skipped}
  _write_json(note_path, note)
  return dict(note, reused=False)


def _run(args) -> dict:
  return _prepare_shard(*args)


def shard_tasks(split: str, num_items: int, num_shards: int, *, files=None,
                tfds=None) -> list[ShardTask]:
  """Contiguous, nearly equal shards (at least one; no more than there are items)."""
  n = max(1, min(num_shards, num_items))
  bounds = [i * num_items // n for i in range(n + 1)]
  return [ShardTask(split, i, n,
                    files=tuple(files[bounds[i]:bounds[i + 1]]) if files is not None else (),
                    tfds=(tfds[0], tfds[1], bounds[i], bounds[i + 1]) if tfds else ())
          for i in range(n)]


def prepare(train_dir: str, val_dir: str, out: str, *, train_shards: int = DEFAULT_TRAIN_SHARDS,
            val_shards: int = DEFAULT_VAL_SHARDS, workers: int = 0, progress: bool = True,
            tfds_dir: str | None = None) -> dict:
  """Prepares the folders train_dir and val_dir (or, with tfds_dir, a tfds build) in `out`.

  Args:
    train_dir, val_dir: `<wnid>/*.JPEG` folders; ignored when tfds_dir is given.
    out: the prepared directory (created; a rerun keeps its complete shards).
    train_shards, val_shards: shard counts (fewer when a split has fewer images).
    workers: processes; 0: one per core; 1: this process.
    progress: show a progress bar (stderr).
    tfds_dir: a tfds data_dir holding an ArrayRecord build of imagenet2012 ("" for tfds's
      default); None: read the folders.
  Returns:
    The dataset.json written (see records.py).
  """
  num_shards = {"train": train_shards, "val": val_shards}
  if tfds_dir is None:
    classes, found = list_folders(train_dir, val_dir)
    tasks = {s: shard_tasks(s, len(found[s]), num_shards[s], files=found[s]) for s in found}
    source = {"kind": "folders", "train_dir": os.path.abspath(train_dir),
              "val_dir": os.path.abspath(val_dir)}
  else:
    classes = _tfds_classes(tfds_dir)
    tasks = {s: shard_tasks(s, len(_tfds_source(tfds_dir, t)), num_shards[s],
                            tfds=(tfds_dir, t)) for s, t in TFDS_SPLITS.items()}
    source = {"kind": "tfds", "name": TFDS_NAME, "data_dir": tfds_dir}
  out = os.path.abspath(out)
  os.makedirs(os.path.join(out, WORK_DIR), exist_ok=True)
  info_path = os.path.join(out, records.INFO_FILE)
  if os.path.exists(info_path):
    os.remove(info_path)  # the directory is incomplete until this run writes it again
  notes = _run_tasks([t for split in tasks.values() for t in split], out, workers, progress)
  return _write_info(out, classes, tasks, notes, source)


def _run_tasks(tasks: list[ShardTask], out: str, workers: int, progress: bool) -> dict:
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top
  workers = min(workers or os.cpu_count() or 1, len(tasks))
  notes = {}
  with tqdm(total=sum(t.size for t in tasks), unit="img", disable=not progress,
            desc="prepare", smoothing=0.05) as bar:
    if workers <= 1:
      results = map(_run, [(t, out) for t in tasks])
    else:
      # spawn: the workers start clean, whatever threads this process runs
      pool = multiprocessing.get_context("spawn").Pool(workers)
      results = pool.imap_unordered(_run, [(t, out) for t in tasks])
    size = {t.file: t.size for t in tasks}
    try:
      for note in results:
        notes[note["file"]] = note
        bar.update(size[note["file"]])
    finally:
      if workers > 1:
        pool.terminate()
  return notes


def _write_info(out: str, classes: list[str], tasks: dict, notes: dict, source: dict) -> dict:
  splits, digests, reencoded, skipped = {}, [], collections.Counter(), []
  for split, split_tasks in tasks.items():
    shards = [notes[t.file] for t in split_tasks]
    splits[split] = {"count": sum(n["count"] for n in shards),
                     "shards": [{"file": n["file"], "count": n["count"], "bytes": n["bytes"]}
                                for n in shards]}
    for note in shards:
      digests.append(bytes.fromhex(note["digests"]))
      reencoded.update(note["reencoded"])
      skipped.extend(note["skipped"])
  info = {"format": records.FORMAT, "classes": classes, "num_classes": len(classes),
          "splits": splits, "fingerprint": records.fingerprint(digests),
          "reencoded": dict(sorted(reencoded.items())), "skipped": skipped, "source": source,
          "reused_shards": sum(n["reused"] for n in notes.values())}
  _write_json(os.path.join(out, records.INFO_FILE), info)
  return info


def _file_stamp(path: str) -> tuple[int, int]:
  try:
    stat = os.stat(path)
    return stat.st_size, stat.st_mtime_ns
  except OSError:
    return -1, -1


def _read_json(path: str) -> dict | None:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def _write_json(path: str, data: dict) -> None:
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=1)
  os.replace(tmp, path)


def summary_lines(info: dict, out: str) -> list[str]:
  """What the command prints when done."""
  counts = " + ".join(f"{s['count']} {name}" for name, s in info["splits"].items())
  shards = sum(len(s["shards"]) for s in info["splits"].values())
  lines = [f"prepared {counts} images of {info['num_classes']} classes in {out} ({shards} shards, "
           f"{info['reused_shards']} kept from an earlier run); fingerprint {info['fingerprint']}"]
  reencoded = ", ".join(f"{k} {v}" for k, v in info["reencoded"].items()) or "none"
  lines.append(f"re-encoded as RGB JPEG: {reencoded}")
  lines.append(f"skipped {len(info['skipped'])} unreadable files"
               + (":" if info["skipped"] else ""))
  lines += [f"  {s['path']}: {s['reason']}" for s in info["skipped"]]
  return lines


def _main(argv) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top

  from resnet_jax import cli  # pylint: disable=g-import-not-at-top
  cli.start(argv)
  f = flags.FLAGS
  if f.tfds_dir is None and not (f.train_dir and f.val_dir):
    raise DataUnavailableError("give --train_dir and --val_dir (or --tfds_dir)")
  info = prepare(f.train_dir, f.val_dir, f.out, train_shards=f.train_shards,
                 val_shards=f.val_shards, workers=f.workers, tfds_dir=f.tfds_dir)
  print("\n".join(summary_lines(info, os.path.abspath(f.out))))


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("train_dir", "", "ImageNet's train/ (<wnid>/*.JPEG).")
  flags.DEFINE_string("val_dir", "", "ImageNet's val/ sorted into <wnid>/ folders.")
  flags.DEFINE_string("tfds_dir", None, "Instead of the folders: a tfds data_dir with an "
                      "ArrayRecord build of imagenet2012 ('' for tfds's default).")
  flags.DEFINE_string("out", None, "The prepared directory to write.")
  flags.DEFINE_integer("train_shards", DEFAULT_TRAIN_SHARDS, "Shards of the train split.")
  flags.DEFINE_integer("val_shards", DEFAULT_VAL_SHARDS, "Shards of the val split.")
  flags.DEFINE_integer("workers", 0, "Processes (0: one per core).")
  flags.mark_flag_as_required("out")


if __name__ == "__main__":
  from resnet_jax import cli  # pylint: disable=g-import-not-at-top
  _define_flags()
  cli.run(_main)
