"""An experiment's models trained side by side, one process each, then its summary.

  python -m resnet_jax.concurrent_runs --config=experiments/degradation.py:fashion_mnist \
      --workdir=runs/degradation_fm [--models=resnet20,plain20] [--jobs=4] [--deadline_s=3600] \
      [--seeds=1] [--joint_seeds] [--config.train.FIELD=VALUE ...]

Each run depends only on its config and seed, so the runs, summary.json, report.md and figures are
those of `python -m resnet_jax.experiment` with the same arguments. Side by side they can finish
sooner where one small model leaves the accelerator partly idle (a CIFAR-sized net on a large GPU)
or one compilation leaves cores idle. Every process is
`python -m resnet_jax.experiment --runs_only` over one model, logging to WORKDIR/logs/MODEL.log;
rerunning the command resumes each run from its checkpoints, as usual.

--deadline_s stops the runs still training after that many seconds (their checkpoints stay, so a
rerun resumes them); the summary then covers the models that finished, in the config's order.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import tqdm
from absl import flags
from ml_collections import config_flags

from resnet_jax import cli, metrics_io
from resnet_jax.configs import run_dir

POLL_S = 2.0


def load_config(config_arg: str, overrides: list[str]):
  """The experiment config "PATH[:ARG]" with its --config.FIELD overrides applied, parsed by
  ml_collections' config_flags exactly as the experiment command will parse them."""
  argv = ["concurrent_runs", f"--config={config_arg}", *overrides]
  values = flags.FlagValues()
  # sys_argv: the config flag defines one flag per override it finds there (else in sys.argv).
  config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True,
                                  sys_argv=argv)
  rest = values(argv)
  if len(rest) > 1:
    raise flags.Error(f"unrecognized arguments: {rest[1:]} (only --config.FIELD=VALUE "
                      "overrides pass through)")
  return values.config


def models_flag(models) -> str:
  return "--config.models=(" + "".join(f"{m!r}," for m in models) + ")"


def finished(workdir: str, model: str, seeds: int) -> bool:
  return all(os.path.exists(os.path.join(run_dir(workdir, s, model), metrics_io.RESULTS_FILE))
             for s in range(seeds))


def steps_done(workdir: str, model: str, seeds: int) -> int:
  """Training steps logged so far by a model's runs (read from their metrics.jsonl)."""
  total = 0
  for seed in range(seeds):
    path = os.path.join(run_dir(workdir, seed, model), metrics_io.METRICS_FILE)
    if os.path.exists(path):
      steps = [r["step"] for r in metrics_io.read_metrics_file(path) if "loss" in r]
      total += max(steps, default=0)
  return total


def experiment_command(args, models, extra, runs_only: bool) -> list[str]:
  command = [sys.executable, "-m", "resnet_jax.experiment", f"--config={args.config}",
             f"--workdir={args.workdir}", f"--seeds={args.seeds}",
             f"--joint_seeds={str(args.joint_seeds).lower()}", models_flag(models), *extra]
  return command + (["--runs_only"] if runs_only else [])


def train_side_by_side(args, models, extra, per_run: int) -> dict[str, int | None]:
  """Runs one process per model, at most args.jobs at once; returns each model's exit status."""
  logs = os.path.join(args.workdir, "logs")
  os.makedirs(logs, exist_ok=True)
  env = dict(os.environ)
  # Several processes share one accelerator: without this the first would take 75% of its memory.
  env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
  waiting, running, status = list(models), {}, {}
  deadline = time.time() + args.deadline_s if args.deadline_s > 0 else None
  bar = tqdm.tqdm(total=per_run * args.seeds * len(models), unit="step", desc="all runs",
                  dynamic_ncols=True)
  try:
    while waiting or running:
      while waiting and len(running) < args.jobs:
        model = waiting.pop(0)
        log = open(os.path.join(logs, f"{model.replace(':', '_')}.log"), "a")
        running[model] = (subprocess.Popen(experiment_command(args, [model], extra, True),
                                           stdout=log, stderr=subprocess.STDOUT, env=env), log)
      time.sleep(POLL_S)
      for model, (process, log) in list(running.items()):
        if process.poll() is not None:
          status[model] = process.returncode
          log.close()
          del running[model]
          tqdm.tqdm.write(f"{model}: {'finished' if process.returncode == 0 else 'FAILED'} "
                          f"(exit {process.returncode}; log {log.name})")
      if deadline is not None and time.time() > deadline:
        for model, (process, log) in running.items():
          process.terminate()
          process.wait()
          log.close()
          status[model] = process.returncode
          tqdm.tqdm.write(f"{model}: stopped at the deadline; rerun to resume it")
        running = {}
        for model in waiting:
          status[model] = None
        waiting = []
      bar.n = sum(steps_done(args.workdir, m, args.seeds) for m in models)
      bar.refresh()
  finally:
    for process, log in running.values():  # interrupted: leave no orphan training processes
      process.terminate()
      process.wait()
      log.close()
    bar.close()
  return status


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", required=True, help="experiments/EXPERIMENT.py:DATASET[,smoke]")
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--models", default="", help="comma-separated; default: the config's")
  parser.add_argument("--jobs", type=int, default=0, help="processes at once; 0: all models")
  parser.add_argument("--deadline_s", type=float, default=0, help="0: none")
  parser.add_argument("--seeds", type=int, default=1)
  parser.add_argument("--joint_seeds", action="store_true",
                      help="each model's seeds in one compiled step")
  args, extra = parser.parse_known_args(argv)
  try:
    config = load_config(args.config, extra)
  except (flags.Error, ValueError, AttributeError, KeyError) as err:
    parser.error(cli.message(err))
  order = tuple(config.models)
  models = tuple(m for m in args.models.split(",") if m) or order
  missing = [m for m in models if m not in order]
  if missing:
    parser.error(f"models {missing} are not in {args.config}'s models {order}")
  args.jobs = args.jobs or len(models)
  status = train_side_by_side(args, models, extra, config.train.num_steps)
  done = [m for m in order if m in models and finished(args.workdir, m, args.seeds)]
  print(json.dumps({"finished": done, "not_finished": [m for m in models if m not in done]}))
  if done:
    subprocess.run(experiment_command(args, done, extra, False), check=True)
  return 0 if all(status.get(m) == 0 for m in models) else 1


if __name__ == "__main__":
  sys.exit(main())
