"""`python -m resnet_jax.train --config=FILE.py[:ARG] --workdir=DIR`: train one model."""
import jax
from absl import flags

from resnet_jax import cli, train

_CONFIG = cli.define_config(
    "experiments/configs/FILE.py[:ARG]; override fields as --config.FIELD=...")
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory: checkpoints, metrics, results.")
_START_OVER = flags.DEFINE_bool("start_over", False,
                                "Delete the workdir's run of another config and start.")
_DISTRIBUTED = cli.define_distributed()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  cli.start(argv, _DISTRIBUTED.value)
  talk = jax.process_index() == 0  # one voice for a run of several processes
  if talk:
    print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}", flush=True)
  results = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value, start_over=_START_OVER.value)
  if talk:
    print({k: results[k] for k in ("model", "steps", "train_error", "test_error",
                                    "test_error_at_best_val")})


if __name__ == "__main__":
  cli.run(main)
