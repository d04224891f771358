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
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
import tqdm

from resnet_jax import (
  analysis,
  checkpoint,
  data,
  feeds,
  metrics_io,
  optim,
  parallel,
  pretrained,
  runs,
)
from resnet_jax.data import records
from resnet_jax.errors import ConfigError, ConfigMismatchError, NonFiniteError
from resnet_jax.train_state import TrainState, create_train_state, num_params

__all__ = ["ConfigMismatchError", "NonFiniteError", "run_results", "train_and_evaluate"]


@dataclasses.dataclass
class _Run:
  """What the loop works with: the feed of batches (and evaluations), the mesh and the writers."""
  config: ml_collections.ConfigDict
  feed: feeds.Feed
  num_classes: int
  mesh: Any
  mngr: Any
  writer: metrics_io.MetricWriter
  history: list[dict[str, Any]]


def _setup(config, workdir: str, source: data.Dataset | records.Prepared,
           devices) -> tuple[_Run, TrainState]:
  """Builds the feed (and so compiles the steps, puts in-memory data on the devices), restores
  the checkpoint."""
  num_classes = runs.num_classes(source)
  model = runs.build_model(config, num_classes)
  tx = optim.make_optimizer(config)
  mesh = parallel.make_mesh(devices)
  repl = parallel.replicated(mesh)
  init_rng, data_rng, aug_rng = jax.random.split(jax.random.key(config.seed), 3)
  init = functools.partial(create_train_state, model, tx,
                           image_shape=runs.image_shape(config, source))
  state = parallel.compile_init(init, mesh)(init_rng)
  mngr = checkpoint.manager(workdir, config.keep_checkpoints)
  restored = checkpoint.restore_latest(mngr, state)
  if restored is not None:
    state = restored
  elif config.init_from:
    state = _initial_weights(config, state, tx, repl)
  writer = metrics_io.MetricWriter(workdir)
  start_step = int(jax.device_get(state.step))
  writer.truncate_after(start_step)
  feed = feeds.make_feed(config, source, model, tx, mesh,
                         parallel.replicate((data_rng, aug_rng), mesh))
  run = _Run(config=config, feed=feed, num_classes=num_classes, mesh=mesh, mngr=mngr,
             writer=writer,
             # Other processes may read the file before process 0 has cut it back to start_step.
             history=[r for r in metrics_io.read_metrics(workdir) if r["step"] <= start_step])
  return run, state


def _initial_weights(config, state: TrainState, tx, repl) -> TrainState:
  """`state` starting from the weights of the run in config.init_from (fine-tuning): the
  optimizer starts afresh; a note of what was taken is printed once."""
  variables, note = pretrained.initial_variables(
      config.init_from, {"params": state.params, "batch_stats": state.batch_stats})
  if jax.process_index() == 0:
    print(note, flush=True)
  return jax.jit(lambda s, v: s.replace(params=v["params"], batch_stats=v["batch_stats"],
                                        opt_state=tx.init(v["params"])),
                 out_shardings=repl)(state, variables)


def _log(run: _Run, step: int, record: dict[str, float]) -> None:
  run.writer.write(step, record)
  run.history.append({"step": step, **record})


def _evaluate(run: _Run, state: TrainState, step: int) -> None:
  errors = {}
  for split in ("val", "test"):
    result = run.feed.evaluate(state, split)
    if result["count"]:  # no held-out images (val_size=0): no val entries, not 0/0
      errors.update({f"{split}_error": result["error"],
                     f"{split}_top5_error": result["top5_error"], f"{split}_loss": result["loss"]})
  _log(run, step, errors)
  if jax.process_index() == 0:
    tqdm.tqdm.write(f"step {step}: " + ", ".join(
        f"{split} error {errors[f'{split}_error']:.4f}" for split in ("val", "test")
        if f"{split}_error" in errors))


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
  while step < c.num_steps:
    length = _call_length(step, c)
    state, metrics = run.feed.train(state, step, length)
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
  crops = c.eval_crops
  if crops > 1 and not any(r["step"] == step and f"test_error_{crops}crop" in r
                           for r in run.history):
    result = run.feed.evaluate(state, "test", crops)
    _log(run, step, {f"test_error_{crops}crop": result["error"],
                     f"test_top5_error_{crops}crop": result["top5_error"]})
  return state


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
    run, state = _open(config, workdir, start_over, devices)
    results = _train(run, state, progress, start_time)
    if jax.process_index() == 0:
      metrics_io.write_json(os.path.join(workdir, metrics_io.RESULTS_FILE), results)
  return results


