"""The analyses of a run (`resnet_jax.analyze`) and what an experiment reports of them."""
import ml_collections
import pytest

from resnet_jax import report


def _results(test_error):
  return {"num_params": 1000, "train_error": test_error, "test_error": test_error,
          "test_error_at_best_val": test_error, "best_val_error": test_error,
          "wall_time_s": 1.0, "device_kind": "cpu"}


def _lesioned(intact, single):
  return {"lesion_single": single, "lesion_baseline": intact, "num_classes": 10,
          "residual": True}


def test_report_does_not_call_a_net_at_chance_robust(tmp_path):
  # Before: the slope of error vs deleted blocks ranked plain56 (at chance, 0.9 whatever is
  # deleted) as more robust than resnet56. Now a net at chance has no damage to measure.
  config = ml_collections.ConfigDict(dict(
      name="t", title="t", models=("plain56", "resnet56"),
      train=dict(dataset="digits", num_steps=10)))
  runs = {(0, "plain56"): {"results": _results(0.9), "analysis": _lesioned(0.9, [0.9] * 4)},
          (0, "resnet56"): {"results": _results(0.05),
                            "analysis": _lesioned(0.05, [0.05, 0.05, 0.05, 0.39])}}
  summary = report.summarize(config, runs, seeds=1)
  plain, resnet = summary["models"]["plain56"], summary["models"]["resnet56"]
  assert "lesion_slope" not in resnet
  assert plain["lesion_one_block_damage"] == {"median": None, "mean": None, "std": None, "n": 0}
  assert plain["lesion_one_block_increase"]["median"] == 0.0
  assert resnet["lesion_one_block_increase"]["median"] == pytest.approx(0.085)
  assert resnet["lesion_one_block_damage"]["median"] == pytest.approx(0.085 / 0.85)
  report.write_report(summary, [], str(tmp_path))
  text = (tmp_path / report.REPORT_FILE).read_text()
  assert "| plain56 | +0.00 (n/a: at chance) |" in text
  assert "| resnet56 | +8.50 (10%) |" in text
  assert "share of the way to chance" in text and "cannot get worse" in text
