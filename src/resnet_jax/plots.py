"""Figures of the papers, from the outputs of training and of `resnet_jax.analysis`.

Every function returns a matplotlib Figure and, given `path`, writes it as PNG and SVG
(`path` with or without a ".png"/".svg" suffix: "figs/fig7" -> figs/fig7.png, figs/fig7.svg).
Figures are built with the object API on an Agg canvas: no pyplot, no global backend switch, no
figure left open. Errors are fractions in [0, 1] on input and are drawn in percent.
"""
import os
import pathlib
import types
from typing import Any, Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from resnet_jax.analysis import effective_paths, path_length_distribution

_SUFFIXES = (".png", ".svg")
# What `plot_runs` may write into a figures directory, and so may remove when nothing backs it.
RUN_FIGURES = ("training_curves", "response_std", "lesion_single", "lesion_k_reorder",
               "path_lengths", "path_gradients", "columns")


def _figure(ncols: int, nrows: int = 1, width: float = 4.5, height: float = 3.4) -> Figure:
  fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
  FigureCanvasAgg(fig)
  return fig


def _finish(fig: Figure, path: str | pathlib.Path | None) -> Figure:
  if path is not None:
    path = pathlib.Path(path)
    base = path.with_suffix("") if path.suffix in _SUFFIXES else path
    base.parent.mkdir(parents=True, exist_ok=True)
    for suffix in _SUFFIXES:
      fig.savefig(base.with_name(base.name + suffix), dpi=150)
  return fig


def _check_nonempty(name: str, mapping: Mapping) -> None:
  if not mapping:
    raise ValueError(f"{name} is empty: nothing to plot")


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
  rows = [(r["step"], r[key]) for r in records if key in r and r[key] is not None]
  if not rows:
    return np.zeros(0), np.zeros(0)
  steps, values = np.asarray(rows, np.float64).T
  return steps, 100.0 * values


def plot_training_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]],
                         path: str | pathlib.Path | None = None, *,
                         panels: Mapping[str, Sequence[str]] | None = None,
                         steps_per_epoch: float | None = None) -> Figure:
  """He et al. 2015 Figs. 4 and 6: error vs step, thin dashed = training, bold = test.

  Args:
    histories: model name -> list of metric dicts with "step", "train_error" and "test_error" or
      "val_error" (fractions; a dict may lack some keys, e.g. when evaluation is less frequent).
    path: where to save (PNG and SVG), or None.
    panels: panel title -> model names. Default: "plain" (names starting with "plain") and
      "residual" side by side when both kinds are present, else one panel.
    steps_per_epoch: plots against epochs (steps / steps_per_epoch) where given, else steps.
  Raises:
    ValueError: no histories, a record without "step", a history without any error values, or a
      panel naming an unknown model.
  """
  _check_nonempty("histories", histories)
  for name, records in histories.items():
    if any("step" not in r for r in records):
      raise ValueError(f"every record of {name!r} needs a 'step'")
    if not any(k in r for r in records for k in ("train_error", "test_error", "val_error")):
      raise ValueError(f"{name!r} has no train_error, test_error or val_error values")
  if panels is None:
    plain = [n for n in histories if n.startswith("plain")]
    residual = [n for n in histories if not n.startswith("plain")]
    panels = {"plain": plain, "residual": residual} if plain and residual else {"": list(histories)}
  unknown = sorted({n for names in panels.values() for n in names} - set(histories))
  if unknown:
    raise ValueError(f"panels name unknown models {unknown}")
  fig = _figure(len(panels))
  axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
  scale = 1.0 if steps_per_epoch is None else 1.0 / steps_per_epoch
  for ax, (title, names) in zip(axes, panels.items(), strict=True):
    for i, name in enumerate(names):
      color = f"C{i}"
      steps, train = _series(histories[name], "train_error")
      ax.plot(steps * scale, train, "--", color=color, linewidth=0.8)
      for key in ("test_error", "val_error"):
        steps, test = _series(histories[name], key)
        if steps.size:
          ax.plot(steps * scale, test, "-", color=color, linewidth=2.0, label=name)
          break
    ax.set(title=title, xlabel="step" if steps_per_epoch is None else "epoch",
           ylabel="error (%)")
    ax.legend(title="bold: test, dashed: train", fontsize="small")
  return _finish(fig, path)


