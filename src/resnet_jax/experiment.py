"""An experiment: several models (and seeds) trained with one recipe, analysed, and compared.

  python -m resnet_jax.experiment --config=experiments/configs/degradation.py:digits --workdir=runs/degradation

Each run lives in WORKDIR/seed{S}/{model} and is an ordinary training workdir (rerunning resumes
it). The experiment then writes WORKDIR/summary.json, WORKDIR/report.md and the comparison figures
WORKDIR/figures/*.png|svg. With several seeds, each model's numbers are the median and mean±std
over seeds of the test error *at the step of best validation error* (never chosen by test error).
"""
import copy
import dataclasses
import os
from typing import Any

import ml_collections
import numpy as np

from resnet_jax import analyze, configs, metrics_io, plots, train

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"


def experiment_config(name: str, models, *, dataset: str, smoke: bool = False,
                      analyses=(), title: str = "") -> ml_collections.ConfigDict:
  """The config of an experiment: a training recipe per model plus the analyses to run."""
  c = ml_collections.ConfigDict()
  c.name = name
  c.title = title or name
  c.models = tuple(models)
  c.train = configs.recipe(dataset, c.models[0])
  if smoke:
    configs.smoke(c.train)
  c.analyses = tuple(analyses)
  c.analysis = ml_collections.ConfigDict(dataclasses.asdict(analyze.Settings()))
  if smoke:
    c.analysis.update(dict(num_images=16, path_images=2, samples_per_length=2, lesion_samples=2))
  return c


def split_spec(spec: str) -> tuple[str, str]:
  """"resnet32:B" -> ("resnet32", "B"): a model name and an optional shortcut option."""
  name, _, shortcut = spec.partition(":")
  return name, shortcut


def run_dir(workdir: str, seed: int, spec: str) -> str:
  return os.path.join(workdir, f"seed{seed}", spec.replace(":", "_"))


def run_experiment(config: ml_collections.ConfigDict, workdir: str, *, seeds: int = 1,
                   progress: bool = True, runs_only: bool = False) -> dict[str, Any] | None:
  """Trains and analyses every (seed, model), then writes summary.json, report.md, figures/.

  With runs_only it writes no summary, report or figures and returns None: several processes
  can then train the models of one workdir side by side (`resnet_jax.concurrent_runs`).
  """
  if seeds < 1:
    raise ValueError(f"seeds must be >= 1, got {seeds}")
  settings = analyze.Settings(**config.analysis.to_dict())
  runs = {}
  for seed in range(seeds):
    for model in config.models:
      train_config = copy.deepcopy(config.train)
      train_config.model, train_config.shortcut = split_spec(model)
      train_config.warmup = configs.warmup_for(train_config.model, config.train.warmup)
      train_config.seed = seed
      directory = run_dir(workdir, seed, model)
      print(f"== {config.name}: {model}, seed {seed} -> {directory}", flush=True)
      results = train.train_and_evaluate(train_config, directory, progress=progress)
      result = {"results": results, "history": metrics_io.read_metrics(directory)}
      if config.analyses:
        result["analysis"] = analyze.analyze_run(directory, config.analyses, settings, progress)
      runs[(seed, model)] = result
  if runs_only:
    return None
  summary = summarize(config, runs, seeds)
  metrics_io.write_json(os.path.join(workdir, SUMMARY_FILE), summary)
  figures = compare_figures(config, runs, os.path.join(workdir, "figures"))
  write_report(config, summary, figures, workdir)
  return summary


def _stats(values: list[float]) -> dict[str, float]:
  a = np.asarray([v for v in values if v is not None], np.float64)
  if not a.size:
    return {"median": None, "mean": None, "std": None, "n": 0}
  return {"median": float(np.median(a)), "mean": float(a.mean()), "std": float(a.std()),
          "n": int(a.size)}


def lesion_slope(lesion_k: dict[str, Any]) -> float:
  """Least-squares slope of mean error vs number of deleted blocks (error per deleted block)."""
  return float(np.polyfit(np.asarray(lesion_k["ks"], float), np.asarray(lesion_k["mean"]), 1)[0])


def summarize(config, runs, seeds: int) -> dict[str, Any]:
  models = {}
  for model in config.models:
    per_seed = [runs[(s, model)] for s in range(seeds)]
    res = [r["results"] for r in per_seed]
    entry = {
        "num_params": res[0]["num_params"],
        "train_error": _stats([r["train_error"] for r in res]),
        "final_test_error": _stats([r["test_error"] for r in res]),
        "test_error_at_best_val": _stats([r["test_error_at_best_val"] for r in res]),
        "best_val_error": _stats([r["best_val_error"] for r in res]),
        "wall_time_s": float(sum(r["wall_time_s"] for r in res)),
    }
    first = per_seed[0].get("analysis", {})
    if "lesion_k" in first:
      entry["lesion_slope"] = _stats([lesion_slope(r["analysis"]["lesion_k"]) for r in per_seed])
    for kind in ("sampled", "exact"):
      if f"effective_paths_{kind}" in first:
        entry[f"effective_paths_{kind}"] = [r["analysis"][f"effective_paths_{kind}"]
                                            for r in per_seed]
    models[model] = entry
  return {"name": config.name, "title": config.title, "seeds": seeds,
          "dataset": config.train.dataset, "num_steps": config.train.num_steps, "models": models,
          "device_kind": runs[(0, config.models[0])]["results"]["device_kind"]}


