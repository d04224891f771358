"""Several seeds of one model trained as one compiled step: `train_seeds(configs, workdirs)`.

Each seed keeps its own workdir exactly as `train_and_evaluate` writes it (config.json, data.json,
checkpoints, metrics.jsonl, results.json), so analyses, reports and a rerun read it unchanged.
Only the train step is shared: the seeds' states are stacked on a leading axis and one compiled
call (`parallel.compile_seeds_train_step`) steps them all, each seed with its own initialisation,
data (its own validation split), data order, augmentation, model rngs and BatchNorm statistics,
so each ends with the parameters of its separate run, to float tolerance.

Resuming: the seeds resume from their own checkpoints. Seeds whose workdirs stand at different
steps (a run killed while saving, or seeds trained one by one before) are trained as groups, one
group per step and the least advanced first (a group of one trains as an ordinary run), so each
continues exactly from where it stopped.

The seeds' workdirs are written by the loop's own pieces (`train._setup`, `_log`, `_evaluate`,
`_results`), so a seed's files are those of its separate run.

A seed whose loss stops being finite stops at that log step, with nothing of it saved there (its
last checkpoint stays); the other seeds train to the end and write their results, and then a
NonFiniteError names the seed, as its separate run would have.
"""
import contextlib
import dataclasses
import functools
import os
import time
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np
import tqdm

from resnet_jax import checkpoint, feeds, metrics_io, optim, parallel, runs, train
from resnet_jax.errors import ConfigError, NonFiniteError
from resnet_jax.train_state import TrainState


@dataclasses.dataclass
class _Joint:
  """The seeds that train together: their runs (in the order of the stacked axis) and the one
  compiled step over all of them, with their data and keys stacked alike."""
  runs: list[train._Run]
  index: list[int]  # each run's position among the seeds the group started with
  mesh: Any
  train_step: Callable
  train_data: dict[str, jax.Array]
  shared_data: bool
  keys: tuple[jax.Array, jax.Array]


def check_one_model(configs: Sequence[ml_collections.ConfigDict]) -> None:
  """Seeds train in one step only as runs of one model and recipe: every field but the seed
  equal (ConfigError naming the fields that differ)."""
  first = configs[0].to_dict()
  for config in configs[1:]:
    other = config.to_dict()
    differ = sorted(k for k in set(first) | set(other)
                    if k != "seed" and first.get(k) != other.get(k))
    if differ:
      raise ConfigError(f"seeds train in one step only with the same config but the seed; these "
                        f"differ: {', '.join(differ)}")


def train_seeds(configs: Sequence[ml_collections.ConfigDict], workdirs: Sequence[str], *,
                start_over: bool = False, devices: Sequence[jax.Device] | None = None,
                progress: bool = True, formulation: str | None = None) -> list[dict[str, Any]]:
  """Trains the runs `configs` (one model, different seeds) in one compiled step, each in its
  own workdir as `train_and_evaluate(configs[i], workdirs[i])` would.

  Runs that finished before return their saved results, as in `train_and_evaluate`. Each
  results.json holds "joint_seeds" (how many seeds shared its steps) and, as "wall_time_s", its
  share of the group's wall time (the group's time / its seeds), so that sums over seeds stay
  the time spent.

  Args:
    configs, workdirs: one per seed; the configs differ only in their seed.
    start_over, devices, progress: as for `train_and_evaluate`.
    formulation: how the step batches the seeds (`parallel.SEEDS_FORMULATIONS`; None: the
      faster one on the devices, `parallel.default_seeds_formulation`).
  Returns:
    Each seed's results, in the order of `configs`.
  Raises:
    The errors of `train_and_evaluate`; a NonFiniteError only once the other seeds finished.
  """
  start_time = time.time()
  if len(configs) != len(workdirs) or not configs:
    raise ValueError(f"one workdir per config: got {len(configs)} configs, {len(workdirs)} "
                     "workdirs")
  if len({os.path.abspath(w) for w in workdirs}) != len(workdirs):
    raise ValueError(f"every seed needs its own workdir, got {list(workdirs)}")
  configs = [runs.check_config(c, len(devices) if devices else None) for c in configs]
  check_one_model(configs)
  results: list[dict[str, Any] | None] = [None] * len(configs)
  if not start_over:
    for i, (config, workdir) in enumerate(zip(configs, workdirs)):
      runs.check_resumable(config, workdir)
      saved = runs.read_results(workdir)
      if saved is not None and saved["steps"] >= config.num_steps:
        results[i] = saved
  todo = [i for i, r in enumerate(results) if r is None]
  failures: list[str] = []
  with contextlib.ExitStack() as locks:
    for i in todo:
      locks.enter_context(runs.lock(workdirs[i]))
    started = {i: _start(configs[i], workdirs[i], start_over, devices) for i in todo}
    clock = start_time
    for group in _groups(started):
      finished = _train_group([started[i] for i in group], progress, failures,
                              formulation)
      now = time.time()
      for i, (run, state, start_step) in zip(group, finished):
        if state is None:
          continue
        results[i] = train._results(run, state, start_step, (now - clock) / len(group))
        results[i]["joint_seeds"] = len(group)
        if jax.process_index() == 0:
          metrics_io.write_json(os.path.join(workdirs[i], metrics_io.RESULTS_FILE), results[i])
      clock = time.time()
  if failures:
    trained = [str(configs[i].seed) for i in todo if results[i] is not None]
    raise NonFiniteError("; ".join(failures) + (
        f" (seeds {', '.join(trained)} trained to the end)" if trained else ""))
  return results


