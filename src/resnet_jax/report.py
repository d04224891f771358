"""What an experiment reports: summary.json (per model, statistics over seeds), report.md with its
tables, and the comparison figures."""
import os
from typing import Any

import ml_collections
import numpy as np

from resnet_jax import analysis, metrics_io, plots

SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"


def _stats(values: list[float]) -> dict[str, float]:
  a = np.asarray([v for v in values if v is not None], np.float64)
  if not a.size:
    return {"median": None, "mean": None, "std": None, "n": 0}
  return {"median": float(np.median(a)), "mean": float(a.mean()), "std": float(a.std()),
          "n": int(a.size)}


def one_block_lesion(result: dict[str, Any]) -> tuple[float, float | None]:
  """(mean error increase from deleting one block, that increase as a share of the way from the
  intact error to chance) of one analysis.json; the share is None for a net at chance or where
  the number of classes is not recorded (`analysis.lesion_damage`)."""
  single, intact = np.asarray(result["lesion_single"], np.float64), result["lesion_baseline"]
  damage = float("nan")
  if result.get("num_classes"):
    damage = analysis.lesion_damage(single, intact, result["num_classes"])
  return float(single.mean() - intact), None if np.isnan(damage) else damage


def _model_summary(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
  res = [r["results"] for r in per_seed]
  entry = {
      "num_params": res[0]["num_params"],
      "train_error": _stats([r["train_error"] for r in res]),
      "final_test_error": _stats([r["test_error"] for r in res]),
      "test_error_at_best_val": _stats([r["test_error_at_best_val"] for r in res]),
      "best_val_error": _stats([r["best_val_error"] for r in res]),
      "wall_time_s": float(sum(r["wall_time_s"] for r in res)),
  }
  if res[0].get("test_top5_error") is not None:
    entry["final_test_top5_error"] = _stats([r.get("test_top5_error") for r in res])
  for key in ("test_error_10crop", "test_top5_error_10crop"):
    if key in res[0]:
      entry[key] = _stats([r.get(key) for r in res])
  first = per_seed[0].get("analysis", {})
  if "lesion_single" in first:
    lesions = [one_block_lesion(r["analysis"]) for r in per_seed]
    entry["lesion_one_block_increase"] = _stats([increase for increase, _ in lesions])
    entry["lesion_one_block_damage"] = _stats([damage for _, damage in lesions])
  if "log2_num_paths" in res[0]:  # the ensemble's size (Veit et al.; Abdi & Nahavandi)
    entry["log2_num_paths"] = res[0]["log2_num_paths"]
  if "log2_num_paths" in first:
    entry["branches_per_block"] = first["branches_per_block"]
    entry["log2_num_paths"] = first["log2_num_paths"]
  if "lesion_branches" in first:
    entry["lesion_one_branch_increase"] = _stats([
        float(np.mean(r["analysis"]["lesion_branches"]) - r["analysis"]["lesion_baseline"])
        for r in per_seed])
  if "columns" in first:
    cols = [r["analysis"]["columns"] for r in per_seed]
    entry["columns_full"] = _stats([c["full"] for c in cols])
    entry["columns_alone"] = [_stats(list(errors)) for errors in zip(*(c["alone"] for c in cols))]
  for kind in ("sampled", "exact"):
    if f"effective_paths_{kind}" in first:
      entry[f"effective_paths_{kind}"] = [r["analysis"][f"effective_paths_{kind}"]
                                          for r in per_seed]
  return entry


def summarize(config: ml_collections.ConfigDict, runs: dict[tuple[int, str], dict[str, Any]],
              seeds: int) -> dict[str, Any]:
  """summary.json: per model, the median and mean ± std over seeds of each result.

  Args:
    runs: (seed, model) -> {"results": results.json, "history": metrics, "analysis": optional}.
  """
  models = {m: _model_summary([runs[(s, m)] for s in range(seeds)]) for m in config.models}
  return {"name": config.name, "title": config.title, "seeds": seeds,
          "dataset": config.train.dataset, "num_steps": config.train.num_steps, "models": models,
          "device_kind": runs[(0, config.models[0])]["results"]["device_kind"]}


def _pct(stats: dict[str, float]) -> str:
  if stats["median"] is None:
    return "n/a"
  if stats["n"] == 1:
    return f"{100 * stats['median']:.2f}"
  return (f"{100 * stats['median']:.2f} ({100 * stats['mean']:.2f} ± "
          f"{100 * stats['std']:.2f})")


def _ranges(entry: dict[str, Any], key: str) -> str:
  return ", ".join(f"{lo}–{hi}" for lo, hi in entry.get(key, [])) or "n/a"


def _one_block(entry: dict[str, Any]) -> str:
  if "lesion_one_block_increase" not in entry:
    return "n/a"
  increase, damage = entry["lesion_one_block_increase"], entry["lesion_one_block_damage"]
  share = "n/a: at chance" if damage["median"] is None else f"{100 * damage['median']:.0f}%"
  return f"{100 * increase['median']:+.2f} ({share})"


def _analysis_table(summary: dict[str, Any]) -> list[str]:
  extra = [(m, e) for m, e in summary["models"].items()
           if "lesion_one_block_increase" in e or "effective_paths_sampled" in e]
  if not extra:
    return []
  lines = ["", "| model | deleting one block: error increase, points (share of the way to "
           "chance) | effective paths, Veit's sampled T(k) | effective paths, exact ‖G(k)‖ |",
           "|---|---|---|---|"]
  for model, e in extra:
    lines.append(f"| {model} | {_one_block(e)} | {_ranges(e, 'effective_paths_sampled')} | "
                 f"{_ranges(e, 'effective_paths_exact')} |")
  return lines + [
      "", "Deleting one block (Veit et al. 2016, Fig. 3): the mean over blocks of the test error "
      "after deleting that block alone minus the intact net's error, in percentage points; in "
      "parentheses the same increase as a share of the intact net's distance to chance error "
      "(1 − 1/classes): 0% no effect, 100% down to chance. A net that is already at chance (intact "
      "error ≥ 90% of chance) cannot get worse, which says nothing of its robustness: n/a.", "",
      "Effective paths: the shortest window of path lengths (in blocks) holding 90% of Veit's "
      "T(k) = C(n,k)·E‖g_path(k)‖ (Veit et al. 2016, Fig. 6c), and of Σₖ‖G(k)‖, the norms of "
      "the exact per-length gradients (which add up to the gradient; their norms do not add up "
      "to its norm). Each run's analysis.json gives the share of Veit's own window, 5–17 blocks, "
      "under `path_windows`."]


def _branches_table(summary: dict[str, Any]) -> list[str]:
  """Multi-residual nets (Abdi & Nahavandi 2016): the paths each model offers, and the damage
  of deleting one branch of one block."""
  multi = [(m, e) for m, e in summary["models"].items() if "branches_per_block" in e]
  if not any(e["branches_per_block"] > 1 for _, e in multi):
    return []
  lines = ["", "| model | branches per block | log2 of the number of paths | deleting one branch: "
           "error increase, points |", "|---|---|---|---|"]
  for model, e in multi:
    increase = e.get("lesion_one_branch_increase", {"median": None})
    shown = "n/a" if increase["median"] is None else f"{100 * increase['median']:+.2f}"
    lines.append(f"| {model} | {e['branches_per_block']} | {e['log2_num_paths']:.1f} | {shown} |")
  return lines + [
      "", "A block of k branches offers k + 1 routes, so n blocks give (k + 1)^n paths (log2: "
      "n·log2(k + 1)). Deleting one branch: the mean over every branch of every block of the "
      "test error after deleting that branch alone minus the intact net's error."]


def _columns_table(summary: dict[str, Any]) -> list[str]:
  fractal = [(m, e) for m, e in summary["models"].items() if "columns_full" in e]
  if not fractal:
    return []
  lines = ["", "| model | every column | each column alone, shallowest to deepest |",
           "|---|---|---|"]
  for model, e in fractal:
    alone = " / ".join(_pct(c) for c in e["columns_alone"])
    lines.append(f"| {model} | {_pct(e['columns_full'])} | {alone} |")
  return lines + [
      "", "FractalNet's columns (Larsson et al. 2017, §4.3): test error of the net and of each "
      "column alone (its joins keep only that column). The paper's 20-layer net with drop-path "
      "and dropout: every column 7.33 vs deepest column alone 7.27 (C10), 4.60 vs 4.68 (C10+), "
      "28.20 vs 29.05 (C100). Each run's analysis.json also has the net as columns are removed "
      "deepest-first and shallowest-first."]


# He et al. 2015, Tables 2 and 3: ImageNet validation top-1 / top-5 error %, 10 crops, by the
# experiments' model entries (ResNet-18/34 with option A shortcuts, as Table 2).
HE2015_IMAGENET_10CROP = {
    "plain18_imagenet": (27.94, None), "plain34_imagenet": (28.54, 10.02),
    "resnet18_imagenet:A": (27.88, None), "resnet34_imagenet:A": (25.03, 7.76),
    "resnet34_imagenet:B": (24.52, 7.46), "resnet34_imagenet:C": (24.19, 7.40),
    "resnet50_imagenet": (22.85, 6.71), "resnet101_imagenet": (21.75, 6.05),
    "resnet152_imagenet": (21.43, 5.71),
}


def _crops_table(summary: dict[str, Any]) -> list[str]:
  """He 2015 Tables 2-3: the multi-crop test errors beside the paper's."""
  rows = [(m, e) for m, e in summary["models"].items() if "test_error_10crop" in e]
  if not rows:
    return []
  lines = ["", "| model | top-1, 10 crops | top-5, 10 crops | top-1, centre crop | paper top-1 / "
           "top-5, 10 crops (He 2015) |", "|---|---|---|---|---|"]
  for model, e in rows:
    paper = HE2015_IMAGENET_10CROP.get(model)
    shown = "n/a" if paper is None else " / ".join("–" if v is None else f"{v:.2f}" for v in paper)
    lines.append(f"| {model} | {_pct(e['test_error_10crop'])} | "
                 f"{_pct(e['test_top5_error_10crop'])} | {_pct(e['final_test_error'])} | "
                 f"{shown} |")
  return lines + [
      "", "10 crops (He et al. 2015 §3.4): the four corners and the centre of the image resized to "
      "the test scale, and their mirror images; an image's prediction is the mean of its crops' "
      "softmax scores. The paper's numbers are ImageNet's (120 epochs); a stand-in data set "
      "(the fixture, Fashion-MNIST as JPEGs) or a short schedule can show the ordering at most."]


def write_report(summary: dict[str, Any], figures: list[str], workdir: str) -> None:
  """report.md: the results table, the analysis table, and the figures (PNG paths)."""
  seeds = summary["seeds"]
  how = "median (mean ± std) over %d seeds" % seeds if seeds > 1 else "one seed"
  lines = [f"# {summary['title']}", "",
           f"Data set `{summary['dataset']}`, {summary['num_steps']} steps, {how}, device "
           f"{summary['device_kind']}. Errors in %. Train error: the final model's error on the "
           "whole training split (no augmentation, BN in eval mode; runs of earlier versions: "
           "the mean over the last augmented training batches). Test error (best val): at the "
           "evaluation step of lowest validation error; final: at the last step.", "",
           "| model | params | train error | test error (best val) | final test error |",
           "|---|---|---|---|---|"]
  for model, e in summary["models"].items():
    lines.append(f"| {model} | {e['num_params']:,} | {_pct(e['train_error'])} | "
                 f"{_pct(e['test_error_at_best_val'])} | {_pct(e['final_test_error'])} |")
  lines += (_crops_table(summary) + _analysis_table(summary) + _branches_table(summary)
            + _columns_table(summary))
  names = [os.path.basename(f) for f in figures]
  lines += [""] + [f"![{os.path.splitext(f)[0]}](figures/{f})" for f in names]
  with open(os.path.join(workdir, REPORT_FILE), "w") as f:
    f.write("\n".join(lines) + "\n")


def report(config: ml_collections.ConfigDict, runs: dict[tuple[int, str], dict[str, Any]],
           seeds: int, workdir: str) -> dict[str, Any]:
  """Writes summary.json, the figures across the models of seed 0, and report.md."""
  summary = summarize(config, runs, seeds)
  metrics_io.write_json(os.path.join(workdir, SUMMARY_FILE), summary)
  seed0 = {m: runs[(0, m)] for m in config.models}
  # Streamed runs (ImageNet) plot against epochs, as He 2015 Fig. 4.
  examples = seed0[config.models[0]]["results"].get("num_train_examples")
  figures = plots.plot_runs({m: r["history"] for m, r in seed0.items()},
                            {m: r["analysis"] for m, r in seed0.items() if "analysis" in r},
                            os.path.join(workdir, "figures"),
                            steps_per_epoch=examples / config.train.batch_size
                            if examples and config.train.dataset == "imagenet" else None)
  if config.name == "ensemble_size":
    figures.append(plots.plot_ensemble_size(
        {m: (e["log2_num_paths"], e["test_error_at_best_val"]["median"], e["num_params"])
         for m, e in summary["models"].items()},
        os.path.join(workdir, "figures", "ensemble_size")))
  write_report(summary, figures, workdir)
  return summary
