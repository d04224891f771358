"""Data loading: every source, its validation, splits and normalisation."""
import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import socket
import struct
import tarfile
import time

import jax
import numpy as np
import pytest
import tolerances

from resnet_jax import data
from resnet_jax.data import DataUnavailableError, cifar, idx, load_dataset, transforms

# ----------------------------------------------------------------------------- helpers

def write_idx(path, array: np.ndarray, magic: int | None = None, gz: bool = True) -> None:
  """Writes uint8 `array` as an IDX file: big-endian magic, one size per dim, raw bytes."""
  array = np.asarray(array, np.uint8)
  magic = (0x0800 | array.ndim) if magic is None else magic
  blob = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
  with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
    f.write(blob)


def make_fashion_dir(directory, n_train=40, n_test=20, gz=True):
  """A miniature Fashion-MNIST in the official file layout; pixel values encode the index."""
  rng = np.random.default_rng(1)
  arrays = {}
  for split, n in (("train", n_train), ("test", n_test)):
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    arrays[split] = (images, labels)
    for kind, array in (("images", images), ("labels", labels)):
      name = idx.FASHION_MNIST_FILES[f"{split}_{kind}"]  # official names end in .gz
      write_idx(os.path.join(directory, name if gz else name.removesuffix(".gz")), array, gz=gz)
  return arrays


def _batch_pickle(images: np.ndarray, labels: np.ndarray, label_keys: dict) -> bytes:
  """One batch in the official pickle format: b"data" uint8 [n, 3072] planes R, G, B (CHW)."""
  batch = {b"batch_label": b"test batch", b"data": images.transpose(0, 3, 1, 2).reshape(-1, 3072),
           b"filenames": [b"x.png"] * len(labels)}
  batch.update({k: [int(v) for v in vals] for k, vals in label_keys.items()})
  # Protocol 2 as the official (Python 2) files; they name numpy.core, which numpy 2 calls _core.
  blob = pickle.dumps(batch, protocol=2)
  return blob.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def make_cifar_archive(path, name: str, per_batch: int = 6, n_test: int = 8) -> dict:
  """A miniature CIFAR archive with the official member names and pickle layout."""
  spec = cifar.ARCHIVES[name]
  rng = np.random.default_rng(2)
  expected = {"train_images": [], "train_labels": [], "test_images": [], "test_labels": []}
  with tarfile.open(path, "w:gz") as tar:
    def add(member, blob):
      info = tarfile.TarInfo(f"{spec.directory}/{member}")
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))

    add("batches.meta" if name == "cifar10" else "meta", pickle.dumps({b"label_names": []}))
    for split, members, n in (("train", spec.train_members, per_batch),
                              ("test", spec.test_members, n_test)):
      for member in members:
        images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, spec.num_classes, n)
        keys = {spec.label_key: labels}
        if name == "cifar100":
          keys[b"coarse_labels"] = labels // 5
        add(member, _batch_pickle(images, labels, keys))
        expected[f"{split}_images"].append(images)
        expected[f"{split}_labels"].append(labels)
  return {k: np.concatenate(v) for k, v in expected.items()}


def to_pixels(ds, images: np.ndarray) -> np.ndarray:
  """Undoes the normalisation of `ds`: [N, H, W, C] normalised images -> [0, 1] pixels."""
  return images * ds.std + ds.mean


def md5(path) -> str:
  with open(path, "rb") as f:
    return hashlib.md5(f.read()).hexdigest()


@pytest.fixture
def no_network(monkeypatch):
  """Records network connections (refusing them) and tfds.data_source calls that may download."""
  import tensorflow_datasets as tfds
  attempts = []
  real_data_source = tfds.data_source

  def spy(*args, **kwargs):
    if kwargs.get("download", True):
      attempts.append(f"tfds.data_source(download=True) for {args}")
    return real_data_source(*args, **kwargs)

  monkeypatch.setattr(tfds, "data_source", spy)

  def refuse(self, address, *args):
    attempts.append(address)
    raise OSError(f"test forbids network access to {address}")

  monkeypatch.setattr(socket.socket, "connect", refuse)
  monkeypatch.setattr(socket.socket, "connect_ex", refuse)
  return attempts


