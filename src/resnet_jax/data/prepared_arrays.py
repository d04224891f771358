"""A few images of a prepared (streamed) data set held in memory as a `Dataset`: what the
analyses read (responses, lesions and path gradients run on arrays), and tests.

Each split named gives its first `limit` images in a fixed random order (records are stored
class by class, so the first records alone would be one class), decoded, resized and
centre-cropped as for evaluation (`imagenet.eval_crops`) and normalised (`imagenet.normalize`).
"train" draws from the training records the runs train on (less the held-out ones), "val" from
the held-out ones (`stream.hold_out`), "test" from the prepared "val" split.
"""
from collections.abc import Sequence

import numpy as np

from resnet_jax.data import imagenet, stream
from resnet_jax.data.dataset import SPLITS, Dataset
from resnet_jax.data.records import Prepared

# The order the images are taken in is drawn with this seed (whatever a run's seed), so that the
# analyses of two runs see the same images.
ORDER_SEED = 0


def load(prepared: Prepared, *, splits: Sequence[str], limit: int, val_size: int = 0,
         image_size: int = stream.DEFAULT_IMAGE_SIZE, resize_size: int = 256) -> Dataset:
  """The first `limit` images of each of `splits` as a Dataset (other splits empty).

  Raises:
    ValueError: limit 0 (a whole streamed split does not fit in memory) or an unknown split.
  """
  if not limit:
    raise ValueError("a streamed data set's splits are loaded into memory only in part: set "
                     "--config.limit to the number of images per split (e.g. 256)")
  if isinstance(splits, str) or not set(splits) <= set(SPLITS):
    raise ValueError(f"splits must be names from {SPLITS}, got {splits!r}")
  train_records, val_records = stream.hold_out(prepared.size("train"), val_size)
  chosen = {"train": ("train", train_records), "val": ("train", val_records),
            "test": ("val", None)}
  crop = stream.EvalCrops(1, image_size, resize_size)
  arrays = {}
  for split in SPLITS:
    images = np.zeros((0, image_size, image_size, 3), np.float32)
    labels = np.zeros(0, np.int32)
    if split in splits:
      source_split, records = chosen[split]
      source = prepared.source(source_split)
      count = len(source) if records is None else len(records)
      order = np.random.default_rng(ORDER_SEED).permutation(count)[:limit]
      index = order if records is None else records[order]
      pairs = [source[int(i)] for i in index]
      labels = np.asarray([label for label, _ in pairs], np.int32)
      images = np.stack([imagenet.normalize(crop(jpeg)) for _, jpeg in pairs]) if pairs else images
    arrays[f"{split}_images"], arrays[f"{split}_labels"] = images.astype(np.float32), labels
  return Dataset(name="imagenet", num_classes=prepared.num_classes,
                 normalization="channel_mean_std",
                 mean=np.asarray(imagenet.MEAN_RGB, np.float32).reshape(1, 1, 3),
                 std=np.asarray(imagenet.STD_RGB, np.float32).reshape(1, 1, 3), **arrays)