def plot_response_std(stds_by_model: Mapping[str, Mapping[str, float]],
                      path: str | pathlib.Path | None = None) -> Figure:
  """He et al. 2015 Fig. 7: response std per 3x3 layer, in layer order (top) and sorted (bottom).

  Args:
    stds_by_model: model name -> `analysis.response_std` output (layer name -> std).
  """
  _check_nonempty("stds_by_model", stds_by_model)
  fig = _figure(1, 2, width=7.0, height=3.0)
  top, bottom = fig.subplots(2, 1)
  for name, stds in stds_by_model.items():
    values = np.asarray(list(stds.values()), np.float64)
    index = np.arange(1, values.size + 1)
    top.plot(index, values, ".-", label=name)
    bottom.plot(index, np.sort(values)[::-1], ".-", label=name)
  top.set(xlabel="layer index (original)", ylabel="std")
  bottom.set(xlabel="layer index (sorted by magnitude)", ylabel="std")
  top.legend(fontsize="small")
  return _finish(fig, path)


def downsampling_blocks(block_names: Sequence[str]) -> list[int]:
  """1-based positions of the blocks that open a stage after the first (they downsample)."""
  return [i + 1 for i, name in enumerate(block_names)
          if name.endswith("_block1") and not name.startswith("stage1_")]


def plot_lesion_single(errors_by_model: Mapping[str, Any], path: str | pathlib.Path | None = None,
                       *, baselines: Mapping[str, float] | None = None,
                       downsampling: Sequence[int] = ()) -> Figure:
  """Veit et al. Fig. 3: test error after deleting each single block (e.g. ResNet vs plain).

  Args:
    errors_by_model: model name -> [num_blocks] errors of `analysis.lesion_single`.
    baselines: model name -> error of the intact network (drawn dashed), optional.
    downsampling: 1-based positions of the downsampling blocks, marked by dotted lines (Veit's
      peaks: these blocks matter most).
  """
  _check_nonempty("errors_by_model", errors_by_model)
  fig = _figure(1, width=6.0)
  ax = fig.subplots()
  for i, block in enumerate(downsampling):
    ax.axvline(block, color="0.6", linestyle=":", linewidth=1.0,
               label="downsampling block" if i == 0 else None)
  for i, (name, errors) in enumerate(errors_by_model.items()):
    errors = 100.0 * np.asarray(errors, np.float64).reshape(-1)
    ax.plot(np.arange(1, errors.size + 1), errors, "o-", color=f"C{i}", markersize=3,
            label=name)
    if baselines and name in baselines:
      ax.axhline(100.0 * baselines[name], color=f"C{i}", linestyle="--", linewidth=0.8)
  ax.set(xlabel="deleted block", ylabel="test error (%)", ylim=(0, None))
  ax.legend(fontsize="small")
  return _finish(fig, path)


def plot_lesion_k_and_reorder(deletion: Any = None, reorder: Any = None,
                              path: str | pathlib.Path | None = None) -> Figure:
  """Veit et al. Fig. 5: error vs number of deleted blocks (a) and vs Kendall tau (b).

  Args:
    deletion: an `analysis.LesionK` (ks, mean, std), a mapping model name -> LesionK (one curve
      each, e.g. a ResNet and its stochastic-depth twin), or None.
    reorder: an `analysis.LesionReorder` (tau, errors, swaps), or None.
  Raises:
    ValueError: both None.
  """
  parts = [p for p in (deletion, reorder) if p is not None]
  if not parts:
    raise ValueError("give a lesion_k result, a lesion_reorder result, or both")
  fig = _figure(len(parts))
  axes = list(np.atleast_1d(fig.subplots(1, len(parts))))
  if deletion is not None:
    ax = axes.pop(0)
    curves = deletion if isinstance(deletion, Mapping) else {None: deletion}
    for name, curve in curves.items():
      ax.errorbar(curve.ks, 100.0 * curve.mean, yerr=100.0 * curve.std, fmt="o-", capsize=3,
                  label=name)
    ax.set(title="deleting k blocks", xlabel="number of deleted blocks",
           ylabel="test error (%)")
    if len(curves) > 1:
      ax.legend(fontsize="small")
  if reorder is not None:
    ax = axes.pop(0)
    ax.scatter(reorder.tau.reshape(-1), 100.0 * reorder.errors.reshape(-1), s=8, alpha=0.4)
    ax.plot(reorder.tau.mean(axis=1), 100.0 * reorder.errors.mean(axis=1), "o-", color="C1",
            label="mean per number of swaps")
    ax.set(title="reordering blocks", xlabel="Kendall tau", ylabel="test error (%)")
    ax.invert_xaxis()  # tau = 1 (original order) on the left, as error grows to the right
    ax.legend(fontsize="small")
  return _finish(fig, path)


