"""A training run and its workdir: what the workdir holds, and how the run is rebuilt from it
(one module for train, analyze and experiment).

A workdir holds `config.json` (the run's training config), `data.json` (which data it trains on:
sizes and a fingerprint of the arrays), the orbax `checkpoints/`, `metrics.jsonl`, TensorBoard
events and, once finished, `results.json`. Its config decides everything else: the model
(`build_model`), the data (`load_data`), and whether a new command may resume the run
(`check_resumable`). One process at a time trains in a workdir (`lock`).
"""
import contextlib
import hashlib
import json
import os
import shutil
from typing import Any, Iterator, Sequence

import filelock
import flax.linen as nn
import jax
import ml_collections
import numpy as np
from jax.experimental import multihost_utils

from resnet_jax import checkpoint, configs, data, metrics_io, parallel, steps
from resnet_jax.data import imagenet, prepared_arrays, records, stream
from resnet_jax.errors import (
  ConfigError,
  ConfigMismatchError,
  CorruptFileError,
  NoRunError,
  WorkdirLockedError,
)
from resnet_jax.models import get_model

# Config fields that may change between a run and its resumption: they only steer the loop...
LOOP_FIELDS = ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
               "eval_batch_size", "steps_per_call", "input_workers", "eval_crops")
# ... or say where the data is, not what it is: data.json's fingerprint decides that.
LOCATION_FIELDS = ("data_dir", "archive")
# What `prepare(..., start_over=True)` deletes: everything a run wrote but its config.
RUN_OUTPUTS = ("checkpoints", "tensorboard", metrics_io.METRICS_FILE, metrics_io.RESULTS_FILE)
DATA_FILE = "data.json"
# Fields that must be integers of at least this value.
_MINIMUM = {"batch_size": 1, "num_steps": 1, "log_every": 1, "eval_every": 1,
            "checkpoint_every": 1, "keep_checkpoints": 1, "eval_batch_size": 1, "steps_per_call": 1,
            "val_size": -1,
            "limit": 0, "image_size": 0, "augment_pad": 0, "warmup_steps": 0,
            "resize_size": 1, "eval_crops": 1, "input_workers": 0}
# Multi-crop evaluations of a streamed data set (He 2015's 10-crop test).
EVAL_CROPS = (1, 10)


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  overrides = configs.parse_model_options(config.model_options)
  if config.shortcut:
    overrides["shortcut"] = config.shortcut
  return get_model(config.model, num_classes=num_classes, **overrides)


