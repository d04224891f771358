"""Training on a streamed data set: the loop over a prepared directory of real JPEGs (the
fixture), top-1/top-5 and 10-crop evaluation, exact and elastic resume, refused resumes."""
import os

import chex
import jax
import numpy as np
import pytest
from imagenet_fixture import make_prepared

from resnet_jax import checkpoint, configs, errors, evaluate, metrics_io, parallel, runs, train
from resnet_jax.data import imagenet, records


@pytest.fixture(scope="module")
def prepared(prepared_imagenet):
  return prepared_imagenet


def tiny_config(prepared_dir, **overrides):
  """ResNet-18's layout at widths 4-8 on 16 px crops: seconds per run on a CPU."""
  config = configs.smoke(configs.stream_data(configs.imagenet_recipe("resnet18"), "imagenet"))
  config.update(data_dir=prepared_dir, model_options="widths=(4, 8, 8, 8)", image_size=16,
                scale_range=(18, 30), resize_size=18, batch_size=8, num_steps=6, log_every=1,
                eval_every=3, checkpoint_every=2, eval_batch_size=8, input_workers=0,
                eval_crops=1)
  config.update(overrides)
  return config


def _params(workdir):
  return checkpoint.restore_saved(checkpoint.manager(str(workdir)))["params"]


@pytest.fixture(scope="module")
def full_run(prepared, tmp_path_factory):
  """Six steps with two decoding worker processes and a 10-crop evaluation at the end."""
  workdir = tmp_path_factory.mktemp("full")
  results = train.train_and_evaluate(tiny_config(prepared, input_workers=2, eval_crops=10),
                                     str(workdir), progress=False)
  return workdir, results


def test_trains_and_evaluates_a_prepared_directory(full_run):
  workdir, results = full_run
  assert results["steps"] == 6 and results["num_train_examples"] == 18
  assert 0 <= results["test_error"] <= 1 and results["test_top5_error"] == 0.0  # 3 classes
  assert 0 <= results["test_error_10crop"] <= 1 and results["train_error"] is None
  history = metrics_io.read_metrics(str(workdir))
  assert [r["step"] for r in history if "test_error" in r] == [3, 6]
  assert all(np.isfinite(r["loss"]) for r in history if "loss" in r)
  data = metrics_io.read_json(str(workdir / "data.json"))
  assert data["train"] == 18 and data["test"] == 6 and data["classes"] == 3


class _Crash(Exception):
  pass


def _crash_after_saving(monkeypatch, at_step):
  save = checkpoint.save

  def crashing(mngr, state):
    save(mngr, state)
    if int(jax.device_get(state.step)) == at_step:
      mngr.wait_until_finished()
      raise _Crash(f"killed after saving step {at_step}")
  monkeypatch.setattr(checkpoint, "save", crashing)


def test_resume_with_another_worker_count_ends_with_the_uninterrupted_parameters(
    prepared, full_run, tmp_path, monkeypatch):
  with monkeypatch.context() as patch:
    _crash_after_saving(patch, 4)
    with pytest.raises(_Crash):
      train.train_and_evaluate(tiny_config(prepared, input_workers=2), str(tmp_path),
                               progress=False)
  results = train.train_and_evaluate(tiny_config(prepared, input_workers=0), str(tmp_path),
                                     progress=False)
  assert results["resumed_from_step"] == 4
  chex.assert_trees_all_equal(_params(full_run[0]), _params(tmp_path))


def test_a_batch_is_placed_as_one_global_array_of_the_rows_each_process_holds():
  mesh = parallel.make_mesh(jax.devices()[:4])
  assert parallel.process_slice(8, mesh) == slice(0, 8)  # one process holds every row
  local = {"image": np.arange(8 * 2 * 2 * 3, dtype=np.uint8).reshape(8, 2, 2, 3),
           "label": np.arange(8, dtype=np.int32)}
  batch = parallel.put_batch(local, mesh)
  assert batch["image"].sharding.is_equivalent_to(parallel.sharded(mesh), 4)
  for shard in batch["label"].addressable_shards:
    np.testing.assert_array_equal(shard.data, local["label"][shard.index])
  with pytest.raises(ValueError, match="multiple"):
    parallel.process_slice(6, mesh)


def test_per_device_batch_norm_trains_a_stream(prepared, tmp_path):
  results = train.train_and_evaluate(tiny_config(prepared, num_steps=2, per_device_bn=True),
                                     str(tmp_path), devices=jax.devices()[:2], progress=False)
  assert results["steps"] == 2


