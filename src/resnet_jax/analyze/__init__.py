"""The analyses of a trained run: `analyze_run(workdir)`; `python -m resnet_jax.analyze` runs it.

  python -m resnet_jax.analyze --workdir=runs/digits_resnet56 --analysis=all

Loads the run's config, data and latest checkpoint (`runs.load_run`): the test split, and the
training split only when the path analyses run on it (Veit's protocol, the default). Computes the
requested analyses (BN in eval mode) and merges them into the workdir's `analysis.json`: a rerun
of some analyses keeps the others' results if they were computed on the same checkpoint step.
The figures (`figures/*.png|svg`) are redrawn from the merged results; figures that no result
backs any more are removed. Every array in analysis.json is a plain list.

A streamed data set (ImageNet) is analysed on part of its splits, never a whole one: the first
`num_images` validation images (responses, lesions) and, for the path batches, the first
max(num_images, path_images) training images, both in `data.prepared_arrays`' fixed random order
and centre-cropped as for evaluation. A directory that `python -m resnet_jax.convert` wrote names
no images: `--data_dir` says where the prepared ones are (a location, not part of the run), and
`--image_size` / `--resize_size` change the crop (default: the run's; 224 of 256 for a converted
net):

  python -m resnet_jax.analyze --workdir=CONVERTED --data_dir=PREPARED_IMAGENET \
      --num_images=500 --path_images=32 --samples_per_length=100

analysis.json's "data" says which images went in.
"""
import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
import tqdm

from resnet_jax import analysis, checkpoint, configs, metrics_io, plots, runs
from resnet_jax.analyze import _paths
from resnet_jax.data import stream
from resnet_jax.errors import ConfigError, CorruptFileError
from resnet_jax.models.fractalnet import FractalNet

ANALYSES = ("response_std", "lesion", "paths", "columns")
ANALYSIS_FILE = "analysis.json"
# The keys of analysis.json that each analysis writes: a rerun replaces exactly these.
RESULT_KEYS = {
    "response_std": ("response_std",),
    "lesion": ("lesion_single", "lesion_baseline", "lesion_k", "lesion_reorder",
               "lesion_branches"),
    "paths": ("paths_sampled", "paths_exact", "paths_protocol", "effective_paths_sampled",
              "effective_paths_exact", "path_windows"),
    "columns": ("columns",),
}
# Settings that `configs.analysis_config()` may not have yet, with their defaults: the path
# analyses draw a fresh random batch of `path_images` training images per sampled path (Veit's
# protocol); "test" + "fixed" is the earlier protocol (every path on the first test images).
PATH_SPLITS = ("train", "test")
PATH_BATCHES = ("random", "fixed")
PLAIN_NET = ("a plain network has a single path through its blocks; the path analyses need "
             "residual blocks")
FRACTAL_NET = ("a FractalNet has no residual blocks to lesion, respond or route (the analyses of "
               "He and Veit); its ensemble view is the column analysis")
NOT_FRACTAL = "the column analysis needs a FractalNet (fractalnet_c{C})"
# What a streamed data set's images are cut to for the analyses (`data_overrides`).
CROP_FIELDS = ("image_size", "resize_size")
_log = logging.getLogger(__name__)


def check_analyses(analyses: str | Sequence[str]) -> tuple[str, ...]:
  """The analyses named, in ANALYSES order: "all", a comma-separated string, or a sequence.

  Raises:
    ValueError: an unknown name or none at all (before anything is loaded).
  """
  names = analyses.split(",") if isinstance(analyses, str) else list(analyses)
  names = [n.strip() for n in names if n.strip()]
  if names == ["all"]:
    return ANALYSES
  unknown = sorted(set(names) - set(ANALYSES))
  if unknown or not names:
    raise ConfigError(f"unknown analyses {unknown or names}; choose from {', '.join(ANALYSES)} "
                     "or 'all' (comma-separated)")
  return tuple(a for a in ANALYSES if a in names)


