"""Reads a data set that tfds has already prepared, through `tfds.data_source`.

`tfds.data_source` gives random access to array_record files and decodes to numpy, so reading needs
neither TensorFlow nor the network; only preparing the data set the first time does. We always pass
`download=False`: a training run must never start a download behind the user's back, and an
unprepared data set has to end in one readable error that says what to do.
"""
import os

import numpy as np

from resnet_jax.data.errors import DataUnavailableError

_DEFAULT_TFDS_DIR = "~/tensorflow_datasets"


def _tfds_build_help(name: str, data_dir: str) -> str:
  dir_flag = f" --data_dir={data_dir}" if data_dir else ""
  dir_kwarg = f", data_dir={data_dir!r}" if data_dir else ""
  # tfds writes TFRecord by default, which `data_source` cannot read; hence the explicit format.
  return (f"or prepare it once for tfds (needs TensorFlow and internet): pip install -e .[tfds] "
          f"&& tfds build {name} --file_format=array_record{dir_flag} (in Python: "
          f"tfds.builder({name!r}{dir_kwarg}).download_and_prepare(file_format='array_record'))")


def how_to_get(name: str, data_dir: str) -> str:
  """The instructions for obtaining `name`, one line, as DataUnavailableError messages end."""
  tfds_dir = f" --config.data_dir={data_dir}" if data_dir else " the default tfds data_dir"
  if name in ("cifar10", "cifar100"):
    archive = f"cifar-{name[len('cifar'):]}-python.tar.gz"
    return (f"To get it: download https://www.cs.toronto.edu/~kriz/{archive} and run with "
            f"--config.archive=/path/to/{archive}; {_tfds_build_help(name, data_dir)}, then "
            f"run with{tfds_dir}")
  if name == "fashion_mnist":
    return ("To get it: apt-get install dataset-fashion-mnist (installs the IDX files in "
            "/usr/share/datasets/fashion-mnist, found without any flag); or run with "
            "--config.data_dir=DIR where DIR holds the four official IDX files "
            "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
            f"t10k-labels-idx1-ubyte.gz; {_tfds_build_help(name, data_dir)}")
  raise ValueError(f"no instructions for {name!r}")


def _diagnose(tfds, name: str, data_dir: str, err: Exception) -> str:
  """One line on why tfds failed: its own first line is misleading when nothing was prepared."""
  try:
    builder = tfds.builder(name, data_dir=data_dir or None)
    if not builder.is_prepared():
      return f"tfds has not prepared it in {builder.data_dir}"
  except Exception:  # pylint: disable=broad-except
    pass  # Only the wording of the message depends on this; tfds's own reason follows.
  where = data_dir or os.environ.get("TFDS_DATA_DIR", _DEFAULT_TFDS_DIR)
  reason = (str(err).strip().splitlines() or [""])[0]
  return f"tfds could not open it in {where} ({type(err).__name__}: {reason})"


def read_tfds(name: str, data_dir: str = "", *, splits: tuple[str, ...] = ("train", "test"),
              label_key: str = "label") -> dict[str, np.ndarray]:
  """Reads whole splits of a prepared tfds data set into memory.

  Args:
    name: tfds name, e.g. "cifar10".
    data_dir: tfds data directory; "" means tfds's default ($TFDS_DATA_DIR or
      ~/tensorflow_datasets).
    splits: split names to read.
    label_key: feature holding the class ("label"; CIFAR-100's fine label is also "label").
  Returns:
    {f"{split}_images": [N, H, W, C] uint8, f"{split}_labels": [N] int32} for each split.
  Raises:
    DataUnavailableError: if tfds cannot open the prepared data set, with tfds's one-line reason
      and the ways to obtain the data.
  """
  import tensorflow_datasets as tfds  # Imported here: only the tfds path pays for it.

  sources = {}
  for split in splits:
    try:
      sources[split] = tfds.data_source(name, split=split, data_dir=data_dir or None,
                                        download=False)
    except Exception as err:  # pylint: disable=broad-except
      # tfds signals "not prepared" through several unrelated types (KeyError for empty splits,
      # NotImplementedError for a TFRecord build, FileNotFoundError, ...). We keep its first line
      # as the reason and drop its traceback, which says nothing the instructions do not.
      raise DataUnavailableError(
          f"{name} ({split} split) is not available: {_diagnose(tfds, name, data_dir, err)}.\n"
          f"{how_to_get(name, data_dir)}") from None

  out = {}
  for split, source in sources.items():
    n = len(source)
    first = source[0]
    images = np.empty((n,) + np.shape(first["image"]), np.uint8)
    labels = np.empty((n,), np.int32)
    # One record at a time: `__getitems__` would batch the reads, but tfds's own mock data source
    # (tfds.testing.mock_data) breaks on it in tfds 4.9, and this loop is a few seconds for CIFAR.
    for i in range(n):
      example = first if i == 0 else source[i]
      images[i] = example["image"]
      labels[i] = example[label_key]
    out[f"{split}_images"] = images
    out[f"{split}_labels"] = labels
  return out