def check_config(config: ml_collections.ConfigDict,
                 num_devices: int | None = None) -> ml_collections.ConfigDict:
  """The config with its warm-up decided, or a ConfigError naming the field to fix. Checks what
  can be checked without the data, so that a bad command fails before anything is written."""
  for field, minimum in _MINIMUM.items():
    value = config[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
      raise ConfigError(f"--config.{field} must be an integer >= {minimum}, got {value!r}")
  if config.init_from and not os.path.isdir(os.path.join(config.init_from, "checkpoints")):
    raise ConfigError(f"--config.init_from={config.init_from} holds no checkpoint: give a run's "
                      "workdir, or a directory that python -m resnet_jax.convert wrote")
  datasets = data.DATASETS + configs.STREAM_DATASETS
  if config.dataset not in datasets:
    raise ConfigError(f"--config.dataset={config.dataset!r} is not one of {datasets}")
  _check_stream_fields(config)
  if config.normalization not in data.NORMALIZATIONS:
    raise ConfigError(f"--config.normalization must be one of {data.NORMALIZATIONS}, got "
                      f"{config.normalization!r}")
  try:
    steps.check_compute_dtype(config.dtype)
  except ValueError as err:
    raise ConfigError(f"--config.{err}") from None
  if not config.learning_rate > 0 or not all(0 < f <= 1 for f in config.lr_boundaries):
    raise ConfigError("--config.learning_rate must be > 0 and --config.lr_boundaries fractions "
                      f"in (0, 1], got {config.learning_rate} and {config.lr_boundaries}")
  try:
    parallel.check_batch_size(config.batch_size,
                              jax.device_count() if num_devices is None else num_devices)
  except ValueError as err:
    raise ConfigError(f"--config.batch_size: {err}") from None
  try:
    # A streamed data set's classes are known once it is opened; any count checks the options.
    build_model(config, data.NUM_CLASSES.get(config.dataset, 1000))
    return configs.resolve_warmup(config)
  except ValueError as err:
    raise ConfigError(str(err)) from None


def streamed(config: ml_collections.ConfigDict) -> bool:
  """Whether the run's data set is streamed from a prepared directory (else held in memory)."""
  return config.dataset in configs.STREAM_DATASETS


def _check_stream_fields(config: ml_collections.ConfigDict) -> None:
  if config.eval_crops not in EVAL_CROPS:
    raise ConfigError(f"--config.eval_crops must be one of {EVAL_CROPS}, got {config.eval_crops}")
  if not streamed(config):
    if config.eval_crops != 1:
      raise ConfigError(f"--config.eval_crops={config.eval_crops}: several crops per test image "
                        "exist for streamed data sets (imagenet); in-memory images have one")
    return
  if not config.data_dir:
    raise ConfigError(f"--config.data_dir must name a prepared {config.dataset} directory "
                      "(python -m resnet_jax.data.prepare_imagenet --train_dir=... "
                      "--val_dir=... --out=DIR)")
  if config.train_transform not in imagenet.TRAIN_TRANSFORMS:
    raise ConfigError(f"--config.train_transform must be one of {imagenet.TRAIN_TRANSFORMS}, got "
                      f"{config.train_transform!r}")
  low, high = (tuple(config.scale_range) + (0, 0))[:2]
  if len(config.scale_range) != 2 or not 1 <= low <= high:
    raise ConfigError(f"--config.scale_range must be two integers 1 <= low <= high, got "
                      f"{tuple(config.scale_range)}")
  if config.normalization != "channel_mean_std":
    raise ConfigError(f"--config.normalization: a streamed data set is normalised with "
                      f"ImageNet's per-channel mean and std (channel_mean_std), got "
                      f"{config.normalization!r}")


def open_data(config: ml_collections.ConfigDict) -> data.Dataset | records.Prepared:
  """The run's training data: a data set in memory (`load_data`), or a prepared directory to
  stream (checked: its dataset.json and shards)."""
  if streamed(config):
    return records.open_prepared(config.data_dir)
  return load_data(config)


def num_classes(source: data.Dataset | records.Prepared) -> int:
  return source.num_classes


def num_train_examples(config: ml_collections.ConfigDict,
                       source: data.Dataset | records.Prepared) -> int:
  """Images the run trains on: the training split less its held-out validation images."""
  if isinstance(source, records.Prepared):
    return source.size("train") - max(config.val_size, 0)
  return len(source.train_labels)


def image_shape(config: ml_collections.ConfigDict,
                source: data.Dataset | records.Prepared) -> tuple[int, int, int]:
  """(H, W, C) of the model's input."""
  if isinstance(source, records.Prepared):
    size = config.image_size or stream.DEFAULT_IMAGE_SIZE
    return (size, size, 3)
  return source.image_shape


def load_data(config: ml_collections.ConfigDict,
              splits: Sequence[str] = ("train", "val", "test")) -> data.Dataset:
  """The run's data set in memory; splits not named come back empty (statistics are the training
  split's). A streamed data set gives the first `config.limit` images of each split named, in a
  fixed random order, centre-cropped as for evaluation (what the analyses read)."""
  if streamed(config):
    return prepared_arrays.load(
        records.open_prepared(config.data_dir), splits=tuple(splits), limit=config.limit,
        val_size=max(config.val_size, 0),
        image_size=config.image_size or stream.DEFAULT_IMAGE_SIZE,
        resize_size=config.resize_size)
  return data.load_dataset(
      config.dataset, data_dir=config.data_dir, archive=config.archive,
      val_size=None if config.val_size < 0 else config.val_size,
      normalization=config.normalization, seed=config.seed,
      image_size=config.image_size or None, limit=config.limit or None, splits=tuple(splits))


def read_json(path: str, what: str) -> Any:
  """A JSON file of the workdir, or a CorruptFileError that names it and says what to do."""
  try:
    return metrics_io.read_json(path)
  except (ValueError, UnicodeDecodeError) as err:
    raise CorruptFileError(
        f"{path} ({what}) is not readable JSON ({type(err).__name__}: {err}); move or delete it "
        "(or the whole workdir) and run again") from None


def _as_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  # As config.json holds it (tuples become lists), so that the two compare field by field.
  return json.loads(json.dumps(config.to_dict()))


def config_differences(saved: dict[str, Any], config: ml_collections.ConfigDict) -> list[str]:
  """The fields (but LOOP_FIELDS and LOCATION_FIELDS) in which `config` differs from `saved`.

  A field that `saved` lacks is no difference while `config` holds its default: the run was
  written before the field existed, and the default is what it ran with."""
  current, ignored = _as_json(config), LOOP_FIELDS + LOCATION_FIELDS
  defaults = _as_json(configs.base_config())
  return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
          for k in sorted(set(saved) | set(current))
          if k not in ignored and saved.get(k) != current.get(k)
          and not (k not in saved and k in defaults and current.get(k) == defaults[k])]


