"""Offline data in ImageNet's real format, for the tests and a CPU demo of the streamed path.

    python -m resnet_jax.data.fixtures --kind=imagenet --out=/tmp/imagenet_fixture
    python -m resnet_jax.data.fixtures --kind=fashion_mnist_jpeg --out=/tmp/fashion_mnist_jpeg
    python -m resnet_jax.data.prepare_imagenet --train_dir=/tmp/imagenet_fixture/train \\
        --val_dir=/tmp/imagenet_fixture/val --out=/tmp/imagenet_fixture_prepared

Both write ImageNet's folder layout, `out/train/<wnid>/*.JPEG` and `out/val/<wnid>/*.JPEG`, plus
`out/synset_words.txt` (one "wnid name" line per class, as ILSVRC's devkit) and
`out/fixture.json` (the arguments). A rerun replaces a previous fixture in `out` whole; any other
non-empty `out` is refused.

* `write_imagenet_fixture`: crops of the photos that scikit-learn and scikit-image ship (one
  photo per class, in PHOTOS' order: china, flower, rocket, coffee, chelsea, astronaut,
  hubble_deep_field, retina, immunohistochemistry, motorcycle), at sizes drawn from ImageNet's
  common ones (IMAGE_SIZES: 500x375, 375x500, 500x333, ..., one in ten 1024x768 or 768x1024 so
  that DCT-scaled decoding is exercised), JPEG quality 75-95. Like ImageNet's train split it holds
  exactly one CMYK JPEG (the first image of the first class) and one PNG named .JPEG (the first
  image of the second class, or the second of the first when there is one class).
* `write_fashion_mnist_jpeg`: Fashion-MNIST's 28x28 images as RGB JPEGs (quality 95), train =
  the official training split, val = the official test split, class folders `n0` ... `n9` (so
  the sorted order is the label order), files `<index in the split>.JPEG`.
"""
import contextlib
import io
import json
import math
import os
import shutil
import tempfile

import numpy as np
from PIL import Image

from resnet_jax.data import idx
from resnet_jax.data.errors import DataUnavailableError
from resnet_jax.errors import ConfigError

FIXTURE_FILE = "fixture.json"
SYNSET_FILE = "synset_words.txt"

# (name, where it ships): the photos; every one is a colour photograph of one subject.
PHOTOS = (("china", "sklearn"), ("flower", "sklearn"), ("rocket", "skimage"),
          ("coffee", "skimage"), ("chelsea", "skimage"), ("astronaut", "skimage"),
          ("hubble_deep_field", "skimage"), ("retina", "skimage"),
          ("immunohistochemistry", "skimage"), ("motorcycle", "skimage"))
# ImageNet's most common (width, height) first, weighted roughly as they occur, and a few large.
IMAGE_SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 500), (500, 400),
               (400, 300), (640, 480), (1024, 768), (768, 1024))
SIZE_WEIGHTS = (0.3, 0.12, 0.16, 0.06, 0.06, 0.06, 0.04, 0.1, 0.05, 0.05)
JPEG_QUALITIES = (75, 85, 90, 95)

FASHION_MNIST_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                       "Sneaker", "Bag", "Ankle boot")
FASHION_MNIST_QUALITY = 95


def load_photo(name: str) -> np.ndarray:
  """uint8 [H, W, 3]: one of PHOTOS, read from the package that ships it (nothing downloaded)."""
  source = dict(PHOTOS)[name]
  if source == "sklearn":
    from sklearn.datasets import load_sample_image  # pylint: disable=g-import-not-at-top
    return load_sample_image(f"{name}.jpg")
  import skimage.data  # pylint: disable=g-import-not-at-top
  if name == "motorcycle":
    return skimage.data.stereo_motorcycle()[0]
  return getattr(skimage.data, name)()


