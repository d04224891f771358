"""Each figure function runs on small fake inputs and writes a PNG and an SVG."""
import os

import numpy as np
import pytest
from matplotlib.figure import Figure

from resnet_jax import analysis, plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_written(fig, base):
  assert isinstance(fig, Figure)
  png, svg = base.with_name(base.name + ".png"), base.with_name(base.name + ".svg")
  assert png.read_bytes()[:8] == PNG_MAGIC
  assert svg.read_text().lstrip().startswith("<?xml")


def _history(offset):
  return [{"step": s, "train_error": 0.9 / (1 + s) + offset, "test_error": 1.0 / (1 + s) + offset}
          for s in range(0, 50, 10)]


def test_training_curves(tmp_path):
  histories = {"plain20": _history(0.1), "resnet20": _history(0.0),
               "resnet56": [{"step": 0, "train_error": 0.5}, {"step": 10, "val_error": 0.4}]}
  fig = plots.plot_training_curves(histories, tmp_path / "curves.png")
  _assert_written(fig, tmp_path / "curves")
  assert len(fig.axes) == 2  # plain and residual side by side, as He et al. Figs. 4 and 6
  with pytest.raises(ValueError, match="step"):
    plots.plot_training_curves({"a": [{"train_error": 0.1}]})
  with pytest.raises(ValueError, match="unknown"):
    plots.plot_training_curves(histories, panels={"x": ["resnet1202"]})
  with pytest.raises(ValueError, match="empty"):
    plots.plot_training_curves({})


def test_response_std(tmp_path):
  stds = {"plain20": {f"l{i}": 1.0 + 0.1 * i for i in range(19)},
          "resnet20": {f"l{i}": 1.0 / (1 + i) for i in range(19)}}
  fig = plots.plot_response_std(stds, tmp_path / "fig7")
  _assert_written(fig, tmp_path / "fig7")
  # The bottom panel is sorted in descending order.
  bottom = fig.axes[1].lines[1].get_ydata()
  assert np.all(np.diff(bottom) <= 0)


def test_lesion_single(tmp_path):
  fig = plots.plot_lesion_single({"resnet": np.full(9, 0.1), "plain": np.linspace(0.5, 0.9, 9)},
                                 tmp_path / "fig3.svg", baselines={"resnet": 0.08})
  _assert_written(fig, tmp_path / "fig3")


def test_lesion_k_and_reorder(tmp_path):
  k = analysis.LesionK(ks=np.arange(4), errors=np.zeros((4, 3)), mean=np.linspace(0.1, 0.5, 4),
                       std=np.full(4, 0.02))
  orders = np.tile(np.arange(9), (2, 3, 1))
  r = analysis.LesionReorder(swaps=np.array([0, 1]), orders=orders,
                             tau=np.array([[1.0] * 3, [0.94, 0.9, 0.94]]),
                             errors=np.array([[0.1] * 3, [0.12, 0.15, 0.11]]))
  fig = plots.plot_lesion_k_and_reorder(k, r, tmp_path / "fig5")
  _assert_written(fig, tmp_path / "fig5")
  assert len(fig.axes) == 2
  assert len(plots.plot_lesion_k_and_reorder(reorder=r).axes) == 1
  with pytest.raises(ValueError):
    plots.plot_lesion_k_and_reorder()


def _path_results(n=6):
  lengths = np.arange(n + 1)
  counts = analysis.path_counts(n)
  mean_norm = 0.5 ** lengths
  sampled = analysis.SampledPathGradients(
      num_blocks=n, lengths=lengths, norms=np.tile(mean_norm[:, None], (1, 2)),
      mean_norm=mean_norm, std_norm=np.zeros(n + 1), num_paths=counts, total=counts * mean_norm)
  exact = analysis.ExactPathGradients(lengths=lengths, grads=np.zeros((n + 1, 1, 2, 2, 1)),
                                      norm=0.5 * counts * mean_norm, num_paths=counts)
  return sampled, exact


def test_path_figures(tmp_path):
  _assert_written(plots.plot_path_length_distribution(54, tmp_path / "dist"), tmp_path / "dist")
  sampled, exact = _path_results()
  fig = plots.plot_path_gradients(sampled, tmp_path / "fig6", exact=exact)
  _assert_written(fig, tmp_path / "fig6")
  assert len(fig.axes) == 4
  assert len(plots.plot_path_gradients(exact=exact).axes) == 3
  assert len(plots.plot_path_gradients(sampled).axes) == 3
  with pytest.raises(ValueError):
    plots.plot_path_gradients()
  with pytest.raises(ValueError, match="fraction"):
    plots.plot_path_gradients(sampled, fraction=0.0)


def test_path_gradient_panels_say_what_they_plot():
  # Before, T(k) and ||G(k)|| were both drawn normalised as a "share of total"; the G(k) add up to
  # the gradient, their norms do not. Now each is drawn as it is, on its own axis, named.
  sampled, exact = _path_results()
  fig = plots.plot_path_gradients(sampled, exact=exact)
  veit, norm = fig.axes[2], fig.axes[3]
  np.testing.assert_allclose(veit.lines[0].get_ydata(), sampled.total)
  np.testing.assert_allclose(norm.lines[0].get_ydata(), exact.norm)
  assert veit.get_ylabel().startswith("T(k) = C(n,k) E||g_path(k)||")
  assert norm.get_ylabel().startswith("||G(k)||")
  assert not any("share" in ax.get_ylabel() for ax in fig.axes)
  # The band's rule is in the legend: the shortest window holding 90% of T(k).
  lo, hi = analysis.effective_paths(sampled.total, 0.9)
  labels = [t.get_text() for t in veit.get_legend().get_texts()]
  assert labels == [f"shortest window holding 90% of T(k): lengths {lo}-{hi}"]
  exact_only = plots.plot_path_gradients(exact=exact, fraction=0.5)
  text = exact_only.axes[2].get_legend().get_texts()[0].get_text()
  assert text.startswith("shortest window holding 50% of sum_k ||G(k)||")


def _analysis(residual=True):
  sampled, exact = _path_results()
  out = {"residual": residual, "num_blocks": 6, "response_std": {"stem": 1.0, "l1": 0.5},
         "lesion_single": [0.1] * 6, "lesion_baseline": 0.1}
  if residual:
    out.update(paths_sampled=vars(sampled), paths_exact=vars(exact))
  return out


def test_plot_runs_removes_figures_no_result_backs(tmp_path):
  figures = tmp_path / "figures"
  written = plots.plot_runs({"resnet14": _history(0.0)}, {"resnet14": _analysis()}, str(figures))
  assert {os.path.basename(w) for w in written} == {
      "training_curves.png", "response_std.png", "lesion_single.png", "path_lengths.png",
      "path_gradients.png"}
  (figures / "notes.txt").write_text("mine")
  # Redrawn from results without the paths: their figures go, other files stay.
  plots.plot_runs({"resnet14": _history(0.0)}, {"resnet14": _analysis(residual=False)},
                  str(figures))
  assert sorted(p.name for p in figures.iterdir()) == sorted(
      ["notes.txt"] + [f"{stem}{suffix}" for stem in ("training_curves", "response_std",
                                                      "lesion_single")
                       for suffix in (".png", ".svg")])


def test_downsampling_blocks_are_the_first_blocks_of_later_stages():
  names = ("stage1_block1", "stage1_block2", "stage2_block1", "stage2_block2", "stage3_block1")
  assert plots.downsampling_blocks(names) == [3, 5]