def check_resumable(config: ml_collections.ConfigDict, workdir: str) -> None:
  """Refuses (ConfigMismatchError) a workdir that holds a run of another config. Reads only."""
  path = os.path.join(workdir, metrics_io.CONFIG_FILE)
  if not os.path.exists(path):
    return
  saved = read_json(path, "the run's config")
  if not isinstance(saved, dict):
    raise CorruptFileError(f"{path} holds no config; move or delete it and run again")
  differ = config_differences(saved, config)
  if differ:
    raise ConfigMismatchError(
        f"{workdir} holds a run of another config ({', '.join(differ)}); use another "
        "--workdir, or --start_over to delete that run")


def data_summary(dataset: data.Dataset | records.Prepared,
                 config: ml_collections.ConfigDict | None = None) -> dict[str, Any]:
  """What data a run trains on: name, split sizes and a fingerprint of the data themselves (the
  arrays in memory, or a prepared directory's records, as its dataset.json states them)."""
  if isinstance(dataset, records.Prepared):
    held_out = max(config.val_size, 0)
    return {"dataset": config.dataset, "classes": dataset.num_classes,
            "train": dataset.size("train") - held_out, "val": held_out,
            "test": dataset.size("val"), "fingerprint": dataset.fingerprint}
  digest = hashlib.blake2b(digest_size=16)
  for split in ("train", "val", "test"):
    for kind in ("images", "labels"):
      array = np.ascontiguousarray(getattr(dataset, f"{split}_{kind}"))
      digest.update(str((array.shape, array.dtype.str)).encode())
      digest.update(array.data)  # the buffer itself: CIFAR's images would be a 0.6 GB copy
  return {"dataset": dataset.name, "train": len(dataset.train_labels),
          "val": len(dataset.val_labels), "test": len(dataset.test_labels),
          "fingerprint": digest.hexdigest()}


def prepare(config: ml_collections.ConfigDict, workdir: str,
            dataset: data.Dataset | records.Prepared, start_over: bool) -> None:
  """Makes `workdir` ready for the run: deletes another run's outputs when starting over,
  refuses data other than the run's (a move of the same files is fine), and writes config.json
  and data.json where they differ from what is there. Call it holding the lock."""
  os.makedirs(workdir, exist_ok=True)
  if start_over and jax.process_index() == 0:
    for name in RUN_OUTPUTS + (DATA_FILE,):
      target = os.path.join(workdir, name)
      if os.path.isdir(target):
        shutil.rmtree(target)
      elif os.path.exists(target):
        os.remove(target)
  if jax.process_count() > 1:
    # No process may look for a checkpoint before process 0 has deleted the old run's.
    multihost_utils.sync_global_devices("resnet_jax.runs.prepare")
  summary, path = data_summary(dataset, config), os.path.join(workdir, DATA_FILE)
  saved = read_json(path, "the run's data") if os.path.exists(path) else None
  if saved is not None and saved != summary:
    differ = ", ".join(f"{k} {saved.get(k)!r} -> {summary.get(k)!r}"
                       for k in sorted(set(saved) | set(summary)) if saved.get(k) != summary.get(k))
    raise ConfigMismatchError(
        f"the data loaded for {workdir} differ from the data its run trained on ({differ}); "
        "point --config.data_dir/--config.archive at the run's data, or use another --workdir")
  if jax.process_index() == 0:
    _write_if_changed(os.path.join(workdir, metrics_io.CONFIG_FILE), _as_json(config))
    _write_if_changed(path, summary)