def write_imagenet_fixture(out: str, *, num_classes: int = 4, train_per_class: int = 12,
                           val_per_class: int = 4, seed: int = 0) -> str:
  """Writes an ImageNet-layout tree of real photos (see the module docstring); returns `out`.

  Deterministic in its arguments: class k is crops of PHOTOS[k], wnid f"n{k + 1:08d}"; train
  files `<wnid>_<i>.JPEG`, val files `ILSVRC2012_val_<n>.JPEG` numbered in a shuffled order as
  ImageNet's.
  """
  if not 1 <= num_classes <= len(PHOTOS):
    raise ConfigError(f"num_classes must be 1 to {len(PHOTOS)} (one photo each), not "
                      f"{num_classes}")
  if num_classes * train_per_class < 2 or val_per_class < 0:
    raise ConfigError("the fixture needs two train images or more (one CMYK, one PNG) and "
                      f"val_per_class >= 0, not {num_classes} x {train_per_class}, "
                      f"{val_per_class}")
  rng = np.random.default_rng(seed)
  wnids = [f"n{k + 1:08d}" for k in range(num_classes)]
  val_numbers = iter(rng.permutation(num_classes * val_per_class) + 1)
  png = (1, 0) if num_classes > 1 else (0, 1)  # (class, index) of the PNG named .JPEG
  with _replacing(out, "imagenet") as tmp:
    for k, wnid in enumerate(wnids):
      photo = load_photo(PHOTOS[k][0])
      for i in range(train_per_class):
        kind = "cmyk" if (k, i) == (0, 0) else "png" if (k, i) == png else "jpeg"
        _save(_random_view(photo, rng), os.path.join(tmp, "train", wnid, f"{wnid}_{i}.JPEG"),
              kind, int(rng.choice(JPEG_QUALITIES)))
      for _ in range(val_per_class):
        name = f"ILSVRC2012_val_{next(val_numbers):08d}.JPEG"
        _save(_random_view(photo, rng), os.path.join(tmp, "val", wnid, name), "jpeg",
              int(rng.choice(JPEG_QUALITIES)))
    _write_synsets(tmp, [(wnid, PHOTOS[k][0]) for k, wnid in enumerate(wnids)])
    _write_json(tmp, {"kind": "imagenet", "num_classes": num_classes,
                      "train_per_class": train_per_class, "val_per_class": val_per_class,
                      "seed": seed})
  return out


def _random_view(photo: np.ndarray, rng: np.random.Generator) -> Image.Image:
  """A crop of the photo at one of IMAGE_SIZES' aspects (half to all of the largest such region),
  resized to that size, mirrored half the time."""
  width, height = IMAGE_SIZES[rng.choice(len(IMAGE_SIZES), p=SIZE_WEIGHTS)]
  ph, pw = photo.shape[:2]
  fit = min(pw / width, ph / height)  # the largest region of this aspect the photo holds
  scale = fit * math.sqrt(rng.uniform(0.25, 1.0))
  cw, ch = max(1, round(width * scale)), max(1, round(height * scale))
  left, top = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
  view = Image.fromarray(photo[top:top + ch, left:left + cw])
  view = view.resize((width, height), Image.Resampling.LANCZOS)
  if rng.random() < 0.5:
    view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
  return view


def _save(image: Image.Image, path: str, kind: str, quality: int) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if kind == "png":
    image.save(path, format="PNG")  # named .JPEG, as n02105855_2933.JPEG in ImageNet's train
  elif kind == "cmyk":
    image.convert("CMYK").save(path, format="JPEG", quality=quality)
  else:
    image.save(path, format="JPEG", quality=quality)


