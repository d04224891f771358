"""Runs the analyses on a trained run: `analyze_run(workdir, ...)`; as a program, the CLI.

  python -m resnet_jax.analyze --workdir=runs/digits_resnet56 --analysis=all

Loads the run's config, data and latest checkpoint, computes the requested analyses on the test
split (BN in eval mode), and writes `analysis.json` and the figures (`figures/*.png|svg`) into the
workdir. Every array in analysis.json is a plain list; `load_analysis` reads it back.
"""
import dataclasses
import os
import types
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
import tqdm

from resnet_jax import analysis, checkpoint, metrics_io, plots, train
from resnet_jax.models import blocks, surgery

ANALYSES = ("response_std", "lesion", "paths")
ANALYSIS_FILE = "analysis.json"


@dataclasses.dataclass(frozen=True)
class Settings:
  """How much work each analysis does (the defaults suit a CPU and a digits run).

  num_images: test images used by response_std and the lesions (0: the whole test split).
  path_images: test images for the path-gradient analyses ((n+1) stacked copies are made).
  samples_per_length: sampled single paths per length (Veit used about 1000).
  lesion_samples: random subsets / orders per point of the deletion and reorder sweeps.
  """
  num_images: int = 0
  path_images: int = 32
  samples_per_length: int = 100
  lesion_samples: int = 20
  seed: int = 0


def is_residual(model) -> bool:
  return getattr(model, "block_cls", None) is not blocks.PlainBlock


def load_run(workdir: str):
  """(config, dataset, model, variables) of the run in `workdir`, at its latest checkpoint."""
  path = os.path.join(workdir, metrics_io.CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{workdir} holds no run ({metrics_io.CONFIG_FILE} is missing)")
  config = ml_collections.ConfigDict(metrics_io.read_json(path))
  config.lr_boundaries = tuple(config.lr_boundaries)
  dataset = train.load_data(config)
  model = train.build_model(config, dataset.num_classes)
  mngr = checkpoint.manager(workdir)
  restored = checkpoint.restore_saved(mngr)  # FileNotFoundError where the run saved none
  variables = {"params": restored["params"], "batch_stats": restored["batch_stats"]}
  return config, dataset, model, variables


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


def compute(model, variables, images, labels, analyses: Sequence[str], settings: Settings,
            progress: bool = True) -> dict[str, Any]:
  """The requested analyses of one model, as JSON-ready dicts."""
  unknown = sorted(set(analyses) - set(ANALYSES))
  if unknown:
    raise ValueError(f"unknown analyses {unknown}; choose from {ANALYSES} or 'all'")
  if settings.num_images:
    images, labels = images[:settings.num_images], labels[:settings.num_images]
  key = jax.random.key(settings.seed)
  residual = is_residual(model)
  stages = [a for a in ANALYSES if a in analyses and (a != "paths" or residual)]
  out: dict[str, Any] = {"num_blocks": model.num_blocks, "block_names": model.block_names(),
                         "residual": residual}
  bar = tqdm.tqdm(stages, desc="analyses", disable=not progress, unit="analysis")
  for stage in bar:
    bar.set_postfix_str(stage)
    if stage == "response_std":
      out["response_std"] = analysis.response_std(model, variables, images)
    elif stage == "lesion":
      n = model.num_blocks
      ks = sorted({k for k in (0, 1, 2, n // 4, n // 2, (3 * n) // 4, n) if 0 <= k <= n})
      out["lesion_single"] = analysis.lesion_single(model, variables, images, labels)
      out["lesion_baseline"] = float(analysis.lesion_errors(
          model, variables, images, labels, np.ones((1, n), np.float32))[0])
      out["lesion_k"] = analysis.lesion_k(model, variables, images, labels, ks,
                                          settings.lesion_samples, jax.random.fold_in(key, 1))
      if residual and any(c > 2 for c in surgery.stage_block_counts(model)):
        swaps = sorted({1, 2, 4, 8, max(1, n // 2)})
        out["lesion_reorder"] = analysis.lesion_reorder(
            model, variables, images, labels, swaps, settings.lesion_samples,
            jax.random.fold_in(key, 2))
    elif stage == "paths":
      few_images, few_labels = images[:settings.path_images], labels[:settings.path_images]
      sampled = analysis.sampled_path_gradients(
          model, variables, few_images, few_labels, jax.random.fold_in(key, 3),
          samples_per_length=settings.samples_per_length)
      exact = analysis.exact_path_gradients(model, variables, few_images, few_labels)
      out["paths_sampled"] = sampled
      out["paths_exact"] = {f.name: getattr(exact, f.name) for f in dataclasses.fields(exact)
                            if f.name != "grads"}  # the [n+1, N, H, W, C] sums stay in memory
      out["effective_paths_sampled"] = analysis.effective_paths(sampled.total)
      out["effective_paths_exact"] = analysis.effective_paths(exact.norm)
  return _jsonable(out)


def as_namespace(result: dict[str, Any] | None):
  """A JSON analysis result with array attributes, as the plot functions take it."""
  if result is None:
    return None
  return types.SimpleNamespace(**{k: np.asarray(v) if isinstance(v, list) else v
                                  for k, v in result.items()})


def draw_figures(name: str, result: dict[str, Any], history: list[dict[str, Any]],
                 figures_dir: str) -> list[str]:
  """The figures of one run; returns the PNG paths written."""
  written = []

  def out(stem):
    written.append(os.path.join(figures_dir, stem + ".png"))
    return os.path.join(figures_dir, stem)

  if history:
    plots.plot_training_curves({name: history}, out("training_curves"))
  if "response_std" in result:
    plots.plot_response_std({name: result["response_std"]}, out("response_std"))
  if "lesion_single" in result:
    plots.plot_lesion_single({name: result["lesion_single"]}, out("lesion_single"),
                             baselines={name: result["lesion_baseline"]})
    plots.plot_lesion_k_and_reorder(as_namespace(result.get("lesion_k")),
                                    as_namespace(result.get("lesion_reorder")),
                                    out("lesion_k_reorder"))
  if "paths_sampled" in result:
    plots.plot_path_length_distribution(result["num_blocks"], out("path_lengths"))
    plots.plot_path_gradients(as_namespace(result["paths_sampled"]), out("path_gradients"),
                              exact=as_namespace(result["paths_exact"]))
  return written


def analyze_run(workdir: str, analyses: Sequence[str] = ANALYSES,
                settings: Settings = Settings(), progress: bool = True) -> dict[str, Any]:
  """Analyses the run in `workdir`; writes analysis.json and figures/ there; returns the dict."""
  config, dataset, model, variables = load_run(workdir)
  result = compute(model, variables, dataset.test_images, dataset.test_labels, analyses,
                   settings, progress)
  result["model"] = config.model
  result["settings"] = dataclasses.asdict(settings)
  metrics_io.write_json(os.path.join(workdir, ANALYSIS_FILE), result)
  result["figures"] = draw_figures(config.model, result, metrics_io.read_metrics(workdir),
                                   os.path.join(workdir, "figures"))
  return result


def load_analysis(workdir: str) -> dict[str, Any]:
  return metrics_io.read_json(os.path.join(workdir, ANALYSIS_FILE))


if __name__ == "__main__":
  from resnet_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run_analyze()