def _open(config: ml_collections.ConfigDict, workdir: str, start_over: bool,
          devices) -> tuple[_Run, TrainState]:
  """The run's data opened, its workdir prepared and its state restored: what happens before
  the loop, holding the workdir's lock."""
  source = runs.open_data(config)
  num_train = runs.num_train_examples(config, source)
  if config.batch_size > num_train:
    raise ConfigError(f"--config.batch_size={config.batch_size} is larger than the "
                      f"{num_train} training images")
  runs.prepare(config, workdir, source, start_over)
  return _setup(config, workdir, source, devices)


def _train(run: _Run, state: TrainState, progress: bool, start_time: float) -> dict[str, Any]:
  start_step = int(jax.device_get(state.step))
  bar = tqdm.tqdm(total=run.config.num_steps, initial=start_step, desc=run.config.model,
                  unit="step", disable=not progress or jax.process_index() != 0,
                  dynamic_ncols=True)
  try:
    state = _train_loop(run, state, bar)
    return _results(run, state, start_step, time.time() - start_time)
  finally:
    bar.close()
    run.feed.close()
    run.mngr.wait_until_finished()
    run.writer.close()


def _results(run: _Run, state: TrainState, start_step: int, wall_time: float) -> dict[str, Any]:
  """`run_results` and what needs the run's data and model: the whole-split training error and
  the size of the model's implicit ensemble (for the comparisons of `make ensemble-size`)."""
  results = run_results(run.history, state, run.config, wall_time, start_step)
  results["train_error"] = run.feed.train_error(state)
  results["num_train_examples"] = run.feed.num_train_examples
  results["log2_num_paths"] = analysis.log2_num_paths(
      runs.build_model(run.config, run.num_classes))
  return results


def run_results(history: list[dict[str, Any]], state: TrainState,
                config: ml_collections.ConfigDict, wall_time: float,
                start_step: int) -> dict[str, Any]:
  """A run's results; the "best" test error is taken at the step of lowest validation error.

  "train_batch_error" is the mean error over the last logged training batches (augmented, BN in
  training mode); the loop adds "train_error", the error on the whole training split (None for a
  streamed data set, whose training split is not evaluated whole). Top-5 errors are those of the
  last evaluation; with `eval_crops` K > 1 the last step is also evaluated with K crops per test
  image ("test_error_{K}crop", "test_top5_error_{K}crop").
  """
  evals = [r for r in history if "test_error" in r]
  with_val = [r for r in evals if np.isfinite(r.get("val_error", np.nan))]
  best = min(with_val, key=lambda r: r["val_error"]) if with_val else None
  crops = [r for r in history if f"test_error_{config.eval_crops}crop" in r]
  multi_crop = ({k: crops[-1][k] for k in (f"test_error_{config.eval_crops}crop",
                                           f"test_top5_error_{config.eval_crops}crop")}
                if config.eval_crops > 1 and crops else {})
  return {
      "model": config.model, "dataset": config.dataset, "steps": int(jax.device_get(state.step)),
      "test_error": evals[-1]["test_error"] if evals else None,
      "test_top5_error": evals[-1].get("test_top5_error") if evals else None,
      **multi_crop,
      "val_error": evals[-1].get("val_error") if evals else None,
      "best_val_step": best["step"] if best else None,
      "best_val_error": best["val_error"] if best else None,
      "test_error_at_best_val": best["test_error"] if best else None,
      "train_batch_error": metrics_io.last(history, "train_error"),
      "num_params": num_params(state.params),
      "wall_time_s": wall_time, "resumed_from_step": start_step,
      "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
  }