def compare_figures(config, runs, figures_dir: str) -> list[str]:
  """Figures across the models of seed 0."""
  seed0 = {m: runs[(0, m)] for m in config.models}
  written = []

  def out(stem):
    written.append(stem + ".png")
    return os.path.join(figures_dir, stem)

  plots.plot_training_curves({m: r["history"] for m, r in seed0.items()}, out("training_curves"))
  analyses = {m: r["analysis"] for m, r in seed0.items() if "analysis" in r}
  stds = {m: a["response_std"] for m, a in analyses.items() if "response_std" in a}
  if stds:
    plots.plot_response_std(stds, out("response_std"))
  single = {m: a["lesion_single"] for m, a in analyses.items() if "lesion_single" in a}
  if single:
    plots.plot_lesion_single(single, out("lesion_single"),
                             baselines={m: analyses[m]["lesion_baseline"] for m in single})
  deep_residual = [m for m, a in analyses.items() if "lesion_k" in a and a["residual"]]
  if deep_residual:
    a = analyses[deep_residual[-1]]
    plots.plot_lesion_k_and_reorder(analyze.as_namespace(a.get("lesion_k")),
                                    analyze.as_namespace(a.get("lesion_reorder")),
                                    out("lesion_k_reorder"))
  with_paths = [m for m, a in analyses.items() if "paths_sampled" in a]
  if with_paths:
    a = analyses[with_paths[-1]]
    plots.plot_path_gradients(analyze.as_namespace(a["paths_sampled"]), out("path_gradients"),
                              exact=analyze.as_namespace(a["paths_exact"]))
  return written


def _pct(stats: dict[str, float]) -> str:
  if stats["median"] is None:
    return "n/a"
  if stats["n"] == 1:
    return f"{100 * stats['median']:.2f}"
  return (f"{100 * stats['median']:.2f} ({100 * stats['mean']:.2f} ± "
          f"{100 * stats['std']:.2f})")


def write_report(config, summary: dict[str, Any], figures: list[str], workdir: str) -> None:
  seeds = summary["seeds"]
  how = "median (mean ± std) over %d seeds" % seeds if seeds > 1 else "one seed"
  lines = [f"# {summary['title']}", "",
           f"Data set `{summary['dataset']}`, {summary['num_steps']} steps, {how}, device "
           f"{summary['device_kind']}. Errors in %. Train error: the mean over the last logged "
           "training batches (augmented, BN in training mode). Test error (best val): at the "
           "evaluation step of lowest validation error; final: at the last step.", "",
           "| model | params | train error | test error (best val) | final test error |",
           "|---|---|---|---|---|"]
  for model, e in summary["models"].items():
    lines.append(f"| {model} | {e['num_params']:,} | {_pct(e['train_error'])} | "
                 f"{_pct(e['test_error_at_best_val'])} | {_pct(e['final_test_error'])} |")
  extra = [(m, e) for m, e in summary["models"].items()
           if "lesion_slope" in e or "effective_paths_sampled" in e]
  if extra:
    lines += ["", "| model | lesion slope (error %/deleted block) | effective paths, Veit's "
              "sampled T(k) | effective paths, exact ‖G(k)‖ |", "|---|---|---|---|"]
    for model, e in extra:
      slope = e.get("lesion_slope")
      slope_text = f"{100 * slope['median']:.2f}" if slope else "n/a"
      eff = lambda key: ", ".join(f"{lo}–{hi}" for lo, hi in e.get(key, [])) or "n/a"
      lines.append(f"| {model} | {slope_text} | {eff('effective_paths_sampled')} | "
                   f"{eff('effective_paths_exact')} |")
    lines += ["", "Effective paths: the shortest range of path lengths (in blocks) holding 90% "
              "of the total gradient magnitude (Veit et al. 2016, Fig. 6c)."]
  lines += [""] + [f"![{os.path.splitext(f)[0]}](figures/{f})" for f in figures]
  with open(os.path.join(workdir, REPORT_FILE), "w") as f:
    f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
  from resnet_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run_experiment()


def parse_arg(arg: str) -> tuple[str, bool]:
  """"DATASET[,smoke]" -> (dataset, smoke)."""
  parts = [p for p in (arg or "digits").split(",") if p]
  smoke = "smoke" in parts
  rest = [p for p in parts if p != "smoke"]
  if len(rest) > 1 or (rest and rest[0] not in configs.RECIPE_DATASETS):
    raise ValueError(f"ARG must be DATASET[,smoke] with DATASET one of "
                     f"{configs.RECIPE_DATASETS}, got {arg!r}")
  return (rest[0] if rest else "digits"), smoke
