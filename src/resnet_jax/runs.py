"""A training run and its workdir: what the workdir holds, and how the run is rebuilt from it
(one module for train, analyze and experiment).

A workdir holds `config.json` (the run's training config, written before training), the orbax
`checkpoints/`, `metrics.jsonl`, TensorBoard events and, once finished, `results.json`. Its
config decides everything else: the model (`build_model`), the data (`load_data`), and whether a
new command may resume the run (`prepare`).
"""
import json
import os
import shutil
from typing import Any, Sequence

import flax.linen as nn
import jax
import ml_collections

from resnet_jax import checkpoint, data, metrics_io
from resnet_jax.models import get_model

# Config fields that may change between a run and its resumption: they only steer the loop.
LOOP_FIELDS = ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
               "eval_batch_size")
# What `prepare(..., start_over=True)` deletes: everything a run wrote but its config.
RUN_OUTPUTS = ("checkpoints", "tensorboard", metrics_io.METRICS_FILE, metrics_io.RESULTS_FILE)


class ConfigMismatchError(ValueError):
  """The workdir holds a run of another config."""


def build_model(config: ml_collections.ConfigDict, num_classes: int) -> nn.Module:
  overrides = {"shortcut": config.shortcut} if config.shortcut else {}
  return get_model(config.model, num_classes=num_classes, **overrides)


def load_data(config: ml_collections.ConfigDict,
              splits: Sequence[str] = ("train", "val", "test")) -> data.Dataset:
  """The run's data set; splits not named come back empty (statistics are the training split's)."""
  return data.load_dataset(
      config.dataset, data_dir=config.data_dir, archive=config.archive,
      val_size=None if config.val_size < 0 else config.val_size,
      normalization=config.normalization, seed=config.seed,
      image_size=config.image_size or None, limit=config.limit or None, splits=tuple(splits))


def _as_json(config: ml_collections.ConfigDict) -> dict[str, Any]:
  # As config.json holds it (tuples become lists), so that the two compare field by field.
  return json.loads(json.dumps(config.to_dict()))


def config_differences(saved: dict[str, Any], config: ml_collections.ConfigDict) -> list[str]:
  """The fields (other than LOOP_FIELDS) in which `config` differs from a saved config.json."""
  current = _as_json(config)
  return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
          for k in sorted(set(saved) | set(current))
          if k not in LOOP_FIELDS and saved.get(k) != current.get(k)]


def prepare(config: ml_collections.ConfigDict, workdir: str, start_over: bool) -> None:
  """Makes `workdir` ready for `config`'s run: refuses another config's run unless told to start
  over (which deletes that run's outputs), then writes config.json."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, metrics_io.CONFIG_FILE)
  if os.path.exists(path) and not start_over:
    differ = config_differences(metrics_io.read_json(path), config)
    if differ:
      raise ConfigMismatchError(
          f"{workdir} holds a run of another config ({', '.join(differ)}); use another "
          "--workdir, or --start_over to delete that run")
  if start_over:
    for name in RUN_OUTPUTS:
      target = os.path.join(workdir, name)
      if os.path.isdir(target):
        shutil.rmtree(target)
      elif os.path.exists(target):
        os.remove(target)
  if jax.process_index() == 0:
    metrics_io.write_json(path, _as_json(config))


def read_config(workdir: str) -> ml_collections.ConfigDict:
  """The training config saved in `workdir` (FileNotFoundError where there is no run)."""
  path = os.path.join(workdir, metrics_io.CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{workdir} holds no run ({metrics_io.CONFIG_FILE} is missing)")
  config = ml_collections.ConfigDict(metrics_io.read_json(path))
  config.lr_boundaries = tuple(config.lr_boundaries)
  return config


def read_results(workdir: str) -> dict[str, Any] | None:
  """A finished run's results.json, or None."""
  path = os.path.join(workdir, metrics_io.RESULTS_FILE)
  return metrics_io.read_json(path) if os.path.exists(path) else None


def load_run(workdir: str, splits: Sequence[str] = ("test",)):
  """(config, dataset, model, variables) of the run in `workdir` at its latest checkpoint.

  Only `splits` of the data set are loaded (the test split by default: what the analyses read).
  """
  config = read_config(workdir)
  dataset = load_data(config, splits)
  model = build_model(config, dataset.num_classes)
  restored = checkpoint.restore_saved(checkpoint.manager(workdir))  # FileNotFoundError if none
  variables = {"params": restored["params"], "batch_stats": restored["batch_stats"]}
  return config, dataset, model, variables
