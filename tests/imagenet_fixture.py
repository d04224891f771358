"""A small prepared directory of real JPEGs in ImageNet's format, for the tests of the streamed
path: the fixture's photos (`data.fixtures`), prepared by `data.prepare_imagenet`."""
import os

from resnet_jax.data import fixtures, prepare_imagenet


def make_prepared(root: str, seed: int = 0, num_classes: int = 3) -> str:
  """Prepares num_classes x (6 training, 2 validation) photos under root; returns the directory."""
  raw = os.path.join(root, "raw")
  fixtures.write_imagenet_fixture(raw, num_classes=num_classes, train_per_class=6,
                                  val_per_class=2, seed=seed)
  out = os.path.join(root, "prepared")
  prepare_imagenet.prepare(os.path.join(raw, "train"), os.path.join(raw, "val"), out,
                           train_shards=2, val_shards=1, workers=1, progress=False)
  return out
