"""`python -m resnet_jax.experiment --config=experiments/EXPERIMENT.py:DATASET --workdir=DIR`."""
import os

from absl import flags

from resnet_jax import cli, experiment, report

_CONFIG = cli.define_config("experiments/EXPERIMENT.py:DATASET[,smoke]")
_WORKDIR = flags.DEFINE_string("workdir", None,
                               "Experiment directory (one training workdir per run).")
_SEEDS = flags.DEFINE_integer("seeds", 1,
                              "Seeds per model; the report gives median and mean ± std.")
_JOINT_SEEDS = flags.DEFINE_bool("joint_seeds", False,
                                 "Train the seeds of each model in one compiled step (the same "
                                 "runs to float tolerance; on a CPU no faster).")
_RUNS_ONLY = flags.DEFINE_bool("runs_only", False,
                               "Train (and analyse) the runs; write no summary, report or "
                               "figures (for processes that share a workdir).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  cli.start(argv)
  experiment.run_experiment(_CONFIG.value, _WORKDIR.value, seeds=_SEEDS.value,
                            joint_seeds=_JOINT_SEEDS.value, runs_only=_RUNS_ONLY.value)
  if not _RUNS_ONLY.value:
    print(f"report: {os.path.join(_WORKDIR.value, report.REPORT_FILE)}")


if __name__ == "__main__":
  cli.run(main)
