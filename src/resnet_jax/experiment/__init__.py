r"""An experiment: several models (and seeds) trained with one recipe, analysed, and compared.

  python -m resnet_jax.experiment --config=experiments/degradation.py:digits \
      --workdir=runs/degradation

Each run lives in WORKDIR/seed{S}/{model} (`configs.run_dir`) and is an ordinary training
workdir (rerunning resumes it). The experiment then writes WORKDIR/summary.json,
WORKDIR/report.md and the comparison figures WORKDIR/figures/*.png|svg (`resnet_jax.report`).
With several seeds, each model's numbers are the median and mean±std over seeds of the test
error *at the step of best validation error* (never chosen by test error); `--joint_seeds` trains
the seeds of each model in one compiled step (the same runs, see `resnet_jax.train.seeds`).
"""
import copy
from typing import Any

import ml_collections

from resnet_jax import analyze, configs, metrics_io, report, train
from resnet_jax.train.seeds import train_seeds


def run_configs(config: ml_collections.ConfigDict,
                seeds: int) -> dict[tuple[int, str], ml_collections.ConfigDict]:
  """The training config of every (seed, model entry): the experiment's recipe with the model,
  its shortcut or model options and the seed filled in. Every other field, the warm-up included,
  is the recipe's as given (an "auto" warm-up is decided per model when the run starts)."""
  if seeds < 1:
    raise ValueError(f"seeds must be >= 1, got {seeds}")
  out = {}
  for seed in range(seeds):
    for spec in config.models:
      train_config = copy.deepcopy(config.train)
      (train_config.model, train_config.shortcut,
       train_config.model_options) = configs.split_spec(spec)
      train_config.seed = seed
      out[(seed, spec)] = train_config
  return out


def run_experiment(config: ml_collections.ConfigDict, workdir: str, *, seeds: int = 1,
                   joint_seeds: bool = False, progress: bool = True,
                   runs_only: bool = False) -> dict[str, Any] | None:
  """Trains and analyses every (seed, model), then writes summary.json, report.md, figures/.

  With joint_seeds the seeds of each model train in one compiled step (`train.seeds`): the same
  runs and results to float tolerance, in the same workdirs; faster where one run leaves the
  device partly idle (measure it with benchmarks/joint_seeds.py). With runs_only it writes no
  summary, report or figures and returns None: several processes can then train the models of
  one workdir side by side (`resnet_jax.concurrent_runs`).
  """
  train_configs = run_configs(config, seeds)
  trained = {}
  if joint_seeds and seeds > 1:
    for spec in config.models:
      keys = [(seed, spec) for seed in range(seeds)]
      directories = [configs.run_dir(workdir, seed, spec) for seed in range(seeds)]
      print(f"== {config.name}: {spec}, seeds 0-{seeds - 1} in one step -> "
            f"{', '.join(directories)}", flush=True)
      results = train_seeds([train_configs[k] for k in keys], directories, progress=progress)
      trained.update(zip(keys, results))
  runs = {}
  for (seed, spec), train_config in train_configs.items():
    directory = configs.run_dir(workdir, seed, spec)
    if (seed, spec) in trained:
      results = trained[(seed, spec)]
    else:
      print(f"== {config.name}: {spec}, seed {seed} -> {directory}", flush=True)
      results = train.train_and_evaluate(train_config, directory, progress=progress)
    run = {"results": results, "history": metrics_io.read_metrics(directory)}
    if config.analyses:
      run["analysis"] = analyze.analyze_run(directory, config.analyses, config.analysis, progress)
    runs[(seed, spec)] = run
  if runs_only:
    return None
  return report.report(config, runs, seeds, workdir)
