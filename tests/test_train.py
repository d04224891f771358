"""Train step, data-parallel compilation, the loop, checkpoints that resume, bad runs."""
import functools
import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tolerances
from jax.sharding import PartitionSpec as P

from resnet_jax import checkpoint, configs, metrics_io, optim, parallel, runs, steps, train
from resnet_jax.models import get_model
from resnet_jax.train_state import create_train_state

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The longest float32 sums of a tiny_config step: BN statistics and kernel gradients over the 16 *
# 8 * 8 positions of a batch (`tolerances`).
TERMS = 16 * 8 * 8


def tiny_config(**overrides):
  config = configs.base_config()
  config.update(dict(model="resnet8", dataset="digits", image_size=8, limit=64, val_size=32,
                     batch_size=16, num_steps=6, log_every=2, eval_every=3, checkpoint_every=3,
                     eval_batch_size=32, augment_pad=1, augment_flip=False))
  config.update(overrides)
  return config


def make_step(config, model, mesh, per_device_bn=False):
  config = configs.resolve_warmup(config)
  tx = optim.make_optimizer(config)
  step_fn = functools.partial(steps.train_step, model=model, tx=tx,
                              learning_rate_fn=optim.learning_rate_schedule(config),
                              batch_size=config.batch_size, augment_pad=config.augment_pad,
                              augment_flip=config.augment_flip)
  chex.clear_trace_counter()  # each mesh compiles once; count per mesh

  @chex.assert_max_traces(n=1)
  def traced(*args, **kwargs):
    return step_fn(*args, **kwargs)

  compiled = parallel.compile_train_step(traced, mesh, batch_size=config.batch_size,
                                         per_device_bn=per_device_bn)
  state = create_train_state(model, tx, jax.random.key(0), (8, 8, 1))
  return compiled, jax.device_put(state, parallel.replicated(mesh))


def run_steps(config, devices, num_steps, per_device_bn=False, num_examples=64):
  mesh = parallel.make_mesh(devices)
  model = get_model(config.model)
  compiled, state = make_step(config, model, mesh, per_device_bn)
  repl = parallel.replicated(mesh)
  images = np.asarray(jax.random.normal(jax.random.key(1), (num_examples, 8, 8, 1)))
  data = {"image": parallel.put_global(images, repl),
          "label": parallel.put_global(np.arange(num_examples, dtype=np.int32) % 10, repl)}
  keys = jax.device_put((jax.random.key(2), jax.random.key(3)), repl)
  losses = []
  for _ in range(num_steps):
    state, metrics = compiled(state, data, *keys)
    losses.append(float(metrics["loss"]))
  return state, losses


def test_four_devices_match_one_device_and_compile_once():
  assert jax.device_count() == 4, "conftest fakes 4 CPU devices"
  config = tiny_config()
  one, losses_one = run_steps(config, jax.devices()[:1], 4)
  four, losses_four = run_steps(config, jax.devices(), 4)
  # The longest sums: BN statistics and kernel gradients over the batch's 16 * 8 * 8 positions.
  tolerances.assert_close((losses_one, one.params, one.batch_stats),
                          (losses_four, four.params, four.batch_stats), terms=TERMS)
  assert int(four.step) == 4
  assert four.params["head"]["kernel"].sharding.is_fully_replicated


def test_loss_drops_on_a_fixed_batch():
  # One batch of 16 = the whole (shuffled) set, so every step sees the same examples.
  _, losses = run_steps(tiny_config(augment_pad=0), jax.devices()[:1], 12, num_examples=16)
  assert losses[-1] < 0.5 * losses[0]


def test_per_device_batch_norm_runs_under_shard_map():
  config = tiny_config()
  per_device, _ = run_steps(config, jax.devices(), 2, per_device_bn=True)
  global_bn, _ = run_steps(config, jax.devices(), 2)
  chex.assert_tree_all_finite(per_device.params)
  # Normalising each 4-image shard by its own statistics is a different computation.
  assert not np.allclose(per_device.params["head"]["kernel"], global_bn.params["head"]["kernel"])
  # On one device, per-device BN is global BN.
  a, _ = run_steps(config, jax.devices()[:1], 2, per_device_bn=True)
  b, _ = run_steps(config, jax.devices()[:1], 2)
  tolerances.assert_close(a.params, b.params, terms=TERMS)


