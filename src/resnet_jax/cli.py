"""Command-line entry points (absl flags). Flags are defined only when a command runs, so
importing the library from a notebook defines none."""
import os

from absl import app, flags, logging


def _distributed_init() -> None:
  import jax  # pylint: disable=g-import-not-at-top
  # On a TPU pod slice, SLURM or with JAX_COORDINATOR_ADDRESS set, initialize() finds its peers.
  jax.distributed.initialize()
  logging.info("process %d of %d", jax.process_index(), jax.process_count())


def run_train() -> None:
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config = config_flags.DEFINE_config_file(
      "config", None, "experiments/configs/FILE.py[:ARG]; override fields as --config.FIELD=...",
      lock_config=True)
  flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, results.")
  flags.DEFINE_bool("start_over", False, "Delete the workdir's run of another config and start.")
  flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host).")
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if flags.FLAGS.distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
      _distributed_init()
    # Orbax reports every checkpoint step at INFO; keep the terminal for the progress bar.
    logging.set_verbosity(logging.WARNING)
    from resnet_jax import train  # pylint: disable=g-import-not-at-top
    import jax  # pylint: disable=g-import-not-at-top
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}", flush=True)
    results = train.train_and_evaluate(config.value, flags.FLAGS.workdir,
                                       start_over=flags.FLAGS.start_over)
    print({k: results[k] for k in ("model", "steps", "train_error", "test_error",
                                    "test_error_at_best_val")})

  app.run(main)


def run_analyze() -> None:
  flags.DEFINE_string("workdir", None, "A training run's workdir.")
  flags.DEFINE_string("analysis", "all", "response_std | lesion | paths | all (comma-separated).")
  flags.DEFINE_integer("num_images", 0, "Test images for responses and lesions (0: all).")
  flags.DEFINE_integer("path_images", 32, "Test images for the path-gradient analyses.")
  flags.DEFINE_integer("samples_per_length", 100, "Sampled single paths per length (Veit: ~1000).")
  flags.DEFINE_integer("lesion_samples", 20, "Random subsets / orders per sweep point.")
  flags.mark_flags_as_required(["workdir"])

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from resnet_jax import analyze  # pylint: disable=g-import-not-at-top
    f = flags.FLAGS
    names = analyze.ANALYSES if f.analysis == "all" else tuple(f.analysis.split(","))
    settings = analyze.Settings(num_images=f.num_images, path_images=f.path_images,
                                samples_per_length=f.samples_per_length,
                                lesion_samples=f.lesion_samples)
    result = analyze.analyze_run(f.workdir, names, settings)
    print(f"wrote {os.path.join(f.workdir, analyze.ANALYSIS_FILE)} and "
          f"{len(result['figures'])} figures in {os.path.join(f.workdir, 'figures')}")

  app.run(main)


def run_experiment() -> None:
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config = config_flags.DEFINE_config_file(
      "config", None, "experiments/configs/EXPERIMENT.py:DATASET[,smoke]", lock_config=True)
  flags.DEFINE_string("workdir", None, "Experiment directory (one training workdir per run).")
  flags.DEFINE_integer("seeds", 1, "Seeds per model; the report gives median and mean ± std.")
  flags.DEFINE_bool("runs_only", False, "Train (and analyse) the runs; write no summary, report "
                    "or figures (for processes that share a workdir).")
  flags.mark_flags_as_required(["config", "workdir"])

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from resnet_jax import experiment  # pylint: disable=g-import-not-at-top
    experiment.run_experiment(config.value, flags.FLAGS.workdir, seeds=flags.FLAGS.seeds,
                              runs_only=flags.FLAGS.runs_only)
    if not flags.FLAGS.runs_only:
      print(f"report: {os.path.join(flags.FLAGS.workdir, experiment.REPORT_FILE)}")

  app.run(main)
