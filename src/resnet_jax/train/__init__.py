"""The training loop: `train_and_evaluate(config, workdir)`; `python -m resnet_jax.train` runs it.

  python -m resnet_jax.train --config=experiments/configs/digits.py --workdir=runs/digits

Rerunning the same command resumes from the latest checkpoint in the workdir; the data order and
augmentation depend only on (seed, step), so a killed and resumed run ends with exactly the
parameters of an uninterrupted one. With `steps_per_call` K > 1 the loop runs K steps per
compiled call, and a call never crosses a log, eval or checkpoint boundary.
"""
import dataclasses
import functools
import os
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
import tqdm

from resnet_jax import analysis, checkpoint, data, metrics_io, optim, parallel, runs, steps
from resnet_jax.errors import ConfigError, ConfigMismatchError, NonFiniteError
from resnet_jax.train_state import TrainState, create_train_state, num_params

__all__ = ["ConfigMismatchError", "NonFiniteError", "run_results", "train_and_evaluate"]


@dataclasses.dataclass
class _Run:
  """What the loop works with: the compiled steps, the device-resident data and the writers.

  train_steps runs config.steps_per_call steps per call (None when that is 1); data_order(data_rng,
  step) draws the epochs' permutations that such a call, or a single step, gathers from.
  """
  config: ml_collections.ConfigDict
  dataset: data.Dataset
  mesh: Any
  train_step: Callable
  train_steps: Callable | None
  data_order: Callable
  eval_step: Callable
  train_data: dict[str, jax.Array]
  keys: tuple[jax.Array, jax.Array]
  mngr: Any
  writer: metrics_io.MetricWriter
  history: list[dict[str, Any]]


def _setup(config, workdir: str, dataset: data.Dataset, devices) -> tuple[_Run, TrainState]:
  """Builds and compiles the steps, puts the data on the devices, restores the checkpoint."""
  model = runs.build_model(config, dataset.num_classes)
  tx = optim.make_optimizer(config)
  mesh = parallel.make_mesh(devices)
  repl = parallel.replicated(mesh)
  init_rng, data_rng, aug_rng = jax.random.split(jax.random.key(config.seed), 3)
  init = functools.partial(create_train_state, model, tx, image_shape=dataset.image_shape)
  state = jax.jit(init, out_shardings=repl)(init_rng)
  mngr = checkpoint.manager(workdir, config.keep_checkpoints)
  restored = checkpoint.restore_latest(mngr, state)
  state = state if restored is None else restored
  step_fn = _step_fn(config, model, tx)
  train_data = {"image": parallel.put_global(dataset.train_images, repl),
                "label": parallel.put_global(dataset.train_labels, repl)}
  writer = metrics_io.MetricWriter(workdir)
  start_step = int(jax.device_get(state.step))
  writer.truncate_after(start_step)
  per_call = config.steps_per_call
  run = _Run(config=config, dataset=dataset, mesh=mesh,
             train_step=parallel.compile_train_step(step_fn, mesh, batch_size=config.batch_size,
                                                    per_device_bn=config.per_device_bn),
             train_steps=None if per_call == 1 else parallel.compile_train_steps(
                 step_fn, mesh, batch_size=config.batch_size, num_steps=per_call,
                 per_device_bn=config.per_device_bn),
             data_order=parallel.compile_data_order(
                 mesh, num_examples=len(dataset.train_labels), batch_size=config.batch_size,
                 num_batches=per_call),
             eval_step=parallel.compile_eval_step(
                 functools.partial(steps.eval_step, model=model, compute_dtype=config.dtype),
                 mesh),
             train_data=train_data, keys=parallel.replicate((data_rng, aug_rng), mesh),
             mngr=mngr,
             writer=writer,
             # Other processes may read the file before process 0 has cut it back to start_step.
             history=[r for r in metrics_io.read_metrics(workdir) if r["step"] <= start_step])
  return run, state


def _step_fn(config: ml_collections.ConfigDict, model, tx) -> Callable:
  """steps.train_step with the run's model, optimizer, schedule and augmentation bound."""
  warmup = optim.error_warmup(config)
  return functools.partial(
      steps.train_step, model=model, tx=tx, learning_rate_fn=optim.learning_rate_schedule(config),
      batch_size=config.batch_size, augment_pad=config.augment_pad,
      augment_flip=config.augment_flip, warmup_factor=warmup.factor,
      warmup_error=warmup.until_error, compute_dtype=config.dtype)