def plot_path_length_distribution(num_blocks: int, path: str | pathlib.Path | None = None,
                                  branches: int = 1) -> Figure:
  """Veit et al. Fig. 6a: the binomial distribution of path lengths of an n-block net (of the
  number of branches taken, with `branches` per block)."""
  fig = _figure(1)
  _draw_distribution(fig.subplots(), num_blocks, branches)
  return _finish(fig, path)


def _draw_distribution(ax, num_blocks: int, branches: int = 1) -> None:
  dist = path_length_distribution(num_blocks, branches)
  ax.bar(np.arange(num_blocks + 1), dist, width=1.0, color="C0")
  ax.set(title="distribution of path length", xlabel="path length", ylabel="fraction of paths")


def plot_path_gradients(sampled: Any = None, path: str | pathlib.Path | None = None, *,
                        exact: Any = None, fraction: float = 0.9) -> Figure:
  """Veit et al. Fig. 6: path lengths (a), gradient per path (b), gradient per path length.

  (b) is Veit's mean single-path norm E||g_path(k)|| (sampled) and, if `exact` is given, the norm
  of the mean path gradient ||G(k)|| / C(n, k) (dashed; <= the former). Then, each on its own
  axis: Veit's total T(k) = C(n, k) E||g_path(k)||, a sum of norms over the paths of length k (if
  `sampled` is given), and the exact ||G(k)||, the norm of the gradient summed over the paths of
  length k (if `exact` is given). The G(k) add up to the gradient, their norms do not add up to
  its norm: ||G(k)|| is drawn as it is, not as a share of a total. The shaded band is the
  shortest window of lengths holding `fraction` of T (`analysis.effective_paths`), or of
  sum_k ||G(k)|| when only `exact` is given; the legend names the rule.

  Args:
    sampled: an `analysis.SampledPathGradients`, or None.
    exact: an `analysis.ExactPathGradients`, or None.
  Returns:
    A Figure with 3 panels (one of the two results) or 4 (both).
  Raises:
    ValueError: both None, or fraction outside (0, 1].
  """
  if sampled is None and exact is None:
    raise ValueError("give a sampled_path_gradients result, an exact_path_gradients one, or both")
  n = sampled.num_blocks if sampled is not None else int(exact.lengths[-1])
  curves = []  # (title, y label, what the band's rule sums, lengths, values): a panel each
  if sampled is not None:
    curves.append(("Veit's total per path length", "T(k) = C(n,k) E||g_path(k)||", "T(k)",
                   sampled.lengths, sampled.total))
  if exact is not None:
    curves.append(("norm of the summed gradient (exact)", "||G(k)||,  G(k) = sum_{|p|=k} g_p",
                   "sum_k ||G(k)||", exact.lengths, exact.norm))
  fig = _figure(2 + len(curves))
  ax_a, ax_b, *panels = fig.subplots(1, 2 + len(curves))
  _draw_distribution(ax_a, n, getattr(sampled, "branches_per_block", 1)
                     if sampled is not None else 1)
  if sampled is not None:
    ax_b.plot(sampled.lengths, sampled.mean_norm, "o-", markersize=3, label="E||g_path|| (sampled)")
  if exact is not None:
    ax_b.plot(exact.lengths, exact.norm / exact.num_paths, "--", label="||G(k)|| / C(n,k) (exact)")
  ax_b.set(title="gradient magnitude per path", xlabel="path length", ylabel="gradient norm",
           yscale="log")
  ax_b.legend(fontsize="small")
  for i, (ax, (title, ylabel, _, lengths, values)) in enumerate(zip(panels, curves, strict=True)):
    ax.plot(lengths, values, "o-", color=f"C{i}", markersize=3)
    ax.set(title=title, xlabel="path length", ylabel=ylabel)
  _, _, symbol, lengths, values = curves[0]
  lo, hi = effective_paths(values, fraction)
  panels[0].axvspan(lengths[lo] - 0.5, lengths[hi] + 0.5, color="C2", alpha=0.2,
                    label=f"shortest window holding {fraction:.0%} of {symbol}: "
                    f"lengths {lengths[lo]}-{lengths[hi]}")
  panels[0].legend(fontsize="x-small", loc="best")
  return _finish(fig, path)


