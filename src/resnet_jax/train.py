"""Training loop: `train_and_evaluate(config, workdir)`; run as a program it is the CLI.

  python -m resnet_jax.train --config=experiments/configs/digits.py --workdir=runs/digits

Rerunning the same command resumes from the latest checkpoint in the workdir; the data order and
augmentation depend only on (seed, step), so a killed and resumed run ends with exactly the
parameters of an uninterrupted one.
"""
import functools
import json
import os
import shutil
import time
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
import tqdm

from resnet_jax import checkpoint, data, metrics_io, optim, parallel, steps
from resnet_jax.models import get_model
from resnet_jax.train_state import create_train_state, num_params

# Config fields that may change between a run and its resumption: they only steer the loop.
LOOP_FIELDS = ("log_every", "eval_every", "checkpoint_every", "keep_checkpoints",
               "eval_batch_size")


class NonFiniteError(RuntimeError):
  """The loss or the gradient norm stopped being finite; the last good checkpoint is kept."""


class ConfigMismatchError(ValueError):
  """The workdir holds a run of another config."""


def build_model(config: ml_collections.ConfigDict, num_classes: int):
  overrides = {"shortcut": config.shortcut} if config.shortcut else {}
  return get_model(config.model, num_classes=num_classes, **overrides)


def load_data(config: ml_collections.ConfigDict) -> data.Dataset:
  return data.load_dataset(
      config.dataset, data_dir=config.data_dir, archive=config.archive,
      val_size=None if config.val_size < 0 else config.val_size,
      normalization=config.normalization, seed=config.seed,
      image_size=config.image_size or None, limit=config.limit or None)