def _write_if_changed(path: str, obj: Any) -> None:
  if not os.path.exists(path) or metrics_io.read_json(path) != obj:
    metrics_io.write_json(path, obj)


@contextlib.contextmanager
def lock(workdir: str) -> Iterator[None]:
  """Holds the workdir for this process; WorkdirLockedError at once if another one holds it.

  The kernel releases the lock when its holder dies, so a killed run's lock is simply taken
  over. Each process of a multi-host run holds its own lock file.
  """
  os.makedirs(workdir, exist_ok=True)
  name = os.path.join(workdir, f".lock.process{jax.process_index()}")
  held = filelock.FileLock(name + ".lock", timeout=0, is_singleton=False)
  try:
    held.acquire()
  except filelock.Timeout:
    try:
      with open(name + ".pid") as f:
        holder = f"process {f.read().strip()}"
    except OSError:
      holder = "another process"
    raise WorkdirLockedError(f"{workdir} is in use by {holder} on this machine (lock "
                             f"{name}.lock); wait for it to finish or use another --workdir"
                             ) from None
  try:
    with open(name + ".pid", "w") as f:
      f.write(str(os.getpid()))
    yield
  finally:
    held.release()


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The training config saved in `workdir` (NoRunError where there is no run)."""
  path = os.path.join(workdir, metrics_io.CONFIG_FILE)
  if not os.path.exists(path):
    raise NoRunError(f"{workdir} holds no run ({metrics_io.CONFIG_FILE} is missing)")
  config = ml_collections.ConfigDict(read_json(path, "the run's config"))
  config.lr_boundaries = tuple(config.lr_boundaries)
  return config


def read_results(workdir: str) -> dict[str, Any] | None:
  """A finished run's results.json, or None."""
  path = os.path.join(workdir, metrics_io.RESULTS_FILE)
  if not os.path.exists(path):
    return None
  results = read_json(path, "the run's results")
  if not isinstance(results, dict) or not isinstance(results.get("steps"), int):
    raise CorruptFileError(f"{path} holds no run results (no 'steps'); move or delete it and run "
                           "again")
  return results


def model_classes(config: ml_collections.ConfigDict, data_classes: int) -> int:
  """The class count of the run's net: a converted run's own (its config's num_classes, the rows
  of the file's fc layer), else its data set's.

  A converted ImageNet net reads data of fewer classes as its first classes (the offline fixture's
  labels 0, 1, 2 are the net's classes 0, 1, 2, whatever the photos show).

  Raises:
    ConfigMismatchError: data with more classes than the converted net has.
  """
  classes = config.get("num_classes") or data_classes
  if data_classes > classes:
    raise ConfigMismatchError(f"the data hold {data_classes} classes and the net {classes}: its "
                              "head cannot name every label")
  return classes


def load_run(workdir: str, splits: Sequence[str] = ("test",), step: int | None = None,
             overrides: dict[str, Any] | None = None):
  """(config, dataset, model, variables) of the run in `workdir` at checkpoint `step` (default:
  the latest).

  Only `splits` of the data set are loaded (the test split by default: what the analyses read).
  `overrides` are config fields set before the data are loaded: where they are (LOCATION_FIELDS)
  and, for a streamed data set, how many images are read and how they are cropped (`limit`,
  `image_size`, `resize_size`); the returned config holds them.
  """
  config = read_config(workdir)
  config.update(overrides or {})
  dataset = load_data(config, splits)
  model = build_model(config, model_classes(config, dataset.num_classes))
  restored = checkpoint.restore_saved(checkpoint.manager(workdir), step)
  variables = {"params": restored["params"], "batch_stats": restored["batch_stats"]}
  return config, dataset, model, variables