def write_fashion_mnist_jpeg(out: str, *, data_dir: str = "", limit: int = 0) -> str:
  """Writes Fashion-MNIST as RGB JPEGs in ImageNet's layout (see the module docstring).

  Args:
    out: the directory to write.
    data_dir: a directory with the four official IDX files; "" is Debian's
      /usr/share/datasets/fashion-mnist (apt-get install dataset-fashion-mnist).
    limit: > 0: only the first `limit` images of each split.
  Returns:
    out.
  Raises:
    DataUnavailableError: no IDX files in the directory.
  """
  directory = data_dir or idx.DEBIAN_FASHION_MNIST_DIR
  files = idx.find_fashion_mnist_files(directory) if os.path.isdir(directory) else None
  if files is None:
    raise DataUnavailableError(
        f"no Fashion-MNIST IDX files in {directory}. To get them: apt-get install "
        "dataset-fashion-mnist, or pass --data_dir=DIR where DIR holds "
        f"{', '.join(idx.FASHION_MNIST_FILES.values())}")
  arrays = idx.read_fashion_mnist(files)
  with _replacing(out, "fashion_mnist_jpeg") as tmp:
    for split, official in (("train", "train"), ("val", "test")):
      images, labels = arrays[f"{official}_images"], arrays[f"{official}_labels"]
      count = len(images) if limit <= 0 else min(limit, len(images))
      for label in range(idx.FASHION_MNIST_CLASSES):
        os.makedirs(os.path.join(tmp, split, f"n{label}"))
      for i in range(count):
        buffer = io.BytesIO()
        Image.fromarray(images[i, :, :, 0]).convert("RGB").save(
            buffer, format="JPEG", quality=FASHION_MNIST_QUALITY)
        with open(os.path.join(tmp, split, f"n{labels[i]}", f"{i:05d}.JPEG"), "wb") as f:
          f.write(buffer.getvalue())
    _write_synsets(tmp, [(f"n{k}", name) for k, name in enumerate(FASHION_MNIST_NAMES)])
    _write_json(tmp, {"kind": "fashion_mnist_jpeg", "data_dir": os.path.abspath(directory),
                      "limit": limit, "quality": FASHION_MNIST_QUALITY})
  return out


def _write_synsets(directory: str, synsets: list[tuple[str, str]]) -> None:
  with open(os.path.join(directory, SYNSET_FILE), "w") as f:
    f.writelines(f"{wnid} {name}\n" for wnid, name in synsets)


def _write_json(directory: str, info: dict) -> None:
  with open(os.path.join(directory, FIXTURE_FILE), "w") as f:
    json.dump(info, f, indent=1)


@contextlib.contextmanager
def _replacing(out: str, kind: str):
  """Yields a temporary sibling of `out` to write the tree in, then puts it in place of `out`,
  which may be absent, empty or an earlier fixture (never anything else)."""
  out = os.path.abspath(out)
  if os.path.exists(out) and not os.path.isfile(os.path.join(out, FIXTURE_FILE)) and (
      not os.path.isdir(out) or os.listdir(out)):
    raise ConfigError(f"{out} exists and holds no {FIXTURE_FILE}: not writing the {kind} "
                      "fixture over it (give an empty or new directory)")
  parent = os.path.dirname(out)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", dir=parent)
  try:
    yield tmp
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  if os.path.exists(out):
    shutil.rmtree(out)
  os.chmod(tmp, 0o755)  # mkdtemp's 0700 is no mode for a data set
  os.rename(tmp, out)


def _main(argv) -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top

  from resnet_jax import cli  # pylint: disable=g-import-not-at-top
  cli.start(argv)
  f = flags.FLAGS
  if f.kind == "imagenet":
    out = write_imagenet_fixture(f.out, num_classes=f.num_classes,
                                 train_per_class=f.train_per_class,
                                 val_per_class=f.val_per_class, seed=f.seed)
  else:
    out = write_fashion_mnist_jpeg(f.out, data_dir=f.data_dir, limit=f.limit)
  print(f"wrote {out}/train and {out}/val")


def _define_flags() -> None:
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_enum("kind", None, ["imagenet", "fashion_mnist_jpeg"], "Which data to write.")
  flags.DEFINE_string("out", None, "The directory to write (replaced if an earlier fixture).")
  flags.DEFINE_integer("num_classes", 4, "imagenet: classes, one photo each (1-10).")
  flags.DEFINE_integer("train_per_class", 12, "imagenet: train images per class.")
  flags.DEFINE_integer("val_per_class", 4, "imagenet: val images per class.")
  flags.DEFINE_integer("seed", 0, "imagenet: the seed of the crops, sizes and qualities.")
  flags.DEFINE_string("data_dir", "", "fashion_mnist_jpeg: the IDX files' directory "
                      f"(default {idx.DEBIAN_FASHION_MNIST_DIR}).")
  flags.DEFINE_integer("limit", 0, "fashion_mnist_jpeg: the first N images of each split (0: all).")
  flags.mark_flags_as_required(["kind", "out"])


if __name__ == "__main__":
  from resnet_jax import cli  # pylint: disable=g-import-not-at-top
  _define_flags()
  cli.run(_main)