def plot_ensemble_size(points: Mapping[str, tuple[float, float, int]],
                       path: str | pathlib.Path) -> str:
  """Test error against the size of the implicit ensemble: log2 of each model's number of paths
  (depth adds blocks, multi-residual nets branches, DenseNets connections), its parameter count
  written beside each point so that size is not confused with the number of paths.

  Args:
    points: model name -> (log2 number of paths, test error as a fraction, parameters).
    path: the figure's path without suffix.
  Returns:
    the PNG path.
  """
  _check_nonempty("points", points)
  fig = _figure(1, width=6.5, height=4.2)
  ax = fig.subplots()
  for i, (name, (log2_paths, error, params)) in enumerate(points.items()):
    if error is None:
      continue
    ax.plot(log2_paths, 100.0 * error, "o", color=f"C{i % 10}", label=name)
    ax.annotate(f"{params / 1e6:.2f}M" if params >= 1e5 else f"{params / 1e3:.0f}k",
                (log2_paths, 100.0 * error), textcoords="offset points", xytext=(4, 4),
                fontsize="x-small")
  ax.set(xlabel="log2 (number of paths)", ylabel="test error (%)",
         title="ensemble size vs error (parameters beside each point)")
  ax.legend(fontsize="x-small", ncols=2)
  _finish(fig, path)
  return str(path) + ".png"


def plot_columns(columns_by_model: Mapping[str, Any],
                 path: str | pathlib.Path | None = None) -> Figure:
  """Larsson et al. 2017's column view: (a) each column alone, (b) columns removed one by one.

  Args:
    columns_by_model: model name -> `analysis.ColumnAnalysis` (or its JSON dict: full, alone,
      deepest_removed, shallowest_removed). The full net is drawn dashed in (a).
  """
  _check_nonempty("columns_by_model", columns_by_model)
  fig = _figure(2)
  alone_ax, removed_ax = fig.subplots(1, 2)
  for i, (name, result) in enumerate(columns_by_model.items()):
    r = as_namespace(result if isinstance(result, Mapping) else vars(result))
    columns = np.arange(1, np.size(r.alone) + 1)
    alone_ax.plot(columns, 100.0 * np.asarray(r.alone), "o-", color=f"C{i}", label=name)
    alone_ax.axhline(100.0 * r.full, color=f"C{i}", linestyle="--", linewidth=0.8)
    removed = np.arange(np.size(r.alone))
    removed_ax.plot(removed, 100.0 * np.asarray(r.deepest_removed), "o-", color=f"C{i}",
                    label=f"{name}: deepest first")
    removed_ax.plot(removed, 100.0 * np.asarray(r.shallowest_removed), "s--", color=f"C{i}",
                    label=f"{name}: shallowest first")
  alone_ax.set(title="one column alone (dashed: every column)",
               xlabel="column (1 = shallowest)", ylabel="test error (%)", xticks=columns)
  removed_ax.set(title="removing columns", xlabel="columns removed", ylabel="test error (%)",
                 xticks=removed)
  alone_ax.legend(fontsize="small")
  removed_ax.legend(fontsize="x-small")
  return _finish(fig, path)