def test_per_device_shards_draw_their_own_augmentation():
  # Four devices, every image the same: with one augmentation key for all devices (the old
  # step), the four local batches came out identical.
  mesh = parallel.make_mesh(jax.devices())
  image = np.asarray(jax.random.normal(jax.random.key(1), (1, 8, 8, 1)))
  data = {"image": jnp.asarray(np.repeat(image, 64, axis=0)), "label": jnp.zeros(64, jnp.int32)}
  gather = functools.partial(steps.training_batch, batch_size=16, augment_pad=2,
                             augment_flip=True, axis_name=parallel.DATA_AXIS)
  per_device = jax.jit(jax.shard_map(
      lambda d, k1, k2: gather(d, k1, k2, jnp.int32(0))["image"], mesh=mesh,
      in_specs=(P(), P(), P()), out_specs=P(parallel.DATA_AXIS)))
  shards = np.asarray(per_device(data, jax.random.key(2), jax.random.key(3))).reshape(4, 4, -1)
  for i in range(4):
    for j in range(i + 1, 4):
      assert not np.array_equal(shards[i], shards[j]), (i, j)


def test_global_batch_is_the_batch_of_the_data_order():
  data = {"image": jnp.arange(40.0).reshape(10, 2, 2, 1), "label": jnp.arange(10)}
  batch = steps.training_batch(data, jax.random.key(0), jax.random.key(1), jnp.int32(3),
                               batch_size=4, augment_pad=0, augment_flip=False)
  from resnet_jax import augment  # pylint: disable=g-import-not-at-top
  index = augment.batch_indices(jax.random.key(0), 3, 10, 4)
  np.testing.assert_array_equal(batch["label"], index)
  np.testing.assert_array_equal(batch["image"], data["image"][index])


def test_batch_size_must_divide_over_devices():
  with pytest.raises(ValueError, match="multiple of the 4 devices"):
    run_steps(tiny_config(batch_size=18), jax.devices(), 1)


def test_train_and_evaluate_writes_metrics_results_and_checkpoints(tmp_path):
  results = train.train_and_evaluate(tiny_config(), str(tmp_path), progress=False)
  assert results["steps"] == 6
  assert 0.0 <= results["test_error"] <= 1.0
  assert results["best_val_step"] in (3, 6)
  model = get_model("resnet8")
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1))))
  assert results["num_params"] == sum(int(np.prod(p.shape))
                                      for p in jax.tree.leaves(shapes["params"]))
  records = metrics_io.read_metrics(str(tmp_path))
  assert [r["step"] for r in records if "loss" in r] == [2, 3, 4, 6]
  for key in ("loss", "train_error", "lr", "images_per_s", "grad_norm"):
    assert key in records[0]
  assert {r["step"] for r in records if "test_error" in r} == {3, 6}
  assert os.listdir(tmp_path / "tensorboard")
  assert checkpoint.manager(str(tmp_path)).latest_step() == 6
  saved = metrics_io.read_json(str(tmp_path / "results.json"))
  assert saved["device_count"] == 4 and saved["test_error"] == results["test_error"]
  # An analysis of the run reads its test images only: the training split is not even loaded.
  config, dataset, model, variables = runs.load_run(str(tmp_path))
  assert dataset.train_images.shape == (0, 8, 8, 1) and dataset.val_images.shape[0] == 0
  np.testing.assert_array_equal(dataset.test_images, runs.load_data(config).test_images)
  assert model == get_model("resnet8") and "batch_stats" in variables


def test_rerun_resumes_and_refuses_another_config(tmp_path):
  train.train_and_evaluate(tiny_config(num_steps=3), str(tmp_path), progress=False)
  # Same config with more steps would change the schedule: refused, with the difference named.
  with pytest.raises(runs.ConfigMismatchError, match="num_steps"):
    train.train_and_evaluate(tiny_config(num_steps=6), str(tmp_path), progress=False)
  with pytest.raises(runs.ConfigMismatchError, match="model"):
    train.train_and_evaluate(tiny_config(num_steps=3, model="plain8"), str(tmp_path),
                             progress=False)
  # Loop-only fields may change. The run is finished, so its results stay as they were.
  # It neither loads data nor compiles: an experiment rerun over finished runs is instant.
  first = metrics_io.read_json(str(tmp_path / "results.json"))
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(runs, "load_data", lambda *_: pytest.fail("a finished run loaded its data"))
    results = train.train_and_evaluate(tiny_config(num_steps=3, log_every=1), str(tmp_path),
                                       progress=False)
  assert results == first and results["resumed_from_step"] == 0
  results = train.train_and_evaluate(tiny_config(num_steps=6, model="plain8"), str(tmp_path),
                                     start_over=True, progress=False)
  assert results["resumed_from_step"] == 0 and results["steps"] == 6


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
  # Three sane warm-up steps (checkpointed at step 3), then a rate that overflows the weights.
  bad = tiny_config(num_steps=12, warmup="steps", warmup_steps=3, warmup_lr=0.01,
                    learning_rate=1e30, log_every=1, checkpoint_every=3)
  with pytest.raises(train.NonFiniteError, match="non-finite"):
    train.train_and_evaluate(bad, str(tmp_path), progress=False)
  assert checkpoint.manager(str(tmp_path)).latest_step() == 3
  good = _final_params(tmp_path)
  chex.assert_tree_all_finite(good)