def _start(config: ml_collections.ConfigDict, workdir: str, start_over: bool,
           devices) -> tuple[train._Run, TrainState]:
  """A seed's data loaded, its workdir prepared and its state restored, as
  `train_and_evaluate` does before its loop."""
  if runs.streamed(config):
    raise ConfigError(f"--joint_seeds trains data sets held in memory; {config.dataset} is "
                      "streamed: train its seeds one by one (--joint_seeds=false)")
  return train._open(config, workdir, start_over, devices)


def _step_of(state: TrainState) -> int:
  return int(jax.device_get(state.step))


def _groups(started: dict[int, tuple[Any, TrainState]]) -> list[list[int]]:
  """The seeds grouped by the step they resume from, least advanced first."""
  by_step: dict[int, list[int]] = {}
  for i, (_, state) in started.items():
    by_step.setdefault(_step_of(state), []).append(i)
  return [by_step[step] for step in sorted(by_step)]


def _train_group(members: list[tuple[Any, TrainState]], progress: bool, failures: list[str],
                 formulation: str | None) -> list[tuple[Any, TrainState | None, int]]:
  """Trains seeds that stand at the same step to the end; a seed that fails is reported in
  `failures` and comes back with state None."""
  seed_runs = [run for run, _ in members]
  config, start_step = seed_runs[0].config, _step_of(members[0][1])
  desc = config.model + (f" x{len(members)} seeds" if len(members) > 1 else "")
  bar = tqdm.tqdm(total=config.num_steps, initial=start_step, desc=desc, unit="step",
                  disable=not progress or jax.process_index() != 0, dynamic_ncols=True)
  try:
    if len(members) == 1:
      try:
        finals = [train._train_loop(*members[0], bar)]
      except NonFiniteError as err:
        failures.append(_failure(seed_runs[0], err))
        finals = [None]
    else:
      finals = _joint_loop(*_join(members, formulation), bar, failures)
  finally:
    bar.close()
    for run in seed_runs:
      run.mngr.wait_until_finished()
      run.writer.close()
  return [(run, state, start_step) for run, state in zip(seed_runs, finals)]


def _failure(run, err: NonFiniteError) -> str:
  return f"seed {run.config.seed} ({os.path.dirname(str(run.mngr.directory))}): {err}"


def _same_train_data(a, b) -> bool:
  return (np.array_equal(a.train_images, b.train_images)
          and np.array_equal(a.train_labels, b.train_labels))


