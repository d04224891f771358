"""The prepared ImageNet format, `prepare_imagenet` and the offline fixtures (data floor).

One tiny fixture (3 classes x 6 train + 2 val real photos, with its CMYK JPEG and its PNG named
.JPEG) is written and prepared once per module; tests that damage a prepared directory copy it.
"""
import glob
import gzip
import io
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from resnet_jax.data import fixtures, idx, prepare_imagenet, records
from resnet_jax.data.errors import CorruptDataError, DataUnavailableError

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
CLASSES, TRAIN, VAL = 3, 6, 2


def _prepare(tree, out, **kwargs):
  kwargs = {"train_shards": 4, "val_shards": 2, "workers": 1, "progress": False, **kwargs}
  return prepare_imagenet.prepare(os.path.join(tree, "train"), os.path.join(tree, "val"), out,
                                  **kwargs)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
  """The fixture tree, plus one unreadable file (a truncated JPEG) in train."""
  out = fixtures.write_imagenet_fixture(str(tmp_path_factory.mktemp("fixture") / "imagenet"),
                                        num_classes=CLASSES, train_per_class=TRAIN,
                                        val_per_class=VAL)
  good = open(os.path.join(out, "train", "n00000002", "n00000002_3.JPEG"), "rb").read()
  with open(os.path.join(out, "train", "n00000002", "n00000002_9_truncated.JPEG"), "wb") as f:
    f.write(good[:len(good) // 2])
  return out


@pytest.fixture(scope="module")
def prepared(tree, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("prepared") / "imagenet")
  return _prepare(tree, out), out


def _copy(prepared, tmp_path):
  return shutil.copytree(prepared[1], tmp_path / "copy")


def test_record_round_trip():
  jpeg = b"\xff\xd8 some bytes \x00\xff"
  assert records.decode_record(records.encode_record(7, jpeg)) == (7, jpeg)
  assert records.decode_record(records.encode_record(999, b"x")) == (999, b"x")
  with pytest.raises(CorruptDataError, match="holds no image"):
    records.decode_record(b"\x01\x00\x00")


def test_fingerprint_is_over_records_not_shards(tmp_path):
  raws = [records.encode_record(i % 3, bytes([i]) * (50 + i)) for i in range(10)]
  one = records.write_shard(str(tmp_path / "a.array_record"), raws)
  parts = [records.write_shard(str(tmp_path / f"b{i}.array_record"), raws[i * 4:(i + 1) * 4])
           for i in range(3)]
  assert one[0] == sum(p[0] for p in parts) == 10
  same = records.fingerprint([one[2]])
  assert records.fingerprint([p[2] for p in parts]) == same
  assert records.read_shard(str(tmp_path / "a.array_record")) == raws
  relabelled = raws[:3] + [records.encode_record(2, raws[3][4:])] + raws[4:]
  reordered = raws[1:] + raws[:1]
  for other in (relabelled, reordered, raws[:-1]):
    digest = records.write_shard(str(tmp_path / "c.array_record"), other)[2]
    assert records.fingerprint([digest]) != same
  assert not glob.glob(str(tmp_path / "*.tmp"))


def test_prepare_counts_reencodes_and_skips(prepared, tree):
  info, out = prepared
  assert info["classes"] == ["n00000001", "n00000002", "n00000003"]
  assert info["num_classes"] == CLASSES
  assert info["splits"]["train"]["count"] == CLASSES * TRAIN
  assert info["splits"]["val"]["count"] == CLASSES * VAL
  assert [len(s["shards"]) for s in info["splits"].values()] == [4, 2]
  assert info["reencoded"] == {"cmyk": 1, "png": 1}
  assert len(info["skipped"]) == 1
  assert info["skipped"][0]["path"].endswith("n00000002_9_truncated.JPEG")
  assert "Premature end" in info["skipped"][0]["reason"] or "truncated" in \
      info["skipped"][0]["reason"]
  assert info["source"]["kind"] == "folders"
  assert json.load(open(os.path.join(out, "dataset.json"))) == info

  data = records.open_prepared(out)
  assert data.splits == ("train", "val") and data.classes == tuple(info["classes"])
  assert data.fingerprint == info["fingerprint"] and data.size("val") == CLASSES * VAL
  assert records.summary(data) == {"dataset": "imagenet", "directory": out, "classes": CLASSES,
                                   "train": CLASSES * TRAIN, "val": CLASSES * VAL,
                                   "fingerprint": info["fingerprint"]}
  for split, per_class in (("train", TRAIN), ("val", VAL)):
    source = data.source(split)
    files = sorted(glob.glob(os.path.join(tree, split, "*", "*.JPEG")))
    files = [f for f in files if "truncated" not in f]  # record order: class, then file name
    assert len(source) == len(files) == CLASSES * per_class
    for i, path in enumerate(files):
      label, jpeg = source[i]
      assert label == info["classes"].index(os.path.basename(os.path.dirname(path)))
      original = open(path, "rb").read()
      with Image.open(io.BytesIO(original)) as image:
        plain = image.format == "JPEG" and image.mode == "RGB"
      assert (jpeg == original) == plain  # JPEGs as they were; the CMYK and the PNG re-encoded
      assert simplejpeg.decode_jpeg(jpeg).shape[2] == 3  # strict decode, RGB
    assert source.__getitems__([3, 0, 3]) == [source[3], source[0], source[3]]


def test_record_source_pickles_small_and_reads_anywhere(prepared):
  source = records.open_prepared(prepared[1]).source("train")
  first = source[0]  # opens a reader, which must not travel
  blob = pickle.dumps(source)
  assert len(blob) < 2_000
  copy = pickle.loads(blob)
  assert len(copy) == len(source) and copy[0] == first
  assert copy[len(copy) - 1] == source[len(source) - 1]
  with pytest.raises(IndexError):
    source[len(source)]


def test_same_images_other_sharding_same_fingerprint(prepared, tree, tmp_path):
  info = _prepare(tree, str(tmp_path / "other"), train_shards=7, val_shards=1)
  assert [len(s["shards"]) for s in info["splits"].values()] == [7, 1]
  assert info["fingerprint"] == prepared[0]["fingerprint"]
  # Other images: another label of one file changes it.
  moved = shutil.copytree(tree, tmp_path / "moved")
  os.rename(moved / "train" / "n00000001" / "n00000001_5.JPEG",
            moved / "train" / "n00000002" / "n00000001_5.JPEG")
  assert _prepare(str(moved), str(tmp_path / "moved_out"))["fingerprint"] != info["fingerprint"]


def test_rerun_rewrites_only_the_missing_shard(prepared, tree, tmp_path):
  out = _copy(prepared, tmp_path)
  shards = sorted(glob.glob(str(out / "*.array_record")))
  stamps = {p: os.stat(p).st_mtime_ns for p in shards}
  os.remove(shards[1])
  with pytest.raises(CorruptDataError, match="missing shard"):
    records.open_prepared(str(out))
  info = _prepare(tree, str(out))
  assert info["reused_shards"] == len(shards) - 1
  assert info["fingerprint"] == prepared[0]["fingerprint"]
  assert info["reencoded"] == prepared[0]["reencoded"]  # counted in the kept shards' notes too
  assert info["skipped"] == prepared[0]["skipped"]
  for path in shards:
    assert (os.stat(path).st_mtime_ns == stamps[path]) == (path != shards[1])


def test_killed_prepare_leaves_no_half_shard(prepared, tree, tmp_path):
  out = str(tmp_path / "killed")
  # SIGKILL in the middle of the second train shard: no finally, no clean-up, as a real kill.
  script = f"""
import os, signal
from resnet_jax.data import prepare_imagenet
seen, check = [0], prepare_imagenet.check_image
def dying(data):
  seen[0] += 1
  if seen[0] == 7:
    os.kill(os.getpid(), signal.SIGKILL)
  return check(data)
prepare_imagenet.check_image = dying
prepare_imagenet.prepare({tree + '/train'!r}, {tree + '/val'!r}, {out!r}, train_shards=4,
                         val_shards=2, workers=1, progress=False)
"""
  result = subprocess.run([sys.executable, "-c", script], env=dict(os.environ, PYTHONPATH=SRC),
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == -9, result.stderr
  assert sorted(os.listdir(out)) == [".prepare", "train-00000-of-00004.array_record"]
  with pytest.raises(DataUnavailableError, match="did not finish"):
    records.open_prepared(out)
  info = _prepare(tree, out)
  assert info["reused_shards"] == 1 and info["fingerprint"] == prepared[0]["fingerprint"]


def test_prepare_with_two_workers(prepared, tree, tmp_path):
  info = _prepare(tree, str(tmp_path / "two"), workers=2)
  assert info["fingerprint"] == prepared[0]["fingerprint"]
  assert info["splits"] == prepared[0]["splits"]


def _example(jpeg: bytes, label: int) -> bytes:
  from tensorflow_datasets.proto import tf_example_pb2
  example = tf_example_pb2.Example()
  example.features.feature["image"].bytes_list.value.append(jpeg)
  example.features.feature["label"].int64_list.value.append(label)
  example.features.feature["file_name"].bytes_list.value.append(b"x.JPEG")
  return example.SerializeToString()


def test_tfds_imagenet2012_source(prepared, tree, tmp_path):
  import tensorflow_datasets as tfds
  files = {s: sorted(p for p in glob.glob(os.path.join(tree, s, "*", "*.JPEG"))
                    if "truncated" not in p) for s in ("train", "val")}
  elements = {
      tfds_split: [_example(open(p, "rb").read(), 5 * i) for i, p in enumerate(files[split])]
      for split, tfds_split in prepare_imagenet.TFDS_SPLITS.items()}
  asked = []

  def as_data_source(builder, split, **kwargs):
    # What a build read as raw bytes gives: serialized tf.train.Examples of the JPEG files.
    asked.append((split, kwargs.get("deserialize_method")))
    return elements[split]

  with tfds.testing.mock_data(as_data_source_fn=as_data_source):
    info = prepare_imagenet.prepare("", "", str(tmp_path / "tfds"), train_shards=3, val_shards=1,
                                    workers=1, progress=False, tfds_dir=str(tmp_path))
  assert {s for s, _ in asked} == {"train", "validation"}
  assert all(m == tfds.decode.DeserializeMethod.RAW_BYTES for _, m in asked)
  assert info["num_classes"] == 1000 and info["classes"][0] == "n01440764"
  assert info["source"] == {"kind": "tfds", "name": "imagenet2012", "data_dir": str(tmp_path)}
  assert info["reencoded"] == {"cmyk": 1, "png": 1} and info["skipped"] == []
  data = records.open_prepared(str(tmp_path / "tfds"))
  for split in ("train", "val"):
    source = data.source(split)
    assert [source[i][0] for i in range(len(source))] == [5 * i for i in range(len(files[split]))]
  assert data.source("val")[1][1] == open(files["val"][1], "rb").read()


def test_missing_or_damaged_prepared_directory_is_one_line(prepared, tmp_path):
  with pytest.raises(DataUnavailableError) as err:
    records.open_prepared(str(tmp_path / "nowhere"))
  assert "\n" not in str(err.value) and "python -m resnet_jax.data.prepare_imagenet" in \
      str(err.value)
  out = _copy(prepared, tmp_path)
  shard = sorted(glob.glob(str(out / "train-*.array_record")))[2]
  data = open(shard, "rb").read()
  with open(shard, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(CorruptDataError) as err:
    records.open_prepared(str(out))
  message = str(err.value)
  assert "\n" not in message and shard in message and "truncated" in message
  assert f"--train_dir={prepared[0]['source']['train_dir']}" in message
  # A flipped byte inside a record: the size holds, the reader's hash does not.
  with open(shard, "wb") as f:
    f.write(data[:len(data) // 3] + bytes([data[len(data) // 3] ^ 0xFF])
            + data[len(data) // 3 + 1:])
  source = records.open_prepared(str(out)).source("train")
  with pytest.raises(CorruptDataError, match=os.path.basename(shard)):
    [source[i] for i in range(len(source))]  # pylint: disable=expression-not-assigned
  os.remove(out / "dataset.json")
  with pytest.raises(DataUnavailableError, match="did not finish"):
    records.open_prepared(str(out))
  with pytest.raises(DataUnavailableError, match="no 'test' split"):
    records.open_prepared(prepared[1]).size("test")


def test_commands_print_errors_as_one_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "resnet_jax.data.prepare_imagenet", f"--train_dir={tmp_path}/no",
       f"--val_dir={tmp_path}/no", f"--out={tmp_path}/out"],
      env=dict(os.environ, PYTHONPATH=SRC), capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"error: --train_dir={tmp_path}/no: no such directory"]
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("keep")
  result = subprocess.run(
      [sys.executable, "-m", "resnet_jax.data.fixtures", "--kind=imagenet",
       f"--out={tmp_path}/mine"],
      env=dict(os.environ, PYTHONPATH=SRC), capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines() == [
      f"error: {tmp_path}/mine exists and holds no fixture.json: not writing the imagenet "
      "fixture over it (give an empty or new directory)"]


def test_flat_val_folder_is_refused(tree, tmp_path):
  flat = tmp_path / "val"
  flat.mkdir()
  (flat / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"x")
  with pytest.raises(DataUnavailableError, match="no class folders"):
    prepare_imagenet.prepare(os.path.join(tree, "train"), str(flat), str(tmp_path / "o"),
                             workers=1, progress=False)


def test_imagenet_fixture_content(tree, tmp_path):
  kinds = {}
  for path in glob.glob(os.path.join(tree, "*", "*", "*.JPEG")):
    if "truncated" in path:
      continue
    with Image.open(path) as image:
      kinds.setdefault((image.format, image.mode), []).append(path)
      assert image.size in fixtures.IMAGE_SIZES
  assert {k: len(v) for k, v in kinds.items()} == {
      ("JPEG", "RGB"): CLASSES * (TRAIN + VAL) - 2, ("JPEG", "CMYK"): 1, ("PNG", "RGB"): 1}
  assert kinds[("JPEG", "CMYK")][0].endswith("train/n00000001/n00000001_0.JPEG")
  assert kinds[("PNG", "RGB")][0].endswith("train/n00000002/n00000002_0.JPEG")
  assert open(os.path.join(tree, "synset_words.txt")).read().splitlines() == [
      "n00000001 china", "n00000002 flower", "n00000003 rocket"]
  # Deterministic in the seed; a rerun replaces the earlier fixture whole.
  small = dict(num_classes=2, train_per_class=2, val_per_class=1)
  a = fixtures.write_imagenet_fixture(str(tmp_path / "a"), **small)
  b = fixtures.write_imagenet_fixture(str(tmp_path / "b"), **small)
  names = sorted(os.path.relpath(p, a) for p in glob.glob(f"{a}/*/*/*"))
  assert names == sorted(os.path.relpath(p, b) for p in glob.glob(f"{b}/*/*/*"))
  for name in names:
    assert open(os.path.join(a, name), "rb").read() == open(os.path.join(b, name), "rb").read()
  c = fixtures.write_imagenet_fixture(str(tmp_path / "b"), **small, seed=1)
  assert c == b and json.load(open(os.path.join(c, "fixture.json")))["seed"] == 1
  assert any(open(os.path.join(a, n), "rb").read() != open(os.path.join(c, n), "rb").read()
             for n in names)
  (tmp_path / "mine").mkdir()
  (tmp_path / "mine" / "notes.txt").write_text("keep")
  with pytest.raises(fixtures.ConfigError, match="not writing"):
    fixtures.write_imagenet_fixture(str(tmp_path / "mine"), **small)


def _write_idx(path, array):
  with gzip.open(path, "wb") as f:
    f.write(struct.pack(">I", 0x800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
            + array.tobytes())


def test_fashion_mnist_jpeg(tmp_path):
  rng = np.random.default_rng(0)
  raw = tmp_path / "idx"
  raw.mkdir()
  arrays = {"train_images": rng.integers(0, 256, (12, 28, 28), np.uint8),
            "train_labels": np.arange(12, dtype=np.uint8) % 10,
            "test_images": rng.integers(0, 256, (5, 28, 28), np.uint8),
            "test_labels": np.array([9, 0, 3, 3, 1], np.uint8)}
  for key, name in idx.FASHION_MNIST_FILES.items():
    _write_idx(raw / name, arrays[key])
  out = fixtures.write_fashion_mnist_jpeg(str(tmp_path / "fm"), data_dir=str(raw), limit=10)
  for split, official in (("train", "train"), ("val", "test")):
    assert sorted(os.listdir(os.path.join(out, split))) == [f"n{k}" for k in range(10)]
    paths = sorted(glob.glob(os.path.join(out, split, "*", "*.JPEG")),
                   key=lambda p: int(os.path.basename(p)[:-5]))
    assert len(paths) == min(10, len(arrays[f"{official}_labels"]))
    for i, path in enumerate(paths):
      assert os.path.basename(path) == f"{i:05d}.JPEG"
      assert path.split(os.sep)[-2] == f"n{arrays[f'{official}_labels'][i]}"
      with Image.open(path) as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (28, 28))
        pixels = np.asarray(image).astype(int)
      # Random noise is JPEG's worst case; quality 95 still keeps it close.
      assert np.abs(pixels.mean(-1) - arrays[f"{official}_images"][i]).mean() < 12
  with pytest.raises(DataUnavailableError, match="apt-get install dataset-fashion-mnist"):
    fixtures.write_fashion_mnist_jpeg(str(tmp_path / "none"), data_dir=str(tmp_path / "empty"))


@pytest.mark.skipif(not os.path.isdir(idx.DEBIAN_FASHION_MNIST_DIR),
                    reason="apt-get install dataset-fashion-mnist")
def test_fashion_mnist_jpeg_from_debian_files(tmp_path):
  out = fixtures.write_fashion_mnist_jpeg(str(tmp_path / "fm"), limit=30)
  info = prepare_imagenet.prepare(f"{out}/train", f"{out}/val", str(tmp_path / "prepared"),
                                  train_shards=2, val_shards=1, workers=1, progress=False)
  assert info["classes"] == [f"n{k}" for k in range(10)]
  assert (info["splits"]["train"]["count"], info["splits"]["val"]["count"]) == (30, 30)
  assert info["reencoded"] == {} and info["skipped"] == []