def test_resume_on_another_prepared_data_set_is_refused(prepared, tmp_path):
  config = runs.check_config(tiny_config(prepared))
  data = records.open_prepared(prepared)
  runs.prepare(config, str(tmp_path), data, start_over=False)
  runs.prepare(config, str(tmp_path), data, start_over=False)  # the same data: fine
  other = records.Prepared(data.directory, {**data.info, "fingerprint": "0" * 64})
  with pytest.raises(errors.ConfigMismatchError, match="fingerprint") as caught:
    runs.prepare(config, str(tmp_path), other, start_over=False)
  assert "\n" not in str(caught.value)


def test_fine_tuning_starts_from_the_checkpoint_with_a_new_head(full_run, tmp_path, capsys):
  """--config.init_from: a run on 2 classes from a run on 3 starts with the other run's
  parameters and BN statistics, and a fresh head."""
  other = make_prepared(str(tmp_path / "two_classes"), num_classes=2)
  config = runs.check_config(tiny_config(other, init_from=str(full_run[0])))
  _, state = train._open(config, str(tmp_path / "run"), False, None)
  saved = checkpoint.restore_saved(checkpoint.manager(str(full_run[0])))
  assert "which is new: 2 classes instead of the checkpoint's 3" in capsys.readouterr().out
  assert int(state.step) == 0 and state.params["head"]["kernel"].shape[-1] == 2
  chex.assert_trees_all_equal({k: v for k, v in state.params.items() if k != "head"},
                              {k: v for k, v in saved["params"].items() if k != "head"})
  chex.assert_trees_all_equal(state.batch_stats, saved["batch_stats"])
  with pytest.raises(errors.ConfigError, match="init_from"):
    runs.check_config(tiny_config(other, init_from=str(tmp_path / "nowhere")))


def test_a_missing_prepared_directory_is_one_plain_error(tmp_path):
  with pytest.raises(errors.UserError, match="prepare_imagenet") as caught:
    train.train_and_evaluate(tiny_config(str(tmp_path / "nowhere")), str(tmp_path / "run"),
                             progress=False)
  assert "\n" not in str(caught.value)
  assert not os.path.exists(tmp_path / "run" / "config.json")


def test_stream_fields_are_checked_before_anything_is_written(prepared, tmp_path):
  for field, value, match in (("train_transform", "mixup", "train_transform"),
                              ("eval_crops", 5, "eval_crops"), ("data_dir", "", "data_dir"),
                              ("normalization", "pixel_mean", "normalization")):
    with pytest.raises(errors.ConfigError, match=match):
      train.train_and_evaluate(tiny_config(prepared, **{field: value}), str(tmp_path),
                               progress=False)
  assert not os.listdir(tmp_path)


def test_evaluate_averages_the_softmax_of_ten_crops(prepared, full_run):
  """`evaluate` with 10 crops against the same computation by hand, image by image."""
  config = tiny_config(prepared)
  result = evaluate.evaluate_checkpoint(config, str(full_run[0]), crops=10, progress=False)
  model = runs.build_model(config, 3)
  saved = checkpoint.restore_saved(checkpoint.manager(str(full_run[0])))
  variables = {"params": saved["params"], "batch_stats": saved["batch_stats"]}
  source = records.open_prepared(prepared).source("val")
  wrong, losses = [], []
  for i in range(len(source)):
    label, jpeg = source[i]
    crops = imagenet.normalize(imagenet.eval_crops(jpeg, crops=10, image_size=16,
                                                   resize_size=18))
    probs = jax.nn.softmax(model.apply(variables, crops, train=False)).mean(axis=0)
    wrong.append(int(np.argmax(probs)) != label)
    losses.append(-np.log(probs[label]))
  assert result["images"] == len(source) == 6 and result["crops"] == 10
  assert round(result["top1_error"] * 6) == sum(wrong)  # the count of wrong images, exactly
  np.testing.assert_allclose(result["loss"], np.mean(losses), rtol=1e-5)
  # The loop's own 10-crop evaluation of the same checkpoint is the same number.
  assert result["top1_error"] == full_run[1]["test_error_10crop"]


def test_evaluate_refuses_another_model(prepared, full_run):
  with pytest.raises(errors.ConfigMismatchError, match="model"):
    evaluate.evaluate_checkpoint(tiny_config(prepared, model="resnet34_imagenet"),
                                 str(full_run[0]), progress=False)