def as_namespace(result: Mapping[str, Any] | None) -> types.SimpleNamespace | None:
  """An analysis result read back from JSON, with its lists as arrays: what the plots take."""
  if result is None:
    return None
  return types.SimpleNamespace(**{k: np.asarray(v) if isinstance(v, list) else v
                                  for k, v in result.items()})


def plot_runs(histories: Mapping[str, Sequence[Mapping[str, Any]]],
              analyses: Mapping[str, Mapping[str, Any]], figures_dir: str, *,
              steps_per_epoch: float | None = None) -> list[str]:
  """Every figure of one run or of several compared (an experiment); returns the PNG paths.

  Args:
    histories: model -> its metrics records (`metrics_io.read_metrics`); empty ones are skipped.
    analyses: model -> its analysis.json dict (`resnet_jax.analyze`), for the models analysed.
    figures_dir: where the PNG and SVG files go.
    steps_per_epoch: the training curves against epochs where given (`plot_training_curves`).
  The k-deletion, reorder and path figures show one model: the last residual one that has them
  (the deepest, in the experiments' order), else the last one. Files of RUN_FIGURES that this call
  did not draw are removed: no figure outlives the results it was drawn from.
  """
  written = []

  def out(stem):
    written.append(os.path.join(figures_dir, stem + ".png"))
    return os.path.join(figures_dir, stem)

  def last_with(key):
    having = [m for m, a in analyses.items() if key in a]
    residual = [m for m in having if analyses[m]["residual"]]
    return analyses[(residual or having)[-1]] if having else None

  if any(histories.values()):
    plot_training_curves({m: h for m, h in histories.items() if h}, out("training_curves"),
                         steps_per_epoch=steps_per_epoch)
  stds = {m: a["response_std"] for m, a in analyses.items() if "response_std" in a}
  if stds:
    plot_response_std(stds, out("response_std"))
  single = {m: a["lesion_single"] for m, a in analyses.items() if "lesion_single" in a}
  if single:
    # Marked where every model has the same blocks (a ResNet, its SD twin, a PyramidNet).
    names = {tuple(analyses[m].get("block_names", ())) for m in single}
    plot_lesion_single(single, out("lesion_single"),
                       baselines={m: analyses[m]["lesion_baseline"] for m in single},
                       downsampling=downsampling_blocks(names.pop()) if len(names) == 1 else ())
  if (a := last_with("lesion_k")) is not None:
    # Deletion curves of every residual model with the same number of blocks as the one shown.
    deletion = {m: as_namespace(b["lesion_k"]) for m, b in analyses.items()
                if "lesion_k" in b and b["residual"] and b["num_blocks"] == a["num_blocks"]}
    plot_lesion_k_and_reorder(deletion if len(deletion) > 1 else as_namespace(a["lesion_k"]),
                              as_namespace(a.get("lesion_reorder")), out("lesion_k_reorder"))
  if (a := last_with("paths_sampled")) is not None:
    plot_path_length_distribution(a["num_blocks"], out("path_lengths"),
                                  a.get("branches_per_block", 1))
    plot_path_gradients(as_namespace(a["paths_sampled"]), out("path_gradients"),
                        exact=as_namespace(a["paths_exact"]))
  columns = {m: a["columns"] for m, a in analyses.items() if "columns" in a}
  if columns:
    plot_columns(columns, out("columns"))
  _remove_stale(figures_dir, written)
  return written


def _remove_stale(figures_dir: str, written: Sequence[str]) -> None:
  """Removes the PNG and SVG files of RUN_FIGURES that are not among `written`."""
  kept = {os.path.splitext(os.path.basename(w))[0] for w in written}
  for stem in RUN_FIGURES:
    for suffix in _SUFFIXES:
      target = os.path.join(figures_dir, stem + suffix)
      if stem not in kept and os.path.exists(target):
        os.remove(target)
