"""JPEG decoding per core for the streamed ImageNet path: Pillow against simplejpeg. Not a test.

On one process (one core), over real photos at ImageNet's sizes (`write_imagenet_fixture`: crops
of the scikit-learn and scikit-image photos, 333x500 to 1024x768, its RGB JPEGs only) and over
the photos' own JPEG files as shipped (640x427 to 1411x1411), it times
  * a full decode to RGB: Pillow (`imagenet.decode_rgb`) and simplejpeg;
  * `imagenet.train_crop` ("he2015" and "inception", 224) with each decoder, with the DCT-scaled
    decode and without it (`dct_scaling=False`).
The methods alternate within each round and run on the same images with the same crops; it
prints one JSON line per method: the median over rounds of images/s, and the median of the
per-round ratios to simplejpeg with DCT scaling.

Run: .venv/bin/python benchmarks/jpeg_decode.py [--rounds 7 --classes 10 --per_class 10]
"""
import argparse
import glob
import json
import os
import random
import statistics
import tempfile
import time

import numpy as np
import simplejpeg

from resnet_jax.data import fixtures, imagenet

SHIPPED = ("china", "flower", "rocket", "hubble_deep_field", "retina")


def _shipped_jpegs() -> list[bytes]:
  import skimage  # pylint: disable=g-import-not-at-top
  import sklearn.datasets  # pylint: disable=g-import-not-at-top
  paths = [os.path.join(os.path.dirname(sklearn.datasets.__file__), "images", f"{n}.jpg")
           for n in SHIPPED[:2]]
  paths += [os.path.join(os.path.dirname(skimage.__file__), "data", f"{n}.jpg")
            for n in SHIPPED[2:]]
  return [open(p, "rb").read() for p in paths]


def _fixture_jpegs(classes: int, per_class: int) -> list[bytes]:
  with tempfile.TemporaryDirectory() as tmp:
    out = fixtures.write_imagenet_fixture(os.path.join(tmp, "f"), num_classes=classes,
                                          train_per_class=per_class, val_per_class=0)
    blobs = [open(p, "rb").read() for p in sorted(glob.glob(f"{out}/train/*/*.JPEG"))]
  # The CMYK JPEG and the PNG go to Pillow whatever the choice; time the common case.
  return [b for b in blobs if b[:2] == b"\xff\xd8"
          and simplejpeg.decode_jpeg_header(b)[2] == "YCbCr"]


def _methods():
  out = {"decode pillow": imagenet.decode_rgb,
         "decode simplejpeg": lambda b, i: simplejpeg.decode_jpeg(b, colorspace="RGB")}
  out["decode pillow"] = lambda b, i: imagenet.decode_rgb(b)
  for kind in imagenet.TRAIN_TRANSFORMS:
    for decoder in imagenet.DECODERS:
      for dct in (True, False):
        out[f"{kind} {decoder}{' dct' if dct else ''}"] = (
            lambda b, i, kind=kind, decoder=decoder, dct=dct: imagenet.train_crop(
                b, np.random.default_rng(i), kind=kind, decoder=decoder, dct_scaling=dct))
  return out


def _bench(name: str, images: list[bytes], rounds: int, reps: int) -> None:
  methods = _methods()
  rates = {m: [] for m in methods}
  order = list(methods)
  for r in range(rounds):
    random.Random(r).shuffle(order)
    for m in order:
      fn = methods[m]
      start = time.perf_counter()
      for _ in range(reps):
        for i, blob in enumerate(images):
          fn(blob, i)
      rates[m].append(reps * len(images) / (time.perf_counter() - start))
  for m in methods:
    base = "he2015 simplejpeg dct" if m.startswith("he2015") else \
        "inception simplejpeg dct" if m.startswith("inception") else "decode simplejpeg"
    ratio = statistics.median(a / b for a, b in zip(rates[m], rates[base]))
    print(json.dumps({"images": name, "method": m, "img_per_s": round(statistics.median(rates[m])),
                      f"ratio_to_{base.replace(' ', '_')}": round(ratio, 3)}), flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--per_class", type=int, default=10)
  args = parser.parse_args()
  fixture = _fixture_jpegs(args.classes, args.per_class)
  sizes = sorted({simplejpeg.decode_jpeg_header(b)[:2] for b in fixture})
  print(json.dumps({"fixture_images": len(fixture), "sizes_hw": sizes, "load": os.getloadavg()}))
  _bench("fixture", fixture, args.rounds, 1)
  _bench("shipped", _shipped_jpegs(), args.rounds, 4)
  print(json.dumps({"load_after": os.getloadavg()}))


if __name__ == "__main__":
  main()
