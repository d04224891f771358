"""Several seeds in one compiled step: the same numbers as separate runs, per-seed workdirs,
resumption from different steps, a seed that fails alone."""
import dataclasses
import functools
import os
import shutil

import jax
import numpy as np
import pytest
import tolerances
from config_files import REPO, load

from resnet_jax import (
  checkpoint,
  configs,
  experiment,
  metrics_io,
  optim,
  parallel,
  runs,
  steps,
  train,
)
from resnet_jax.errors import ConfigError
from resnet_jax.models import get_model
from resnet_jax.train import seeds
from resnet_jax.train_state import create_train_state

LOGGED = ("loss", "train_error", "grad_norm", "lr", "val_error", "val_loss", "test_error",
          "test_loss")


def tiny_config(seed=0, **overrides):
  config = configs.base_config()
  config.update(dict(model="resnet8", dataset="digits", image_size=8, limit=64, val_size=32,
                     batch_size=16, num_steps=6, log_every=2, eval_every=3, checkpoint_every=3,
                     eval_batch_size=32, augment_pad=1, augment_flip=True, seed=seed))
  config.update(overrides)
  return config


def _params(workdir, step=None):
  return checkpoint.restore_saved(checkpoint.manager(str(workdir)), step)["params"]


# The longest sums of a tiny_config step: BN statistics and kernel gradients over the 16 * 8 * 8
# positions of a batch.
TERMS = 16 * 8 * 8


def _assert_same_run(a, b):
  """Two workdirs hold the same run to float tolerance: checkpoints, log and results."""
  for step in (3, 6):
    tolerances.assert_close(_params(a, step), _params(b, step), terms=TERMS)
  logs_a, logs_b = metrics_io.read_metrics(str(a)), metrics_io.read_metrics(str(b))
  assert [r["step"] for r in logs_a] == [r["step"] for r in logs_b] == [2, 3, 3, 4, 6, 6]
  for ra, rb in zip(logs_a, logs_b):
    logged = [k for k in LOGGED if k in ra]
    assert logged == [k for k in LOGGED if k in rb]
    tolerances.assert_close([ra[k] for k in logged], [rb[k] for k in logged], terms=TERMS)
  res_a, res_b = (metrics_io.read_json(str(w / metrics_io.RESULTS_FILE)) for w in (a, b))
  for key in ("steps", "test_error", "best_val_step", "train_error", "num_params"):
    assert res_a[key] == pytest.approx(res_b[key], abs=1e-6), key


def test_seeds_in_one_step_match_separate_runs(tmp_path):
  # Each seed trains on its own images: the validation split is drawn by the seed.
  for seed in (0, 1):
    train.train_and_evaluate(tiny_config(seed), str(tmp_path / f"alone{seed}"), progress=False)
  dirs = [str(tmp_path / f"joint{s}") for s in (0, 1)]
  results = seeds.train_seeds([tiny_config(s) for s in (0, 1)], dirs, progress=False)
  assert [r["joint_seeds"] for r in results] == [2, 2]
  for seed in (0, 1):
    _assert_same_run(tmp_path / f"alone{seed}", tmp_path / f"joint{seed}")
    assert metrics_io.read_json(str(tmp_path / f"joint{seed}" / "config.json"))["seed"] == seed
  # The seeds differ: their own init, data, data order and augmentation.
  assert not np.allclose(_params(tmp_path / "joint0")["head"]["kernel"],
                         _params(tmp_path / "joint1")["head"]["kernel"])
  # A rerun returns the saved results without loading data or training.
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(runs, "load_data", lambda *_: pytest.fail("a finished run loaded its data"))
    again = seeds.train_seeds([tiny_config(s) for s in (0, 1)], dirs, progress=False)
  assert again == results


def _single_and_joint(devices, formulation, per_device_bn, shared_data, num_steps=2):
  """Two seeds' states and metrics after num_steps: each by compile_train_step, and both by one
  compile_seeds_train_step (the seeds' training images the same with shared_data)."""
  config = configs.resolve_warmup(tiny_config())
  model, tx = get_model("resnet8"), optim.make_optimizer(config)
  mesh = parallel.make_mesh(devices)
  step_fn = functools.partial(steps.train_step, model=model, tx=tx,
                              learning_rate_fn=optim.learning_rate_schedule(config),
                              batch_size=16, augment_pad=1)
  images = np.asarray(jax.random.normal(jax.random.key(1), (2, 48, 8, 8, 1)))
  data_ = [{"image": images[0 if shared_data else s], "label": np.arange(48, dtype=np.int32) % 10}
           for s in (0, 1)]
  keys = [(jax.random.key(10 + s), jax.random.key(20 + s)) for s in (0, 1)]
  states = [create_train_state(model, tx, jax.random.key(s), (8, 8, 1)) for s in (0, 1)]
  one = parallel.compile_train_step(step_fn, mesh, batch_size=16, per_device_bn=per_device_bn)
  singles = []
  for s in (0, 1):
    state, metrics = parallel.replicate(states[s], mesh), []
    for _ in range(num_steps):
      state, m = one(state, parallel.replicate(data_[s], mesh), *parallel.replicate(keys[s], mesh))
      metrics.append(m)
    singles.append((state, metrics))
  joint = parallel.compile_seeds_train_step(step_fn, mesh, batch_size=16,
                                            per_device_bn=per_device_bn, shared_data=shared_data,
                                            formulation=formulation)
  state = parallel.stack_seeds(states, mesh)
  stacked_keys = parallel.stack_seeds(keys, mesh)
  stacked_data = (parallel.replicate(data_[0], mesh) if shared_data else
                  parallel.stack_seeds(data_, mesh))
  joint_metrics = []
  for _ in range(num_steps):
    state, m = joint(state, stacked_data, *stacked_keys)
    joint_metrics.append(m)
  return singles, parallel.unstack_seeds(state, mesh), joint_metrics


