"""What the command-line entry points share (`python -m resnet_jax.train|analyze|experiment`).

The entry points are the `__main__` modules of those packages; they define their flags at import
time, which is why the libraries never import them. This module imports nothing of the project,
so every entry point can use it.
"""
import os

from absl import app, flags, logging
from ml_collections import config_flags


def message(err: BaseException) -> str:
  """An error's message as a person reads it: ml_collections' KeyError/AttributeError messages
  arrive as the repr of a string ("'x'\\nDid you mean ...")."""
  text = err.args[0] if len(err.args) == 1 and isinstance(err.args[0], str) else str(err)
  return text.strip("'\"").replace("\\n", "\n").replace("\\'", "'")


def define_config(help_text: str) -> flags.FlagHolder:
  """The --config=FILE.py[:ARG] flag, locked so that a mistyped --config.FIELD is an error."""
  return config_flags.DEFINE_config_file("config", None, help_text, lock_config=True)


def define_distributed() -> flags.FlagHolder:
  return flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host).")


def start(argv, distributed: bool = False) -> None:
  """Common start of every command: no stray arguments, multi-host set up, quiet logging."""
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    import jax  # pylint: disable=g-import-not-at-top
    # On a TPU pod slice, SLURM or with JAX_COORDINATOR_ADDRESS set, initialize() finds its peers.
    jax.distributed.initialize()
    logging.info("process %d of %d", jax.process_index(), jax.process_count())
  # Orbax reports every checkpoint step at INFO; keep the terminal for the progress bar.
  logging.set_verbosity(logging.WARNING)