def _log(run: _Run, step: int, record: dict[str, float]) -> None:
  run.writer.write(step, record)
  run.history.append({"step": step, **record})


def _evaluate(run: _Run, state: TrainState, step: int) -> None:
  errors = {}
  for split in ("val", "test"):
    result = parallel.evaluate(run.eval_step, state, getattr(run.dataset, f"{split}_images"),
                               getattr(run.dataset, f"{split}_labels"), run.mesh,
                               run.config.eval_batch_size)
    errors.update({f"{split}_error": result["error"], f"{split}_loss": result["loss"]})
  _log(run, step, errors)
  if jax.process_index() == 0:
    tqdm.tqdm.write(f"step {step}: val error {errors['val_error']:.4f}, "
                    f"test error {errors['test_error']:.4f}")


def _check_finite(window: list[dict[str, float]], step: int, mngr) -> None:
  for i, m in enumerate(window):
    if not (np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"])):
      last_saved = mngr.latest_step()
      kept = ("no checkpoint was saved before it, so a rerun starts from step 0"
              if last_saved is None else
              f"the checkpoint of step {last_saved} is kept and a rerun resumes from it")
      raise NonFiniteError(
          f"non-finite loss ({m['loss']}) or gradient norm ({m['grad_norm']}) at step "
          f"{step - len(window) + i + 1}: stopped without saving; {kept} (lower "
          "--config.learning_rate or use a warm-up)")


def _at(step: int, num_steps: int, every: int) -> bool:
  """Whether `step` is a boundary of a period `every` (the last step always is)."""
  return step % every == 0 or step == num_steps


def _call_length(step: int, config: ml_collections.ConfigDict) -> int:
  """Steps of the next call from `step`: steps_per_call, or 1 where fewer steps than that are left
  before the next log, eval or checkpoint boundary or the end (a call never crosses one)."""
  boundary = min([(step // every + 1) * every for every in
                  (config.log_every, config.eval_every, config.checkpoint_every)]
                 + [config.num_steps])
  return config.steps_per_call if boundary - step >= config.steps_per_call else 1


def _per_step(metrics: list[dict[str, np.ndarray]]) -> list[dict[str, float]]:
  """Host metrics of single steps (scalars) and of K-step calls ([K] each), one dict per step."""
  window = []
  for m in metrics:
    stacked = {k: np.reshape(v, -1) for k, v in m.items()}
    window += [{k: v[i] for k, v in stacked.items()} for i in range(len(stacked["loss"]))]
  return window


def _train_loop(run: _Run, state: TrainState, bar: tqdm.tqdm) -> TrainState:
  """Steps to num_steps, logging, evaluating and checkpointing at the config's boundaries."""
  c = run.config
  step = int(jax.device_get(state.step))
  pending, window_start, window_step = [], time.time(), step
  num_examples = len(run.dataset.train_labels)
  order_epoch, order = None, None
  while step < c.num_steps:
    epoch = step * c.batch_size // num_examples
    if epoch != order_epoch:  # an order serves every call that starts in its first epoch
      order_epoch, order = epoch, run.data_order(run.keys[0], state.step)
    length = _call_length(step, c)
    call = run.train_step if length == 1 else run.train_steps
    state, metrics = call(state, run.train_data, *run.keys, order)
    pending.append(metrics)
    step += length
    at = functools.partial(_at, step, c.num_steps)
    if not (at(c.log_every) or at(c.eval_every) or at(c.checkpoint_every)):
      continue
    window, pending = _per_step(jax.device_get(pending)), []
    _check_finite(window, step, run.mngr)
    mean = {k: float(np.mean([m[k] for m in window])) for k in window[0]}
    now = time.time()
    mean["images_per_s"] = (step - window_step) * c.batch_size / max(now - window_start, 1e-9)
    window_start, window_step = now, step
    _log(run, step, mean)
    bar.update(step - bar.n)
    bar.set_postfix(loss=f"{mean['loss']:.3f}", err=f"{mean['train_error']:.3f}",
                    lr=f"{mean['lr']:.3g}", img_s=f"{mean['images_per_s']:.0f}")
    if at(c.eval_every):
      _evaluate(run, state, step)
    if at(c.checkpoint_every):
      checkpoint.save(run.mngr, state)
  if not any(r["step"] == step and "test_error" in r for r in run.history):
    _evaluate(run, state, step)
  return state


def _training_error(run: _Run, state: TrainState) -> float:
  """The final model's error on the whole training split (no augmentation, BN in eval mode):
  the training error of He et al. 2015 Fig. 6, not the mean over augmented training batches."""
  return parallel.evaluate(run.eval_step, state, run.dataset.train_images,
                           run.dataset.train_labels, run.mesh, run.config.eval_batch_size)["error"]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       start_over: bool = False, devices: Sequence[jax.Device] | None = None,
                       progress: bool = True) -> dict[str, Any]:
  """Trains `config.model` on `config.dataset`, evaluating, logging and checkpointing in
  `workdir` (see `resnet_jax.runs` for what it holds).

  The config is checked before anything is written, and the data before the workdir is touched,
  so a failed start leaves the workdir as it was. A run that finished before returns its saved
  results without loading data, compiling or writing anything.

  Returns:
    The results also written to workdir/results.json.
  Raises:
    errors.UserError subclasses: a bad config (ConfigError), a workdir of another run
    (ConfigMismatchError), a workdir in use (WorkdirLockedError), unreadable files, missing data,
    a loss that stopped being finite (NonFiniteError).
  """
  start_time = time.time()
  config = runs.check_config(config, len(devices) if devices else None)
  if not start_over:
    runs.check_resumable(config, workdir)
    saved = runs.read_results(workdir)
    if saved is not None and saved["steps"] >= config.num_steps:
      return saved
  with runs.lock(workdir):
    dataset = runs.load_data(config)
    if config.batch_size > len(dataset.train_labels):
      raise ConfigError(f"--config.batch_size={config.batch_size} is larger than the "
                        f"{len(dataset.train_labels)} training images")
    runs.prepare(config, workdir, dataset, start_over)
    run, state = _setup(config, workdir, dataset, devices)
    results = _train(run, state, progress, start_time)
    if jax.process_index() == 0:
      metrics_io.write_json(os.path.join(workdir, metrics_io.RESULTS_FILE), results)
  return results


def _train(run: _Run, state: TrainState, progress: bool, start_time: float) -> dict[str, Any]:
  start_step = int(jax.device_get(state.step))
  bar = tqdm.tqdm(total=run.config.num_steps, initial=start_step, desc=run.config.model,
                  unit="step", disable=not progress or jax.process_index() != 0,
                  dynamic_ncols=True)
  try:
    state = _train_loop(run, state, bar)
  finally:
    bar.close()
    run.mngr.wait_until_finished()
    run.writer.close()
  return _results(run, state, start_step, time.time() - start_time)


def _results(run: _Run, state: TrainState, start_step: int, wall_time: float) -> dict[str, Any]:
  """`run_results` and what needs the run's data and model: the whole-split training error and
  the size of the model's implicit ensemble (for the comparisons of `make ensemble-size`)."""
  results = run_results(run.history, state, run.config, wall_time, start_step)
  results["train_error"] = _training_error(run, state)
  results["log2_num_paths"] = analysis.log2_num_paths(
      runs.build_model(run.config, run.dataset.num_classes))
  return results


def run_results(history: list[dict[str, Any]], state: TrainState,
                config: ml_collections.ConfigDict, wall_time: float,
                start_step: int) -> dict[str, Any]:
  """A run's results; the "best" test error is taken at the step of lowest validation error.

  "train_batch_error" is the mean error over the last logged training batches (augmented, BN in
  training mode); the loop adds "train_error", the error on the whole training split.
  """
  evals = [r for r in history if "test_error" in r]
  with_val = [r for r in evals if np.isfinite(r.get("val_error", np.nan))]
  best = min(with_val, key=lambda r: r["val_error"]) if with_val else None
  return {
      "model": config.model, "dataset": config.dataset, "steps": int(jax.device_get(state.step)),
      "test_error": evals[-1]["test_error"] if evals else None,
      "val_error": evals[-1].get("val_error") if evals else None,
      "best_val_step": best["step"] if best else None,
      "best_val_error": best["val_error"] if best else None,
      "test_error_at_best_val": best["test_error"] if best else None,
      "train_batch_error": metrics_io.last(history, "train_error"),
      "num_params": num_params(state.params),
      "wall_time_s": wall_time, "resumed_from_step": start_step,
      "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
  }