# ----------------------------------------------------------------------------- digits

@pytest.fixture(scope="module")
def digits():
  return load_dataset("digits")


def test_digits_shapes_and_dtypes(digits):
  assert digits.train_images.shape == (1197, 16, 16, 1)
  assert digits.val_images.shape == (200, 16, 16, 1)
  assert digits.test_images.shape == (400, 16, 16, 1)
  for split in ("train", "val", "test"):
    assert getattr(digits, f"{split}_images").dtype == np.float32
    assert getattr(digits, f"{split}_labels").dtype == np.int32
  assert digits.num_classes == 10 and digits.image_shape == (16, 16, 1)


def test_digits_splits_are_stratified(digits):
  for split, size in (("train", 1197), ("val", 200), ("test", 400)):
    counts = np.bincount(getattr(digits, f"{split}_labels"), minlength=10)
    assert counts.sum() == size and len(counts) == 10
    # Digits has 174..183 examples per class: proportional shares stay within one of size / 10.
    assert np.all(np.abs(counts - size / 10) <= size / 10 * 0.05 + 1), (split, counts)


def _assert_zero_mean(images, axis=None):
  """The mean (in float64, so that only the stored float32 values round) is zero to the rounding
  of normalising them: x - mean (and / std), each rounded once, the statistics rounded once."""
  np.testing.assert_allclose(images.mean(axis=axis, dtype=np.float64), 0,
                             atol=tolerances.atol(images, terms=4))


def test_digits_pixel_mean_normalisation(digits):
  _assert_zero_mean(digits.train_images, axis=0)
  assert digits.mean.shape == (16, 16, 1)
  # Scaled to [0, 1] before the mean came off: the stored mean is a mean of [0, 1] pixels.
  assert 0 <= digits.mean.min() and digits.mean.max() <= 1 and digits.mean.max() > 0.3
  # The other splits use the training mean, so they are near zero but not exactly.
  assert abs(float(digits.val_images.mean())) < 0.05


def test_digits_channel_mean_std():
  ds = load_dataset("digits", normalization="channel_mean_std", limit=300)
  assert ds.mean.shape == ds.std.shape == (1, 1, 1)
  _assert_zero_mean(ds.train_images)
  np.testing.assert_allclose(ds.train_images.std(dtype=np.float64), 1, atol=4 * tolerances.EPS32)


def test_digits_split_depends_only_on_seed(digits):
  again = load_dataset("digits", seed=0)
  np.testing.assert_array_equal(again.val_images, digits.val_images)
  np.testing.assert_array_equal(again.train_labels, digits.train_labels)
  other = load_dataset("digits", seed=1)
  assert not np.array_equal(to_pixels(other, other.val_images),
                            to_pixels(digits, digits.val_images))
  # The test split is fixed whatever the seed, so test numbers stay comparable across runs.
  np.testing.assert_array_equal(other.test_labels, digits.test_labels)
  # [0, 1] pixels normalised by two training means and back: four float32 roundings.
  tolerances.assert_close(to_pixels(other, other.test_images),
                          to_pixels(digits, digits.test_images), terms=4)


def test_digits_native_size_holds_the_real_images():
  from sklearn.datasets import load_digits
  raw = load_digits()
  _, test_index = transforms.stratified_split(raw.target, 400, 0)
  ds = load_dataset("digits", image_size=8, val_size=0)
  assert ds.train_images.shape == (1397, 8, 8, 1) and ds.val_images.shape == (0, 8, 8, 1)
  tolerances.assert_close(to_pixels(ds, ds.test_images)[..., 0], raw.images[test_index] / 16,
                          terms=4)
  np.testing.assert_array_equal(ds.test_labels, raw.target[test_index])