@pytest.mark.parametrize("devices,formulation,per_device_bn,shared_data", [
    (4, "vmap", False, False), (4, "vmap", True, True), (1, "unroll", False, True)])
def test_compiled_seeds_step_is_each_seeds_own_step(devices, formulation, per_device_bn,
                                                    shared_data):
  singles, joint_states, joint_metrics = _single_and_joint(jax.devices()[:devices], formulation,
                                                           per_device_bn, shared_data)
  for s, (state, metrics) in enumerate(singles):
    tolerances.assert_close(joint_states[s].params, state.params, terms=TERMS)
    # BatchNorm statistics stay per seed: each its own batch's.
    tolerances.assert_close(joint_states[s].batch_stats, state.batch_stats, terms=TERMS)
    for m, jm in zip(metrics, joint_metrics):
      tolerances.assert_close(jax.tree.map(lambda x, s=s: x[s], jm), m, terms=TERMS)


@pytest.mark.slow
def test_seeds_at_different_steps_resume_each_from_its_own(tmp_path):
  dirs = [str(tmp_path / f"seed{s}") for s in (0, 1, 2)]
  config = [tiny_config(s) for s in (0, 1, 2)]
  seeds.train_seeds(config[1:], dirs[1:], progress=False, formulation="vmap")
  final = [_params(d) for d in dirs[1:]]
  # Seeds 1 and 2 stand at their step-3 checkpoints (killed while saving step 6); seed 0 has
  # not started. Seed 0 trains alone from step 0, then seeds 1 and 2 together from step 3.
  for d in dirs[1:]:
    shutil.rmtree(os.path.join(d, "checkpoints", "6"))
    os.remove(os.path.join(d, metrics_io.RESULTS_FILE))
  results = seeds.train_seeds(config, dirs, progress=False, formulation="vmap")
  assert [r["resumed_from_step"] for r in results] == [0, 3, 3]
  assert [r["joint_seeds"] for r in results] == [1, 2, 2]
  for d, params in zip(dirs[1:], final):
    tolerances.assert_close(_params(d), params, terms=TERMS)
    assert [r["step"] for r in metrics_io.read_metrics(d)] == [2, 3, 3, 4, 6, 6]


def test_a_seed_that_stops_being_finite_fails_alone(tmp_path, monkeypatch):
  load = runs.load_data

  def poisoned(config, *args, **kwargs):  # seed 1 trains on NaN images
    dataset = load(config, *args, **kwargs)
    if config.seed == 1:
      dataset = dataclasses.replace(dataset,
                                    train_images=np.full_like(dataset.train_images, np.nan))
    return dataset
  monkeypatch.setattr(runs, "load_data", poisoned)
  dirs = [str(tmp_path / f"seed{s}") for s in (0, 1, 2)]
  with pytest.raises(train.NonFiniteError,
                     match=r"^seed 1 \(.*seed1\): non-finite .* at step 1: .*step 0.*"
                           r"\(seeds 0, 2 trained to the end\)$"):
    # "vmap" compiles once for any number of seeds (the numbers are the same).
    seeds.train_seeds([tiny_config(s) for s in (0, 1, 2)], dirs, progress=False,
                      formulation="vmap")
  for d in (dirs[0], dirs[2]):
    assert metrics_io.read_json(os.path.join(d, metrics_io.RESULTS_FILE))["steps"] == 6
  assert checkpoint.manager(dirs[1]).latest_step() is None
  assert not os.path.exists(os.path.join(dirs[1], metrics_io.RESULTS_FILE))


def test_seeds_of_different_configs_are_refused(tmp_path):
  with pytest.raises(ConfigError, match="differ: learning_rate"):
    seeds.train_seeds([tiny_config(0), tiny_config(1, learning_rate=0.2)],
                      [str(tmp_path / "a"), str(tmp_path / "b")], progress=False)
  with pytest.raises(ValueError, match="its own workdir"):
    seeds.train_seeds([tiny_config(0), tiny_config(1)], [str(tmp_path)] * 2, progress=False)
  assert not os.listdir(tmp_path)  # refused before anything is written


@pytest.mark.slow
def test_experiment_trains_each_models_seeds_in_one_step(tmp_path):
  config = load(os.path.join(REPO, "experiments", "degradation.py")).get_config("digits,smoke")
  config.models, config.analyses = ("resnet8",), ()
  summary = experiment.run_experiment(config, str(tmp_path), seeds=2, joint_seeds=True,
                                      progress=False)
  assert summary["models"]["resnet8"]["final_test_error"]["n"] == 2
  results = [metrics_io.read_json(configs.run_dir(str(tmp_path), s, "resnet8") + "/results.json")
             for s in (0, 1)]
  assert [r["joint_seeds"] for r in results] == [2, 2]
  # Each seed's share of the wall time: the summary's sum is the time spent.
  assert summary["models"]["resnet8"]["wall_time_s"] == pytest.approx(
      sum(r["wall_time_s"] for r in results))
  assert (tmp_path / "report.md").exists()
