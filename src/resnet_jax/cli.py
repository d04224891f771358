"""What the command-line entry points share (`python -m resnet_jax.train|analyze|experiment`).

The entry points are the `__main__` modules of those packages; they define their flags at import
time, which is why the libraries never import them. This module imports nothing of the project,
so every entry point can use it.
"""
import os
import sys
from typing import Callable

from absl import app, flags, logging
from ml_collections import config_flags

from resnet_jax.errors import UserError


def message(err: BaseException) -> str:
  """An error's message as a person reads it: ml_collections' KeyError/AttributeError messages
  arrive as the repr of a string ("'x'\\nDid you mean ...")."""
  text = err.args[0] if len(err.args) == 1 and isinstance(err.args[0], str) else str(err)
  if "Traceback (most recent call last)" in text:
    # A config file that raised: ml_collections embeds its traceback; its last line says why.
    head = text.split(":", 2)[:2]
    text = f"{':'.join(head)}: {text.strip().splitlines()[-1]}"
  if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
    text = text[1:-1]  # the repr of a string
  return text.replace("\\n", "\n").replace("\\'", "'")


def _fail(text: str) -> None:
  print(f"error: {text}", file=sys.stderr, flush=True)
  sys.exit(1)


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with a bad flag reported as one line (and ml_collections' "Did you
  mean" suggestion on a line of its own, not as a literal \\n)."""
  try:
    return flags.FLAGS(argv)
  except (AttributeError, KeyError) as err:  # ml_collections: a field the config does not have
    _fail(f"the config has no field {message(err)}")
  except (flags.Error, ValueError) as err:
    _fail(f"{message(err)} (see --help)")


def run(main: Callable[[list[str]], None]) -> None:
  """Runs a command's `main` under absl; the project's errors (errors.UserError) end it with one
  plain line on stderr and exit status 1. Other exceptions are bugs and keep their traceback."""
  def guarded(argv):
    try:
      main(argv)
    except UserError as err:
      _fail(message(err))
  app.run(guarded, flags_parser=_parse_flags)


def define_config(help_text: str) -> flags.FlagHolder:
  """The --config=FILE.py[:ARG] flag, locked so that a mistyped --config.FIELD is an error."""
  return config_flags.DEFINE_config_file("config", None, help_text, lock_config=True)


def define_distributed() -> flags.FlagHolder:
  return flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host).")


def start(argv, distributed: bool = False) -> None:
  """Common start of every command: no stray arguments, multi-host set up, quiet logging."""
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]} (flags are --name=value; see --help)")
  if distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
    import jax  # pylint: disable=g-import-not-at-top
    # On a TPU pod slice, SLURM or with JAX_COORDINATOR_ADDRESS set, initialize() finds its peers.
    jax.distributed.initialize()
    logging.info("process %d of %d", jax.process_index(), jax.process_count())
  # Orbax reports every checkpoint step at INFO; keep the terminal for the progress bar.
  logging.set_verbosity(logging.WARNING)
  # tfds warns about the folders it looks into when a data set is missing; our error says it all.
  logging.get_absl_handler().addFilter(lambda record: "tensorflow_datasets" not in record.pathname)
