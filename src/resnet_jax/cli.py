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