def resolve_settings(settings: ml_collections.ConfigDict | None) -> ml_collections.ConfigDict:
  """A checked copy of `settings` (default `configs.analysis_config()`), fields it lacks (a
  config saved by an earlier version) filled in from `configs.analysis_config()`.

  Raises:
    ValueError: a path_split or path_batch that is not one of PATH_SPLITS, PATH_BATCHES, or a
      path_window that is not (lo, hi) with 0 <= lo <= hi, a max_batch < 0.
  """
  out = configs.analysis_config() if settings is None else ml_collections.ConfigDict(
      settings.to_dict())
  for name, value in configs.analysis_config().items():
    if name not in out:
      out[name] = value
  if out.path_split not in PATH_SPLITS or out.path_batch not in PATH_BATCHES:
    raise ConfigError(f"path_split must be one of {PATH_SPLITS} and path_batch one of "
                     f"{PATH_BATCHES}, got {out.path_split!r} and {out.path_batch!r}")
  window = tuple(out.path_window)
  if len(window) != 2 or not all(isinstance(b, int) for b in window) or \
      not 0 <= window[0] <= window[1]:
    raise ConfigError(f"path_window must be (lo, hi) with 0 <= lo <= hi, got {window}")
  out.path_window = window
  if isinstance(out.max_batch, bool) or not isinstance(out.max_batch, int) or out.max_batch < 0:
    raise ConfigError(f"max_batch must be an integer >= 0 (0: by image size), got "
                      f"{out.max_batch!r}")
  return out


def _jsonable(obj: Any) -> Any:
  if dataclasses.is_dataclass(obj):
    obj = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
  if isinstance(obj, dict):
    return {k: _jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_jsonable(v) for v in obj]
  if isinstance(obj, (np.ndarray, jax.Array)):
    return np.asarray(obj).tolist()
  if isinstance(obj, np.generic):
    return obj.item()
  return obj