def prepare_workdir(config: ml_collections.ConfigDict, workdir: str, start_over: bool) -> None:
  """Refuses a workdir that holds another config's run, unless told to start over."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, metrics_io.CONFIG_FILE)
  # Through JSON, as config.json holds it (tuples become lists), so the two compare field by field.
  current = json.loads(json.dumps(config.to_dict()))
  if os.path.exists(path) and not start_over:
    saved = metrics_io.read_json(path)
    differ = sorted(k for k in set(saved) | set(current)
                    if k not in LOOP_FIELDS and saved.get(k) != current.get(k))
    if differ:
      details = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in differ)
      raise ConfigMismatchError(
          f"{workdir} holds a run of another config ({details}); use another --workdir, or "
          "--start_over to delete that run")
  if start_over:
    for name in ("checkpoints", "tensorboard", metrics_io.METRICS_FILE, metrics_io.RESULTS_FILE):
      target = os.path.join(workdir, name)
      if os.path.isdir(target):
        shutil.rmtree(target)
      elif os.path.exists(target):
        os.remove(target)
  if jax.process_index() == 0:
    metrics_io.write_json(path, current)


def _check_finite(window: list[dict[str, float]], step: int) -> None:
  for i, m in enumerate(window):
    if not (np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"])):
      raise NonFiniteError(
          f"non-finite loss ({m['loss']}) or gradient norm ({m['grad_norm']}) at step "
          f"{step - len(window) + i + 1}; stopped without saving, the last good checkpoint is kept")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       start_over: bool = False, devices: Sequence[jax.Device] | None = None,
                       progress: bool = True) -> dict[str, Any]:
  """Trains `config.model` on `config.dataset`, evaluating, logging and checkpointing in workdir.

  Returns:
    The results also written to workdir/results.json.
  """
  start_time = time.time()
  prepare_workdir(config, workdir, start_over)
  results_path = os.path.join(workdir, metrics_io.RESULTS_FILE)
  if os.path.exists(results_path):
    saved = metrics_io.read_json(results_path)
    if saved["steps"] >= config.num_steps:
      # Finished before: keep its results as they were, without loading data or compiling, so
      # that an experiment rerun over finished runs only rewrites its summary.
      return saved
  dataset = load_data(config)
  model = build_model(config, dataset.num_classes)
  tx = optim.make_optimizer(config)
  lr_fn = optim.learning_rate_schedule(config)
  mesh = parallel.make_mesh(devices)
  repl = parallel.replicated(mesh)

  rng = jax.random.key(config.seed)
  init_rng, data_rng, aug_rng = jax.random.split(rng, 3)
  init = functools.partial(create_train_state, model, tx, image_shape=dataset.image_shape)
  state = jax.jit(init, out_shardings=repl)(init_rng)
  mngr = checkpoint.manager(workdir, config.keep_checkpoints)
  restored = checkpoint.restore_latest(mngr, state)
  state = restored if restored is not None else state
  start_step = int(jax.device_get(state.step))

  step_fn = functools.partial(
      steps.train_step, model=model, tx=tx, learning_rate_fn=lr_fn,
      augment_pad=config.augment_pad, augment_flip=config.augment_flip,
      warmup_factor_fn=functools.partial(optim.warmup_factor, config),
      warmup_error=config.warmup_error)
  train_step = parallel.compile_train_step(step_fn, mesh, batch_size=config.batch_size,
                                           per_device_bn=config.per_device_bn)
  eval_step = parallel.compile_eval_step(functools.partial(steps.eval_step, model=model), mesh)
  images = parallel.put_global(dataset.train_images, repl)
  labels = parallel.put_global(dataset.train_labels, repl)
  data_rng, aug_rng = jax.device_put((data_rng, aug_rng), repl)

  writer = metrics_io.MetricWriter(workdir)
  writer.truncate_after(start_step)
  history = metrics_io.read_metrics(workdir)

  def run_eval(step: int) -> dict[str, float]:
    val = parallel.evaluate(eval_step, state, dataset.val_images, dataset.val_labels, mesh,
                            config.eval_batch_size)
    test = parallel.evaluate(eval_step, state, dataset.test_images, dataset.test_labels, mesh,
                             config.eval_batch_size)
    record = {"val_error": val["error"], "val_loss": val["loss"], "test_error": test["error"],
              "test_loss": test["loss"]}
    writer.write(step, record)
    history.append({"step": step, **record})
    tqdm.tqdm.write(f"step {step}: val error {val['error']:.4f}, test error {test['error']:.4f}")
    return record

  bar = tqdm.tqdm(total=config.num_steps, initial=start_step, desc=config.model, unit="step",
                  disable=not progress or jax.process_index() != 0, dynamic_ncols=True)
  pending, window_start, window_step = [], time.time(), start_step
  step = start_step
  try:
    while step < config.num_steps:
      state, metrics = train_step(state, images, labels, data_rng, aug_rng)
      pending.append(metrics)
      step += 1
      boundary = (step % config.log_every == 0 or step % config.eval_every == 0
                  or step % config.checkpoint_every == 0 or step == config.num_steps)
      if not boundary:
        continue
      window = jax.device_get(pending)
      pending = []
      _check_finite(window, step)
      now = time.time()
      mean = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
      elapsed = max(now - window_start, 1e-9)
      mean["images_per_s"] = (step - window_step) * config.batch_size / elapsed
      window_start, window_step = now, step
      writer.write(step, mean)
      history.append({"step": step, **mean})
      bar.update(step - bar.n)
      bar.set_postfix(loss=f"{mean['loss']:.3f}", err=f"{mean['train_error']:.3f}",
                      lr=f"{mean['lr']:.3g}", img_s=f"{mean['images_per_s']:.0f}")
      if step % config.eval_every == 0 or step == config.num_steps:
        run_eval(step)
      if step % config.checkpoint_every == 0 or step == config.num_steps:
        checkpoint.save(mngr, state)
    if not any(r["step"] == step and "test_error" in r for r in history):
      run_eval(step)
  finally:
    bar.close()
    mngr.wait_until_finished()
    writer.close()

  results = summarize(history, state, config, time.time() - start_time, start_step)
  if jax.process_index() == 0:
    metrics_io.write_json(results_path, results)
  return results


def summarize(history: list[dict[str, Any]], state, config: ml_collections.ConfigDict,
              wall_time: float, start_step: int) -> dict[str, Any]:
  """Final results; the "best" test error is taken at the step of lowest validation error."""
  evals = [r for r in history if "test_error" in r]
  with_val = [r for r in evals if np.isfinite(r.get("val_error", np.nan))]
  best = min(with_val, key=lambda r: r["val_error"]) if with_val else None
  device = jax.devices()[0]
  return {
      "model": config.model, "dataset": config.dataset, "steps": int(jax.device_get(state.step)),
      "test_error": evals[-1]["test_error"] if evals else None,
      "val_error": evals[-1].get("val_error") if evals else None,
      "best_val_step": best["step"] if best else None,
      "best_val_error": best["val_error"] if best else None,
      "test_error_at_best_val": best["test_error"] if best else None,
      "train_error": metrics_io.last(history, "train_error"),
      "num_params": num_params(state.params),
      "wall_time_s": wall_time, "resumed_from_step": start_step,
      "device_kind": device.device_kind, "device_count": jax.device_count(),
  }


if __name__ == "__main__":
  from resnet_jax import cli  # pylint: disable=g-import-not-at-top
  cli.run_train()
