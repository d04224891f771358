"""The analyses of a run (`resnet_jax.analyze`) and what an experiment reports of them.

Two tiny runs (resnet8, plain8; 2 steps on 48 digits) are trained once for the module.
"""
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest
import tolerances

from resnet_jax import analysis, analyze, configs, errors, metrics_io, report, runs, train

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
  out = {}
  for model in ("resnet8", "plain8"):
    config = configs.base_config()
    config.update(dict(model=model, dataset="digits", image_size=8, limit=48, val_size=16,
                       batch_size=8, num_steps=2, log_every=1, eval_every=2,
                       checkpoint_every=2, eval_batch_size=16, augment_pad=1,
                       augment_flip=False))
    out[model] = str(tmp_path_factory.mktemp(model))
    train.train_and_evaluate(config, out[model], progress=False)
  return out


def settings(**overrides):
  s = configs.analysis_config()
  s.update(dict(num_images=16, path_images=4, samples_per_length=2, lesion_samples=2))
  s.update(overrides)
  return s


@pytest.fixture
def loaded_splits(monkeypatch):
  """Records the splits of every `runs.load_run` call."""
  calls = []
  load_run = runs.load_run

  def recording(workdir, splits=("test",), step=None, overrides=None):
    calls.append(tuple(splits))
    return load_run(workdir, splits=splits, step=step, overrides=overrides)
  monkeypatch.setattr(runs, "load_run", recording)
  return calls


def command(*args):
  """`python -m resnet_jax.analyze ARGS` with this checkout's sources first."""
  # Four CPU devices, as the runs were trained here (conftest): orbax refuses to restore a
  # checkpoint saved on another topology without a target.
  env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
         "JAX_NUM_CPU_DEVICES": str(jax.device_count())}
  return subprocess.run([sys.executable, "-m", "resnet_jax.analyze", *args], env=env,
                        capture_output=True, text=True, timeout=300)


def read(workdir):
  return metrics_io.read_json(os.path.join(workdir, analyze.ANALYSIS_FILE))


def figures(workdir):
  return sorted(f for f in os.listdir(os.path.join(workdir, "figures")) if f.endswith(".png"))


@pytest.mark.parametrize("names,match", [("lesions", "unknown analyses"), ("", "unknown"),
                                         (["paths", "lesion", "x"], "x")])
def test_unknown_analyses_are_refused_before_loading(names, match, monkeypatch):
  monkeypatch.setattr(runs, "read_config", lambda *_: pytest.fail("loaded before refusing"))
  monkeypatch.setattr(runs, "load_run", lambda *_: pytest.fail("loaded before refusing"))
  with pytest.raises(ValueError, match=match):
    analyze.analyze_run("/nonexistent", names)
  with pytest.raises(ValueError, match="path_split"):
    analyze.analyze_run("/nonexistent", "paths", settings(path_split="val"))
  assert analyze.check_analyses("paths,lesion") == ("lesion", "paths")
  assert analyze.check_analyses("all") == analyze.ANALYSES


def test_the_command_refuses_unknown_analyses_before_loading():
  # The workdir does not exist: a load would fail with FileNotFoundError instead.
  done = command("--workdir=/nonexistent/run", "--analysis=lesion,bogus")
  assert done.returncode != 0
  assert "unknown analyses ['bogus']" in done.stderr and "FileNotFoundError" not in done.stderr
  done = command("--workdir=/nonexistent/run", "--analysis=paths", "--path_window=17,5")
  assert done.returncode != 0
  assert "path_window must be (lo, hi)" in done.stderr and "FileNotFoundError" not in done.stderr


def test_paths_on_a_plain_net_are_skipped_and_say_why(workdirs, loaded_splits):
  result = analyze.analyze_run(workdirs["plain8"], "paths", settings(), progress=False)
  assert loaded_splits == [("test",)]  # nothing runs on the training split: not loaded
  assert "plain network" in result["skipped"]["paths"]
  assert read(workdirs["plain8"])["skipped"] == {"paths": analyze.PLAIN_NET}
  assert "paths_sampled" not in result and "paths" not in result["analyses"]
  done = command(f"--workdir={workdirs['plain8']}", "--analysis=paths")
  assert done.returncode == 0, done.stderr
  assert f"skipped paths: {analyze.PLAIN_NET}" in done.stdout
  assert "wrote no analysis" in done.stdout


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