def batch_budget(settings: ml_collections.ConfigDict, image_shape: Sequence[int]) -> int:
  """Images per pass, each mask row, route and path copy counted: settings.max_batch, or where it
  is 0 DEFAULT_MAX_BATCH for images of up to 32x32 and as many pixels for larger ones (at least
  one image): activation memory grows with the pixels (ResNet-50 at 224: 10 images, a few GB)."""
  if settings.max_batch:
    return settings.max_batch
  pixels = int(image_shape[0]) * int(image_shape[1])
  return max(1, min(analysis.DEFAULT_MAX_BATCH, analysis.DEFAULT_MAX_BATCH * 32 * 32 // pixels))


def _lesions(model, variables, images, labels, settings, key, budget) -> dict[str, Any]:
  """Veit et al. Figs. 3 and 5: single deletions, k random deletions, and reorderings; in a
  multi-residual net also the deletion of each single branch ([num_blocks, k])."""
  n = model.num_blocks
  ks = sorted({k for k in (0, 1, 2, n // 4, n // 2, (3 * n) // 4, n) if 0 <= k <= n})
  out = {"lesion_single": analysis.lesion_single(model, variables, images, labels,
                                                 max_batch=budget),
         "lesion_baseline": float(analysis.lesion_errors(
             model, variables, images, labels, np.ones((1, n), np.float32),
             max_batch=budget)[0]),
         "lesion_k": analysis.lesion_k(model, variables, images, labels, ks,
                                       settings.lesion_samples, jax.random.fold_in(key, 1),
                                       max_batch=budget)}
  if model.is_residual and getattr(model, "branches_per_block", 1) > 1:
    out["lesion_branches"] = analysis.lesion_branches(model, variables, images, labels,
                                                      max_batch=budget)
  # Reordering needs interchangeable blocks (not PyramidNet's widening units, not dense layers).
  if model.is_residual and model.reorderable and any(c > 2 for c in model.stage_sizes):
    swaps = sorted({1, 2, 4, 8, max(1, n // 2)})
    out["lesion_reorder"] = analysis.lesion_reorder(
        model, variables, images, labels, swaps, settings.lesion_samples,
        jax.random.fold_in(key, 2), max_batch=budget)
  return out


def _skipped(model, names: Sequence[str]) -> dict[str, str]:
  """The requested analyses that do not apply to `model`, each with the reason."""
  if isinstance(model, FractalNet):
    return {n: FRACTAL_NET for n in names if n != "columns"}
  skipped = {"columns": NOT_FRACTAL} if "columns" in names else {}
  if "paths" in names and not model.is_residual:
    skipped["paths"] = PLAIN_NET
  return skipped


def compute(model, variables, images, labels, analyses: str | Sequence[str],
            settings: ml_collections.ConfigDict | None = None, progress: bool = True, *,
            path_data: tuple[Any, Any] | None = None) -> dict[str, Any]:
  """The requested analyses of one model, as JSON-ready dicts.

  Args:
    images, labels: [N, H, W, C] test images and [N] labels (the first settings.num_images).
    analyses: names from ANALYSES (or "all"). "paths" is skipped for a plain net (a single
      path), "columns" for every net but a FractalNet, and every other analysis for a FractalNet;
      the result's "skipped" says why.
    settings: `configs.analysis_config()` fields; None for the defaults.
    path_data: (images, labels) of settings.path_split for the path analyses; None: the test
      images above (path_split "test" only).
  """
  names = check_analyses(analyses)
  settings = resolve_settings(settings)
  if settings.num_images:
    images, labels = images[:settings.num_images], labels[:settings.num_images]
  key = jax.random.key(settings.seed)
  skipped = _skipped(model, names)
  out: dict[str, Any] = {"num_blocks": model.num_blocks, "block_names": model.block_names(),
                         "residual": model.is_residual, "num_classes": model.num_classes,
                         "branches_per_block": getattr(model, "branches_per_block", 1),
                         "log2_num_paths": analysis.log2_num_paths(model), "skipped": skipped}
  budget = batch_budget(settings, images.shape[1:3])
  bar = tqdm.tqdm([a for a in names if a not in skipped], desc="analyses",
                  disable=not progress, unit="analysis")
  for name in bar:
    bar.set_postfix_str(name)
    if name == "response_std":
      out["response_std"] = analysis.response_std(model, variables, images, batch_size=budget)
    elif name == "lesion":
      out.update(_lesions(model, variables, images, labels, settings, key, budget))
    elif name == "columns":
      out["columns"] = analysis.column_analysis(model, variables, images, labels,
                                                max_batch=budget)
    else:
      if path_data is None and settings.path_split != "test":
        raise ValueError(f"path_split {settings.path_split!r} needs path_data=(images, labels)")
      pool = (images, labels) if path_data is None else path_data
      out.update(_paths.compute(model, variables, *pool, settings, key, budget))
  return _jsonable(out)


def data_overrides(config: ml_collections.ConfigDict, settings: ml_collections.ConfigDict, *,
                   data_dir: str = "", image_size: int = 0, resize_size: int = 0
                   ) -> dict[str, Any]:
  """The fields `runs.load_run` sets on the run's config for the analyses: `data_dir` where
  given, and for a streamed data set `limit` (how many images of each split are read: the
  test split's first settings.num_images are analysed, the path batches are drawn from the first
  max(num_images, path_images) of their split) and the crop where given (0: the run's).

  Raises:
    ConfigError: a crop for a data set held in memory, a streamed data set without a prepared
      directory or without settings.num_images, a crop larger than its resized image.
  """
  out: dict[str, Any] = {"data_dir": data_dir} if data_dir else {}
  crop = {k: v for k, v in zip(CROP_FIELDS, (image_size, resize_size)) if v}
  if not runs.streamed(config):
    if crop:
      raise ConfigError(f"--image_size and --resize_size crop a streamed data set's images; "
                        f"{config.dataset} is analysed at the size its run trained on")
    return out
  if not (data_dir or config.data_dir):
    raise ConfigError(f"{config.dataset}: the run names no prepared directory of its images; "
                      "give --data_dir=DIR (python -m resnet_jax.data.prepare_imagenet ... "
                      "--out=DIR)")
  if not settings.num_images:
    raise ConfigError(f"{config.dataset} is streamed and analysed on part of its validation "
                      "split: give --num_images (e.g. 500)")
  if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in crop.values()):
    raise ConfigError(f"--image_size and --resize_size must be integers >= 0, got {crop}")
  size = crop.get("image_size", config.get("image_size") or stream.DEFAULT_IMAGE_SIZE)
  resize = crop.get("resize_size", config.get("resize_size", 256))
  if resize < size:
    raise ConfigError(f"--resize_size={resize} is smaller than the crop, --image_size={size}")
  return {**out, "limit": max(settings.num_images, settings.path_images), **crop}


def _data_record(config: ml_collections.ConfigDict, settings: ml_collections.ConfigDict,
                 dataset, model) -> dict[str, Any]:
  """Which images the analyses read (analysis.json's "data"): the test images of the responses
  and lesions, and the training images loaded for the path batches."""
  tested = len(dataset.test_labels)
  record = {"dataset": config.dataset, "data_dir": config.data_dir,
            "classes": dataset.num_classes, "net_classes": model.num_classes,
            "test_images": min(settings.num_images or tested, tested),
            "train_images": len(dataset.train_labels)}
  if runs.streamed(config):
    record.update(image_size=config.image_size or stream.DEFAULT_IMAGE_SIZE,
                  resize_size=config.resize_size,
                  order="the first images of each split in data.prepared_arrays' fixed random "
                        "order, centre-cropped")
  return record


def _checkpoint_step(workdir: str) -> int | None:
  mngr = checkpoint.manager(workdir)
  step = mngr.latest_step()
  mngr.close()
  return step


def _previous(workdir: str, model: str, step: int | None) -> dict[str, Any]:
  """The workdir's analysis.json if it holds results of this model at this checkpoint step."""
  path = os.path.join(workdir, ANALYSIS_FILE)
  if not os.path.exists(path):
    return {}
  previous = runs.read_json(path, "the run's earlier analyses")
  if not isinstance(previous, dict):
    raise CorruptFileError(f"{path} holds no analyses; move or delete it and run again")
  if (previous.get("model"), previous.get("checkpoint_step")) != (model, step):
    _log.warning("%s holds results of checkpoint step %s (model %s), not of step %s: they are "
                 "replaced", path, previous.get("checkpoint_step"), previous.get("model"), step)
    return {}
  return previous


def merge(previous: dict[str, Any], result: dict[str, Any],
          names: Sequence[str]) -> dict[str, Any]:
  """`result` (analyses `names`, just computed) merged into `previous` (same checkpoint step):
  the keys of `names` (RESULT_KEYS) come from `result`, those of other analyses stay; "analyses"
  records how each present analysis was computed, "skipped" why others were not."""
  merged = {k: v for k, v in previous.items()
            if not any(k in RESULT_KEYS[n] for n in names)}
  merged.update({k: v for k, v in result.items() if k not in ("analyses", "skipped")})
  skipped = {n: why for n, why in previous.get("skipped", {}).items() if n not in names}
  skipped.update(result.get("skipped", {}))
  done = {n: r for n, r in previous.get("analyses", {}).items() if n not in names}
  done.update({n: {"checkpoint_step": result.get("checkpoint_step"),
                   "settings": result.get("settings"), "data": result.get("data")}
               for n in names if n not in skipped})
  return {**merged, "skipped": skipped, "analyses": done}


def analyze_run(workdir: str, analyses: str | Sequence[str] = ANALYSES,
                settings: ml_collections.ConfigDict | None = None,
                progress: bool = True, *, data_dir: str = "", image_size: int = 0,
                resize_size: int = 0) -> dict[str, Any]:
  """Analyses the run in `workdir`; merges into analysis.json and redraws figures/ there.

  Unknown analysis names and bad settings are refused before anything is loaded. The analysis
  holds the workdir (`runs.lock`, the lock training holds): another analysis of the run, or its
  training, is refused at once (WorkdirLockedError) rather than interleaving analysis.json and
  the figures.

  Args:
    data_dir: where the run's data are, if not where its config says (a converted net's config
      names none).
    image_size, resize_size: a streamed data set's crop, if not the run's (`data_overrides`).
  Returns:
    The merged analysis.json dict, with "figures": the PNG paths drawn.
  """
  names = check_analyses(analyses)
  settings = resolve_settings(settings)
  runs.read_config(workdir)  # NoRunError before the lock, which would create the directory
  with runs.lock(workdir):
    config = runs.read_config(workdir)
    overrides = data_overrides(config, settings, data_dir=data_dir, image_size=image_size,
                               resize_size=resize_size)
    return _analyze_locked(workdir, names, settings, progress, overrides)


def _analyze_locked(workdir: str, names: tuple[str, ...], settings: ml_collections.ConfigDict,
                    progress: bool, overrides: dict[str, Any]) -> dict[str, Any]:
  config = runs.read_config(workdir)
  # Whether the path analyses run decides the splits to load: the model's kind is known from its
  # name alone (the class count does not change it).
  on_train = ("paths" in names and settings.path_split == "train"
              and runs.build_model(config, num_classes=2).is_residual)
  # The step first, then that very checkpoint: a run training on another machine (whose lock
  # this one does not see) may save another meanwhile.
  step = _checkpoint_step(workdir)
  config, dataset, model, variables = runs.load_run(
      workdir, splits=("train", "test") if on_train else ("test",), step=step,
      overrides=overrides)
  if dataset.num_classes != model.num_classes:
    _log.warning("the data's %d classes are read as the net's classes 0-%d of %d (labels by "
                 "sorted wnid)", dataset.num_classes, dataset.num_classes - 1, model.num_classes)
  path_data = (dataset.train_images, dataset.train_labels) if on_train else None
  result = compute(model, variables, dataset.test_images, dataset.test_labels, names, settings,
                   progress, path_data=path_data)
  result.update(model=config.model, settings=_jsonable(settings.to_dict()), checkpoint_step=step,
                data=_data_record(config, settings, dataset, model))
  result = merge(_previous(workdir, config.model, step), result, names)
  metrics_io.write_json(os.path.join(workdir, ANALYSIS_FILE), result)
  result["figures"] = plots.plot_runs({config.model: metrics_io.read_metrics(workdir)},
                                      {config.model: result}, os.path.join(workdir, "figures"))
  return result