def _launch(workdir, steps_, extra=()):
  cmd = [sys.executable, "-m", "resnet_jax.train", "--config=experiments/configs/digits.py:resnet8",
         f"--workdir={workdir}", f"--config.num_steps={steps_}", "--config.image_size=8",
         "--config.batch_size=16", "--config.log_every=1", "--config.eval_every=1000",
         "--config.checkpoint_every=4", "--config.limit=128", *extra]
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)


def _final_params(workdir):
  return checkpoint.restore_saved(checkpoint.manager(str(workdir)))["params"]


def test_sigkill_and_resume_ends_with_exactly_the_uninterrupted_parameters(tmp_path):
  num_steps = 40
  full = _launch(tmp_path / "full", num_steps)
  assert full.wait(timeout=300) == 0, full.stderr.read().decode()[-2000:]

  killed = _launch(tmp_path / "killed", num_steps)
  checkpoints = tmp_path / "killed" / "checkpoints"
  deadline = time.time() + 300
  # Kill mid-run, once a checkpoint exists and training has gone on past it.
  while time.time() < deadline:
    done = [d for d in (os.listdir(checkpoints) if checkpoints.exists() else []) if d.isdigit()]
    if done and max(int(d) for d in done) >= 8:
      break
    time.sleep(0.05)
  assert killed.poll() is None, "the run finished before it could be killed"
  killed.send_signal(signal.SIGKILL)
  killed.wait()
  partial = checkpoint.manager(str(tmp_path / "killed")).latest_step()
  assert partial is not None and partial < num_steps

  resumed = _launch(tmp_path / "killed", num_steps)
  assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()[-2000:]
  results = metrics_io.read_json(str(tmp_path / "killed" / "results.json"))
  assert 0 < results["resumed_from_step"] < num_steps
  chex.assert_trees_all_equal(_final_params(tmp_path / "full"),
                              _final_params(tmp_path / "killed"))
  steps_logged = [r["step"] for r in metrics_io.read_metrics(str(tmp_path / "killed"))
                  if "loss" in r]
  assert steps_logged == list(range(1, num_steps + 1))


def test_bfloat16_compute_keeps_parameters_statistics_and_loss_float32():
  model, images = get_model("resnet8"), jax.random.normal(jax.random.key(1), (16, 8, 8, 1))
  tx = optim.make_optimizer(configs.resolve_warmup(tiny_config()))
  state = create_train_state(model, tx, jax.random.key(0), (8, 8, 1))
  data = {"image": images, "label": jnp.arange(16, dtype=jnp.int32) % 10}
  keys = (jax.random.key(2), jax.random.key(3))

  def step(dtype):
    return functools.partial(steps.train_step, model=model, tx=tx, learning_rate_fn=lambda s: 0.1,
                             batch_size=16, augment_pad=1, compute_dtype=dtype)
  jaxpr = str(jax.make_jaxpr(step("bfloat16"))(state, data, *keys))
  assert "conv_general_dilated" in jaxpr and "bf16[16,8,8,16]" in jaxpr  # the convs run in bf16
  new, metrics = jax.jit(step("bfloat16"))(state, data, *keys)
  _, reference = jax.jit(step("float32"))(state, data, *keys)
  floats = [a.dtype for a in jax.tree.leaves((new, metrics))
            if jnp.issubdtype(a.dtype, jnp.floating)]
  assert set(floats) == {jnp.dtype(jnp.float32)}
  # bfloat16 keeps 8 significant bits: the loss to a few of its roundings.
  np.testing.assert_allclose(metrics["loss"], reference["loss"],
                             rtol=4 * float(jnp.finfo(jnp.bfloat16).eps))
  assert not tolerances.close(metrics["loss"], reference["loss"], terms=TERMS)  # it did change
  with pytest.raises(runs.ConfigError, match="dtype must be one of"):
    runs.check_config(tiny_config(dtype="float16"))


def test_a_field_an_old_run_lacks_is_its_default():
  saved = json.loads(json.dumps(tiny_config().to_dict()))
  del saved["dtype"]  # a run written before the field existed ran in float32
  assert runs.config_differences(saved, tiny_config()) == []
  assert runs.config_differences(saved, tiny_config(dtype="bfloat16")) == [
      "dtype: None -> 'bfloat16'"]