def _join(members: list[tuple[Any, TrainState]],
          formulation: str | None) -> tuple[_Joint, TrainState]:
  """The seeds' runs as one `_Joint` and their states stacked. Seeds that train on the same
  images (no validation split drawn by seed) share one copy of them on the device, and all share
  one compiled eval step (the same function: one compile instead of one per seed)."""
  seed_runs = [run for run, _ in members]
  first = seed_runs[0]
  shared = all(_same_train_data(first.feed.dataset, run.feed.dataset) for run in seed_runs[1:])
  train_data = (first.feed.train_data if shared else
                parallel.stack_seeds([run.feed.train_data for run in seed_runs], first.mesh))
  for run in seed_runs:  # the joint copy serves them all
    run.feed.train_data, run.feed.eval_step = None, first.feed.eval_step
  model = runs.build_model(first.config, first.num_classes)
  step_fn = feeds.device_step_fn(first.config, model, optim.make_optimizer(first.config))
  joint = _Joint(
      runs=seed_runs, index=list(range(len(seed_runs))), mesh=first.mesh,
      train_step=parallel.compile_seeds_train_step(
          step_fn, first.mesh, batch_size=first.config.batch_size,
          per_device_bn=first.config.per_device_bn, shared_data=shared, formulation=formulation),
      train_data=train_data, shared_data=shared,
      keys=parallel.stack_seeds([run.feed.keys for run in seed_runs], first.mesh))
  return joint, parallel.stack_seeds([state for _, state in members], first.mesh)


def _drop(joint: _Joint, states: TrainState, failed: list[int]) -> tuple[_Joint, TrainState]:
  """`joint` and `states` without the seeds at positions `failed` (the step recompiles for the
  seeds left)."""
  keep = [i for i in range(len(joint.runs)) if i not in failed]

  def select(tree):
    return parallel.stack_seeds(parallel.unstack_seeds(tree, joint.mesh, keep), joint.mesh)
  return dataclasses.replace(
      joint, runs=[joint.runs[i] for i in keep], index=[joint.index[i] for i in keep],
      keys=select(joint.keys),
      train_data=joint.train_data if joint.shared_data else select(joint.train_data)
  ), select(states)


def _joint_loop(joint: _Joint, states: TrainState, bar: tqdm.tqdm,
                failures: list[str]) -> list[TrainState | None]:
  """`train._train_loop` for the seeds of `joint`: one compiled step for all of them; each seed
  logs, evaluates and checkpoints in its own workdir at the config's boundaries. Returns each
  seed's final state (None for a seed whose loss stopped being finite)."""
  c = joint.runs[0].config
  finals: list[TrainState | None] = [None] * len(joint.runs)
  step = int(jax.device_get(states.step)[0])
  pending, window_start, window_step = [], time.time(), step
  while step < c.num_steps:
    states, metrics = joint.train_step(states, joint.train_data, *joint.keys)
    pending.append(metrics)
    step += 1
    at = functools.partial(train._at, step, c.num_steps)
    if not (at(c.log_every) or at(c.eval_every) or at(c.checkpoint_every)):
      continue
    window, pending = jax.device_get(pending), []
    now = time.time()
    # Each seed's own images/s: the seeds share the step, so together they train len(runs) times
    # as many.
    images_per_s = (step - window_step) * c.batch_size / max(now - window_start, 1e-9)
    window_start, window_step = now, step
    seed_states = (parallel.unstack_seeds(states, joint.mesh)
                   if at(c.eval_every) or at(c.checkpoint_every) else None)
    failed, means = [], []
    for i, run in enumerate(joint.runs):
      seed_window = [{k: v[i] for k, v in m.items()} for m in window]
      try:
        train._check_finite(seed_window, step, run.mngr)
      except NonFiniteError as err:
        failures.append(_failure(run, err))
        failed.append(i)
        continue
      mean = {k: float(np.mean([m[k] for m in seed_window])) for k in seed_window[0]}
      mean["images_per_s"] = images_per_s
      means.append(mean)
      train._log(run, step, mean)
      if at(c.eval_every):
        train._evaluate(run, seed_states[i], step)
      if at(c.checkpoint_every):
        checkpoint.save(run.mngr, seed_states[i])
    bar.update(step - bar.n)
    if means:
      bar.set_postfix(loss=f"{np.mean([m['loss'] for m in means]):.3f}",
                      err=f"{np.mean([m['train_error'] for m in means]):.3f}",
                      lr=f"{means[0]['lr']:.3g}", img_s=f"{len(means) * images_per_s:.0f}")
    if failed:
      if len(failed) == len(joint.runs):
        return finals
      joint, states = _drop(joint, states, failed)
  for i, (run, state) in enumerate(zip(joint.runs, parallel.unstack_seeds(states, joint.mesh))):
    if not any(r["step"] == step and "test_error" in r for r in run.history):
      train._evaluate(run, state, step)
    finals[joint.index[i]] = state
  return finals