def test_path_analyses_follow_veits_protocol(workdirs, loaded_splits):
  workdir = workdirs["resnet8"]
  result = analyze.analyze_run(workdir, "paths", settings(), progress=False)
  assert loaded_splits == [("train", "test")]
  _, dataset, model, variables = runs.load_run(workdir, splits=("train",))
  protocol = result["paths_protocol"]
  assert {k: protocol[k] for k in ("split", "batch", "batch_size", "split_images")} == {
      "split": "train", "batch": "random", "batch_size": 4, "split_images": 48}
  assert "own random batch of 4 distinct train images" in protocol["sampled"]
  assert "one random batch of 4 train images" in protocol["exact"]
  # The saved numbers are those of a fresh random training batch per path, and of the exact
  # decomposition on the recorded batch.
  key = jax.random.key(0)
  sampled = analysis.sampled_path_gradients(
      model, variables, dataset.train_images, dataset.train_labels, jax.random.fold_in(key, 3),
      samples_per_length=2, batch_size=4)
  # Norms over a batch of 4 block inputs (8 * 8 * 16 values each), computed here and in the
  # analysis by programs that may batch the paths differently.
  terms = 4 * 8 * 8 * 16
  tolerances.assert_positive_sums_close(result["paths_sampled"]["mean_norm"], sampled.mean_norm,
                                        terms=terms)
  index = np.asarray(protocol["exact_images"])
  assert len(set(index.tolist())) == 4
  exact = analysis.exact_path_gradients(model, variables, dataset.train_images[index],
                                        dataset.train_labels[index])
  tolerances.assert_positive_sums_close(result["paths_exact"]["norm"], exact.norm, terms=terms)
  assert "routes" not in result["paths_sampled"] and "grads" not in result["paths_exact"]
  # Windows: the default rule's and the given one (Veit's 5-17), each with its share and rule.
  windows = result["path_windows"]
  assert [w["window"] for w in windows] == [list(result["effective_paths_sampled"]), [5, 17],
                                            list(result["effective_paths_exact"]), [5, 17]]
  assert windows[0]["share"] == analysis.window_share(sampled.total,
                                                      result["effective_paths_sampled"])
  assert "shortest window holding 90%" in windows[0]["rule"]
  assert "settings.path_window" in windows[1]["rule"] and "3 blocks" in windows[1]["rule"]
  # Without the path analyses only the test split is loaded.
  analyze.analyze_run(workdir, "response_std", settings(), progress=False)
  assert loaded_splits[-1] == ("test",)


def test_the_earlier_protocol_stays_an_option(workdirs):
  workdir = workdirs["resnet8"]
  result = analyze.analyze_run(workdir, "paths", settings(path_split="test", path_batch="fixed"),
                               progress=False)
  _, dataset, model, variables = runs.load_run(workdir)
  images, labels = dataset.test_images[:4], dataset.test_labels[:4]
  sampled = analysis.sampled_path_gradients(model, variables, images, labels,
                                            jax.random.fold_in(jax.random.key(0), 3),
                                            samples_per_length=2)
  np.testing.assert_array_equal(result["paths_sampled"]["mean_norm"], sampled.mean_norm)
  assert result["paths_protocol"]["exact_images"] == [0, 1, 2, 3]
  assert "same 4 images, the first of the test split" in result["paths_protocol"]["sampled"]


def test_a_rerun_merges_on_the_same_step_and_redraws_the_figures(workdirs):
  workdir = workdirs["resnet8"]
  first = analyze.analyze_run(workdir, "all", settings(), progress=False)
  # Every analysis but the column analysis, which only a FractalNet has.
  assert set(first["analyses"]) == set(analyze.ANALYSES) - {"columns"}
  assert first["skipped"] == {"columns": analyze.NOT_FRACTAL} and first["checkpoint_step"] == 2
  again = analyze.analyze_run(workdir, "lesion", settings(lesion_samples=3), progress=False)
  saved = read(workdir)
  # The other analyses' results stay; the lesion numbers are recomputed (identical where the
  # settings are: the single deletions).
  for key in ("response_std", "paths_sampled", "path_windows", "lesion_single"):
    assert saved[key] == first[key], key
  assert np.shape(saved["lesion_k"]["errors"])[1] == 3
  assert saved["analyses"]["lesion"]["settings"]["lesion_samples"] == 3
  assert saved["analyses"]["paths"]["settings"]["lesion_samples"] == 2
  assert figures(workdir) == sorted(os.path.basename(f) for f in again["figures"]) == [
      "lesion_k_reorder.png", "lesion_single.png", "path_gradients.png", "path_lengths.png",
      "response_std.png", "training_curves.png"]
  # Results of another checkpoint step are stale: replaced, and their figures removed.
  saved["checkpoint_step"] = 1
  metrics_io.write_json(os.path.join(workdir, analyze.ANALYSIS_FILE), saved)
  analyze.analyze_run(workdir, "response_std", settings(), progress=False)
  saved = read(workdir)
  assert set(saved["analyses"]) == {"response_std"} and saved["checkpoint_step"] == 2
  assert not any(k in saved for k in ("lesion_single", "paths_sampled", "path_windows"))
  assert figures(workdir) == ["response_std.png", "training_curves.png"]


def test_garbage_analysis_json_names_the_file(tmp_path):
  (tmp_path / analyze.ANALYSIS_FILE).write_bytes(b"\x94 not json")
  with pytest.raises(errors.CorruptFileError, match=analyze.ANALYSIS_FILE):
    analyze._previous(str(tmp_path), "resnet8", 2)  # pylint: disable=protected-access


def test_a_second_analysis_of_the_run_is_refused_while_one_runs(workdirs, monkeypatch):
  # Both would write analysis.json and figures/: the second is refused at once, naming the
  # first's process, and the first finishes undisturbed.
  inner = []
  compute = analyze.compute

  def compute_and_try_again(*args, **kwargs):
    with pytest.raises(errors.WorkdirLockedError, match=f"process {os.getpid()}") as refused:
      analyze.analyze_run(workdirs["resnet8"], "lesion", settings())
    inner.append(refused.value)
    return compute(*args, **kwargs)
  monkeypatch.setattr(analyze, "compute", compute_and_try_again)
  result = analyze.analyze_run(workdirs["resnet8"], "response_std", settings(), progress=False)
  assert len(inner) == 1 and "response_std" in result
