"""The analyses of a trained run: `analyze_run(workdir)`; `python -m resnet_jax.analyze` runs it.

  python -m resnet_jax.analyze --workdir=runs/digits_resnet56 --analysis=all

Loads the run's config, test split and latest checkpoint (`runs.load_run`), computes the
requested analyses on the test images (BN in eval mode), and writes `analysis.json` and the
figures (`figures/*.png|svg`) into the workdir. Every array in analysis.json is a plain list.
"""
import dataclasses
import os
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
import tqdm

from resnet_jax import analysis, configs, metrics_io, plots, runs

ANALYSES = ("response_std", "lesion", "paths")
ANALYSIS_FILE = "analysis.json"


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


def _lesions(model, variables, images, labels, settings, key) -> dict[str, Any]:
  """Veit et al. Figs. 3 and 5: single deletions, k random deletions, and reorderings."""
  n = model.num_blocks
  ks = sorted({k for k in (0, 1, 2, n // 4, n // 2, (3 * n) // 4, n) if 0 <= k <= n})
  out = {"lesion_single": analysis.lesion_single(model, variables, images, labels),
         "lesion_baseline": float(analysis.lesion_errors(
             model, variables, images, labels, np.ones((1, n), np.float32))[0]),
         "lesion_k": analysis.lesion_k(model, variables, images, labels, ks,
                                       settings.lesion_samples, jax.random.fold_in(key, 1))}
  if model.is_residual and any(c > 2 for c in model.stage_sizes):
    swaps = sorted({1, 2, 4, 8, max(1, n // 2)})
    out["lesion_reorder"] = analysis.lesion_reorder(
        model, variables, images, labels, swaps, settings.lesion_samples,
        jax.random.fold_in(key, 2))
  return out


def _paths(model, variables, images, labels, settings, key) -> dict[str, Any]:
  """Veit et al. Fig. 6: gradient by path length, sampled as Veit did and exact."""
  images, labels = images[:settings.path_images], labels[:settings.path_images]
  sampled = analysis.sampled_path_gradients(model, variables, images, labels,
                                            jax.random.fold_in(key, 3),
                                            samples_per_length=settings.samples_per_length)
  exact = analysis.exact_path_gradients(model, variables, images, labels)
  return {"paths_sampled": sampled,
          # The [n+1, N, H, W, C] per-length gradients stay in memory; their norms are saved.
          "paths_exact": {f.name: getattr(exact, f.name) for f in dataclasses.fields(exact)
                          if f.name != "grads"},
          "effective_paths_sampled": analysis.effective_paths(sampled.total),
          "effective_paths_exact": analysis.effective_paths(exact.norm)}


def compute(model, variables, images, labels, analyses: Sequence[str],
            settings: ml_collections.ConfigDict | None = None,
            progress: bool = True) -> dict[str, Any]:
  """The requested analyses of one model, as JSON-ready dicts.

  Args:
    analyses: names from ANALYSES. "paths" is skipped for a plain net (it has a single path).
    settings: `configs.analysis_config()` fields; None for the defaults.
  """
  unknown = sorted(set(analyses) - set(ANALYSES))
  if unknown:
    raise ValueError(f"unknown analyses {unknown}; choose from {ANALYSES} or 'all'")
  settings = configs.analysis_config() if settings is None else settings
  if settings.num_images:
    images, labels = images[:settings.num_images], labels[:settings.num_images]
  key = jax.random.key(settings.seed)
  todo = [a for a in ANALYSES if a in analyses and (a != "paths" or model.is_residual)]
  out: dict[str, Any] = {"num_blocks": model.num_blocks, "block_names": model.block_names(),
                         "residual": model.is_residual}
  bar = tqdm.tqdm(todo, desc="analyses", disable=not progress, unit="analysis")
  for name in bar:
    bar.set_postfix_str(name)
    if name == "response_std":
      out["response_std"] = analysis.response_std(model, variables, images)
    elif name == "lesion":
      out.update(_lesions(model, variables, images, labels, settings, key))
    else:
      out.update(_paths(model, variables, images, labels, settings, key))
  return _jsonable(out)


def analyze_run(workdir: str, analyses: Sequence[str] = ANALYSES,
                settings: ml_collections.ConfigDict | None = None,
                progress: bool = True) -> dict[str, Any]:
  """Analyses the run in `workdir`; writes analysis.json and figures/ there; returns the dict."""
  settings = configs.analysis_config() if settings is None else settings
  config, dataset, model, variables = runs.load_run(workdir)
  result = compute(model, variables, dataset.test_images, dataset.test_labels, analyses,
                   settings, progress)
  result["model"] = config.model
  result["settings"] = settings.to_dict()
  metrics_io.write_json(os.path.join(workdir, ANALYSIS_FILE), result)
  result["figures"] = plots.plot_runs({config.model: metrics_io.read_metrics(workdir)},
                                      {config.model: result}, os.path.join(workdir, "figures"))
  return result