def test_limit_keeps_the_first_images_of_each_split(digits):
  ds = load_dataset("digits", limit=50)
  for split in ("train", "val", "test"):
    assert getattr(ds, f"{split}_images").shape == (50, 16, 16, 1)
    np.testing.assert_array_equal(getattr(ds, f"{split}_labels"),
                                  getattr(digits, f"{split}_labels")[:50])
  # Statistics come from the training images as kept.
  _assert_zero_mean(ds.train_images, axis=0)


# ----------------------------------------------------------------------------- transforms

def test_stratified_split_partitions_proportionally():
  labels = np.repeat(np.arange(4), [10, 20, 30, 40])
  kept, held = transforms.stratified_split(labels, 25, seed=3)
  assert len(held) == 25 and len(kept) == 75
  np.testing.assert_array_equal(np.sort(np.concatenate([kept, held])), np.arange(100))
  assert np.all(np.diff(held) > 0) and np.all(np.diff(kept) > 0)
  counts = np.bincount(labels[held], minlength=4)
  assert np.all(np.abs(counts - np.array([10, 20, 30, 40]) / 4) < 1), counts
  again = transforms.stratified_split(labels, 25, seed=3)[1]
  np.testing.assert_array_equal(again, held)
  assert not np.array_equal(transforms.stratified_split(labels, 25, seed=4)[1], held)
  # Fewer held out than classes: as many as asked for, each from a different class.
  _, few = transforms.stratified_split(labels, 3, seed=0)
  assert len(few) == 3 and len(set(labels[few])) == 3


@pytest.mark.parametrize("size", [16, 12, 5])
def test_resize_is_jax_linear_in_chunks(size, monkeypatch):
  images = np.random.default_rng(0).random((5, 8, 8, 3), dtype=np.float32)
  expected = jax.image.resize(images, (5, size, size, 3), "linear", antialias=True)
  monkeypatch.setattr(transforms, "RESIZE_CHUNK", 2)  # chunks of 2, 2 and 1 images
  got = transforms.resize_bilinear(images, size)
  assert type(got) is np.ndarray and got.dtype == np.float32 and got.shape == (5, size, size, 3)
  # Chunks of another batch size: each output is a weighted sum of at most 4 x 4 inputs.
  tolerances.assert_close(got, expected, terms=16)


def test_resize_values_by_hand():
  # Upsampling with half-pixel centres: output centres fall at input coordinates -0.25, 0.25,
  # 0.75, 1.25, and the edges clamp.
  ramp = np.array([0, 1], np.float32).reshape(1, 2, 1, 1) * np.ones((1, 1, 2, 1), np.float32)
  up = transforms.resize_bilinear(ramp, 4)
  # Weighted sums of a few [0, 1] pixels: a few float32 roundings of values up to 1.
  np.testing.assert_allclose(up[0, :, 0, 0], [0, 0.25, 0.75, 1], atol=16 * tolerances.EPS32)
  # Shrinking by 2 antialiases: a filter twice as wide weighs rows 2o-1..2o+2 by 1, 3, 3, 1 (/8),
  # so stripes two rows wide turn grey; plain bilinear would average rows 2o and 2o+1 only and
  # give 0, 1, 0, 1.
  stripes = np.array([1, 1, 0, 0, 1, 1, 0, 0], np.float32)[:, None] * np.ones(8, np.float32)
  down = transforms.resize_bilinear(stripes.reshape(1, 8, 8, 1), 4)
  np.testing.assert_allclose(down[0, 1:3, 0, 0], [0.25, 0.75], atol=16 * tolerances.EPS32)
  flat = transforms.resize_bilinear(np.full((2, 7, 7, 3), 0.3, np.float32), 3)
  np.testing.assert_allclose(flat, 0.3, atol=16 * tolerances.EPS32)


@pytest.mark.parametrize("normalization", ["pixel_mean", "channel_mean_std"])
def test_normalization_stats_in_chunks(normalization):
  images = np.random.default_rng(0).random((103, 6, 5, 3), dtype=np.float32)
  mean, std = transforms.normalization_stats([images], normalization)
  # One chunk gives exactly the float64 numpy statistics, rounded to float32.
  if normalization == "pixel_mean":
    expected = images.mean(axis=0, dtype=np.float64), np.ones((1, 1, 3))
  else:
    expected = (images.mean(axis=(0, 1, 2), dtype=np.float64).reshape(1, 1, 3),
                images.std(axis=(0, 1, 2), dtype=np.float64).reshape(1, 1, 3))
  np.testing.assert_array_equal(mean, expected[0].astype(np.float32))
  np.testing.assert_array_equal(std, expected[1].astype(np.float32))
  # Uneven chunks, one of them empty and one a single image: equal to float32 rounding.
  chunks = np.split(images, [1, 1, 40, 99])
  chunked_mean, chunked_std = transforms.normalization_stats(iter(chunks), normalization)
  np.testing.assert_array_max_ulp(chunked_mean, mean, maxulp=1)
  np.testing.assert_array_max_ulp(chunked_std, std, maxulp=1)
  with pytest.raises(ValueError, match="at least one training image"):
    transforms.normalization_stats([images[:0]], normalization)
  with pytest.raises(TypeError, match="iterable of"):
    transforms.normalization_stats(images, normalization)


# ----------------------------------------------------------------------------- fashion_mnist

DEBIAN = idx.DEBIAN_FASHION_MNIST_DIR
needs_debian = pytest.mark.skipif(not os.path.isdir(DEBIAN),
                                  reason="apt-get install dataset-fashion-mnist")


@needs_debian
def test_fashion_mnist_debian_files():
  ds = load_dataset("fashion_mnist", limit=64)  # data_dir "" means the Debian directory
  for split in ("train", "val", "test"):
    assert getattr(ds, f"{split}_images").shape == (64, 28, 28, 1)
    labels = getattr(ds, f"{split}_labels")
    assert labels.min() >= 0 and labels.max() < 10
  assert len(np.unique(ds.test_labels)) == 10
  pixels = to_pixels(ds, ds.test_images)
  assert pixels.min() >= -1e-6 and pixels.max() <= 1 + 1e-6 and pixels.std() > 0.1


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_own_idx_dir(tmp_path, gz):
  arrays = make_fashion_dir(tmp_path, gz=gz)
  ds = load_dataset("fashion_mnist", data_dir=str(tmp_path), val_size=10)
  assert ds.train_images.shape == (30, 28, 28, 1) and ds.val_images.shape == (10, 28, 28, 1)
  assert sorted(ds.val_labels) == list(range(10))  # 4 per class, 10 held out: one of each
  test_images, test_labels = arrays["test"]
  np.testing.assert_array_equal(ds.test_labels, test_labels)
  tolerances.assert_close(to_pixels(ds, ds.test_images)[..., 0] * 255, test_images, terms=4)


@pytest.mark.parametrize("damage, message", [
    ("magic", "magic number 2049, expected 2051"),
    ("short_payload", "truncated"),
    ("long_payload", "holds 31360"),
    ("truncated_gzip", "truncated"),
    ("label_range", "not below 10"),
    ("count_mismatch", "labels"),
])
def test_fashion_mnist_corrupt_file(tmp_path, damage, message):
  make_fashion_dir(tmp_path)
  images_path = tmp_path / idx.FASHION_MNIST_FILES["train_images"]
  labels_path = tmp_path / idx.FASHION_MNIST_FILES["train_labels"]
  blame = images_path
  images = np.zeros((40, 28, 28), np.uint8)
  if damage == "magic":
    write_idx(images_path, images, magic=idx.LABELS_MAGIC)  # labels' magic on an image file
  elif damage == "short_payload":
    with gzip.open(images_path, "wb") as f:  # header promises 40 images, payload holds 39
      f.write(struct.pack(">4I", idx.IMAGES_MAGIC, 40, 28, 28) + images[:39].tobytes())
  elif damage == "long_payload":
    with gzip.open(images_path, "wb") as f:  # header promises 39 images, payload holds 40
      f.write(struct.pack(">4I", idx.IMAGES_MAGIC, 39, 28, 28) + images.tobytes())
  elif damage == "truncated_gzip":
    blob = images_path.read_bytes()
    images_path.write_bytes(blob[:len(blob) // 2])
  elif damage == "label_range":
    write_idx(labels_path, np.full((40,), 10, np.uint8))
    blame = labels_path
  elif damage == "count_mismatch":
    write_idx(labels_path, np.zeros((39,), np.uint8))
  with pytest.raises(ValueError, match=message) as info:
    load_dataset("fashion_mnist", data_dir=str(tmp_path), val_size=10)
  assert str(blame) in str(info.value)


def test_fashion_mnist_partial_dir(tmp_path):
  make_fashion_dir(tmp_path)
  os.remove(tmp_path / idx.FASHION_MNIST_FILES["test_labels"])
  with pytest.raises(DataUnavailableError, match="missing t10k-labels-idx1-ubyte.gz"):
    load_dataset("fashion_mnist", data_dir=str(tmp_path))


def test_fashion_mnist_missing_everywhere(tmp_path, no_network):
  start = time.monotonic()
  with pytest.raises(DataUnavailableError) as info:
    load_dataset("fashion_mnist", data_dir=str(tmp_path))
  message = str(info.value)
  for instruction in ("apt-get install dataset-fashion-mnist", "--config.data_dir=DIR",
                      "train-images-idx3-ubyte.gz", "tfds build fashion_mnist",
                      "file_format=array_record", f"no Fashion-MNIST IDX files in {tmp_path}"):
    assert instruction in message, instruction
  assert no_network == []
  assert time.monotonic() - start < 30  # tfds must fail at once, never try to download
  assert os.listdir(tmp_path) in ([], ["fashion_mnist"])  # at most tfds's empty version folder


# ----------------------------------------------------------------------------- CIFAR archives

@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_archive_reads_official_layout(tmp_path, name):
  path = tmp_path / cifar.ARCHIVES[name].filename
  expected = make_cifar_archive(path, name)
  got = cifar.read_cifar_archive(str(path), name, expected_md5=md5(path))
  assert got["train_images"].shape == ((30 if name == "cifar10" else 6), 32, 32, 3)
  for key, value in expected.items():
    np.testing.assert_array_equal(got[key], value, err_msg=key)
  assert got["train_labels"].dtype == np.int32 and got["train_images"].dtype == np.uint8


def test_load_dataset_from_cifar_archive(tmp_path, monkeypatch):
  path = tmp_path / "cifar-10-python.tar.gz"
  expected = make_cifar_archive(path, "cifar10", per_batch=4, n_test=5)
  spec = cifar.ARCHIVES["cifar10"]
  monkeypatch.setitem(cifar.ARCHIVES, "cifar10", dataclasses.replace(spec, md5=md5(path)))
  ds = load_dataset("cifar10", archive=str(path), val_size=5, normalization="channel_mean_std")
  assert ds.train_images.shape == (15, 32, 32, 3) and ds.val_images.shape == (5, 32, 32, 3)
  tolerances.assert_close(to_pixels(ds, ds.test_images) * 255, expected["test_images"], terms=4)


def test_cifar_archive_wrong_md5_is_rejected(tmp_path):
  path = tmp_path / "cifar-10-python.tar.gz"
  make_cifar_archive(path, "cifar10")
  with pytest.raises(ValueError, match="truncated or corrupt") as info:
    cifar.read_cifar_archive(str(path), "cifar10")  # the official md5 is expected
  assert "c58f30108f718f92721af3b95e74349a" in str(info.value)
  assert md5(path) in str(info.value)
  with pytest.raises(ValueError, match="truncated or corrupt"):
    load_dataset("cifar10", archive=str(path))


def test_cifar_archive_truncated_gzip(tmp_path):
  path = tmp_path / "cifar-10-python.tar.gz"
  make_cifar_archive(path, "cifar10")
  blob = path.read_bytes()
  path.write_bytes(blob[:len(blob) * 2 // 3])
  with pytest.raises(ValueError, match="truncated or corrupt") as info:
    cifar.read_cifar_archive(str(path), "cifar10", expected_md5=md5(path))
  assert str(path) in str(info.value)


def test_cifar_archive_refuses_foreign_pickle_globals(tmp_path):
  path = tmp_path / "cifar-100-python.tar.gz"
  with tarfile.open(path, "w:gz") as tar:
    for member in ("train", "test"):
      blob = pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"fine_labels": [0],
                           b"extra": dataclasses.FrozenInstanceError()}, protocol=2)
      info = tarfile.TarInfo(f"cifar-100-python/{member}")
      info.size = len(blob)
      tar.addfile(info, io.BytesIO(blob))
  with pytest.raises(ValueError, match="not allowed"):
    cifar.read_cifar_archive(str(path), "cifar100", expected_md5=md5(path))


def test_cifar_missing_archive_and_tfds(tmp_path, no_network):
  with pytest.raises(DataUnavailableError, match="does not exist"):
    load_dataset("cifar10", archive=str(tmp_path / "nope.tar.gz"))
  with pytest.raises(DataUnavailableError) as info:
    load_dataset("cifar100", data_dir=str(tmp_path))
  message = str(info.value)
  for instruction in ("pip install -e .[tfds]", "tfds build cifar100 --file_format=array_record",
                      "download_and_prepare", "--config.archive=/path/to/cifar-100-python.tar.gz",
                      "has not prepared it"):
    assert instruction in message, instruction
  assert no_network == []


# ----------------------------------------------------------------------------- tfds (mocked)

@pytest.mark.parametrize("name, num_classes", [("cifar10", 10), ("cifar100", 100)])
def test_tfds_path_with_mock_data(name, num_classes):
  import tensorflow_datasets as tfds
  with tfds.testing.mock_data(num_examples=30):
    ds = load_dataset(name, val_size=10, data_dir="/nonexistent")
    source = tfds.data_source(name, split="test")
    expected_images = np.stack([source[i]["image"] for i in range(30)])
    expected_labels = np.array([source[i]["label"] for i in range(30)])
  assert ds.train_images.shape == (20, 32, 32, 3) and ds.val_images.shape == (10, 32, 32, 3)
  assert ds.test_images.shape == (30, 32, 32, 3) and ds.num_classes == num_classes
  np.testing.assert_array_equal(ds.test_labels, expected_labels)
  tolerances.assert_close(to_pixels(ds, ds.test_images) * 255, expected_images, terms=4)
  assert ds.train_labels.max() < num_classes


# ----------------------------------------------------------------------------- synthetic

def test_synthetic():
  ds = load_dataset("synthetic", limit=64, val_size=16, seed=5)
  assert ds.train_images.shape == (64, 32, 32, 3) and ds.val_images.shape == (16, 32, 32, 3)
  assert ds.test_images.shape == (64, 32, 32, 3)
  assert ds.train_labels.min() >= 0 and ds.train_labels.max() < 10
  np.testing.assert_array_equal(load_dataset("synthetic", limit=64, val_size=16, seed=5)
                                .train_images, ds.train_images)
  assert not np.array_equal(load_dataset("synthetic", limit=64, val_size=16, seed=6)
                            .train_labels, ds.train_labels)
  small = load_dataset("synthetic", limit=8, image_size=12)
  assert small.train_images.shape == (8, 12, 12, 3) and small.val_images.shape[0] == 0
  default = load_dataset("synthetic")
  assert default.train_images.shape[0] == 10_000 and default.test_images.shape[0] == 2_000


# ----------------------------------------------------------------------------- splits

def test_splits_not_asked_for_are_empty(digits):
  ds = load_dataset("digits", splits=["val"])
  for split in ("train", "test"):
    assert getattr(ds, f"{split}_images").shape == (0, 16, 16, 1)
    assert getattr(ds, f"{split}_images").dtype == np.float32
    assert getattr(ds, f"{split}_labels").shape == (0,)
    assert getattr(ds, f"{split}_labels").dtype == np.int32
  assert ds.image_shape == (16, 16, 1)
  np.testing.assert_array_equal(ds.val_images, digits.val_images)
  np.testing.assert_array_equal(ds.val_labels, digits.val_labels)
  # 1,197 training images are one chunk: the statistics, hence the test images, are exact.
  alone = load_dataset("digits", splits=("test",))
  np.testing.assert_array_equal(alone.test_images, digits.test_images)


@pytest.mark.parametrize("name, kwargs", [
    ("digits", {}),
    ("digits", {"normalization": "channel_mean_std", "image_size": 12, "seed": 2}),
    ("synthetic", {"limit": 300, "val_size": 16}),
    ("synthetic", {"limit": 300, "normalization": "channel_mean_std", "image_size": 20}),
    pytest.param("fashion_mnist", {"limit": 300}, marks=needs_debian),
    pytest.param("fashion_mnist",
                 {"limit": 300, "normalization": "channel_mean_std", "image_size": 14},
                 marks=needs_debian),
])
def test_test_split_alone_matches_full_load(name, kwargs, monkeypatch):
  # Chunks of 50 images, so that the statistics of the training split come in several pieces.
  monkeypatch.setattr(transforms, "RESIZE_CHUNK", 50)
  chunk_sizes = []
  real_stats = transforms.normalization_stats

  def spy(chunks, normalization):
    def recorded():
      for chunk in chunks:
        chunk_sizes.append(chunk.shape[0])
        yield chunk
    return real_stats(recorded(), normalization)

  monkeypatch.setattr(transforms, "normalization_stats", spy)
  full = load_dataset(name, **kwargs)
  assert chunk_sizes == [full.train_images.shape[0]]  # the materialised split as one chunk
  chunk_sizes.clear()
  alone = load_dataset(name, splits=("test",), **kwargs)
  # Never more than a chunk of the training split in float32 at once, but all of it in the end.
  assert max(chunk_sizes) == 50 and sum(chunk_sizes) == full.train_images.shape[0]
  assert alone.train_images.shape == alone.val_images.shape == (0,) + full.image_shape
  np.testing.assert_array_max_ulp(alone.mean, full.mean, maxulp=1)
  np.testing.assert_array_max_ulp(alone.std, full.std, maxulp=1)
  # Normalised by statistics 1 ulp apart: two roundings of each value.
  tolerances.assert_close(alone.test_images, full.test_images, terms=4)
  np.testing.assert_array_equal(alone.test_labels, full.test_labels)


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, message", [
    ({"name": "mnist"}, "digits.*fashion_mnist.*cifar10.*cifar100.*synthetic"),
    ({"name": "digits", "normalization": "zca"}, "pixel_mean.*channel_mean_std"),
    ({"name": "digits", "val_size": 1397}, "val_size=1397 must be smaller than the 1397"),
    ({"name": "digits", "val_size": -1}, "val_size"),
    ({"name": "digits", "limit": -5}, "limit"),
    ({"name": "digits", "limit": 0}, "limit"),
    ({"name": "digits", "limit": 2.5}, "limit"),
    ({"name": "digits", "image_size": 0}, "image_size"),
    ({"name": "digits", "archive": "x.tar.gz"}, "only for"),
    ({"name": "cifar10", "archive": "x.tar.gz", "normalization": "bad"}, "normalization"),
    ({"name": "digits", "splits": ()}, r"splits must be a non-empty sequence.*got \(\)"),
    ({"name": "digits", "splits": "test"}, r"such as \('test',\); got 'test'"),
    ({"name": "digits", "splits": ("train", "holdout")}, "'train', 'val', 'test'"),
])
def test_bad_input(kwargs, message):
  name = kwargs.pop("name")
  with pytest.raises(ValueError, match=message):
    load_dataset(name, **kwargs)


def test_public_api():
  assert data.DATASETS == ("digits", "fashion_mnist", "cifar10", "cifar100", "synthetic")
  assert issubclass(DataUnavailableError, RuntimeError)
  assert "train=(1197, 16, 16, 1)" in repr(load_dataset("digits"))
