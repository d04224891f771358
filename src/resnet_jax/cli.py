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

from resnet_jax.errors import ConfigError, UserError


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
    rest = flags.FLAGS(argv)
  except (AttributeError, KeyError) as err:  # ml_collections: a field the config does not have
    _fail(f"the config has no field {message(err)}")
  except (flags.Error, ValueError) as err:
    _fail(f"{message(err)} (see --help)")
  _check_configs_loaded()
  return rest


# The --config flags of this command (`define_config`).
_CONFIG_FLAGS: list[flags.FlagHolder] = []


def _check_configs_loaded() -> None:
  """ml_collections keeps the error of a config file it could not read (a missing file) until the
  config is first used, where it would end in a traceback: report it now, as one line."""
  for holder in _CONFIG_FLAGS:
    if holder.value is None:  # not given: absl's required-flag check speaks for it
      continue
    try:
      holder.value.to_dict  # noqa: B018 (a ConfigDict has it; the stand-in for a failed load raises)
    except OSError as err:
      reason = str(err.__cause__ or err).strip().splitlines()[-1].strip()
      path = config_flags.get_config_filename(flags.FLAGS[holder.name]).split(":", 1)[0]
      _fail(f"--{holder.name}: cannot load the config file {path}: {reason}")


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
  holder = config_flags.DEFINE_config_file("config", None, help_text, lock_config=True)
  _CONFIG_FLAGS.append(holder)
  return holder


def define_distributed() -> flags.FlagHolder:
  return flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() (multi-host).")


# The multi-process recipe's variables. jax.distributed.initialize() reads only the first of them
# itself (and then fails for want of the others), so they are passed to it explicitly.
DISTRIBUTED_ENV = ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")


def initialize_distributed() -> None:
  """Joins this process to a multi-process JAX job; call it before anything starts a backend.

  JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID are
  passed on where set; JAX detects what is not set on the platforms that provide it (TPU VMs,
  SLURM, Open MPI). CPU processes, on one machine or many, reduce across processes with gloo.

  Raises:
    ConfigError: the variables are not all set and the platform does not provide the others, or a
      number is not an integer.
  """
  import jax  # pylint: disable=g-import-not-at-top
  # Read only by the CPU client (so harmless on GPU and TPU): without a cross-process
  # implementation, CPU processes cannot all-reduce. Gloo is JAX's default today; naming it keeps
  # CPU jobs working should that change, and an explicit choice (JAX_CPU_COLLECTIVES_IMPLEMENTATION)
  # stands.
  if not jax.config.jax_cpu_collectives_implementation:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  given = {name: os.environ[name] for name in DISTRIBUTED_ENV if os.environ.get(name)}
  try:
    num_processes, process_id = (int(given[name]) if name in given else None
                                 for name in DISTRIBUTED_ENV[1:])
  except ValueError:
    raise ConfigError(f"JAX_NUM_PROCESSES and JAX_PROCESS_ID must be integers, not "
                     f"{given.get('JAX_NUM_PROCESSES')!r} and {given.get('JAX_PROCESS_ID')!r}"
                     ) from None
  try:
    jax.distributed.initialize(coordinator_address=given.get("JAX_COORDINATOR_ADDRESS"),
                               num_processes=num_processes, process_id=process_id)
  except ValueError as err:
    if len(given) == len(DISTRIBUTED_ENV):
      raise
    missing = [name for name in DISTRIBUTED_ENV if name not in given]
    raise ConfigError(
        f"multi-process run: {' and '.join(missing)} not set, and the platform does not provide "
        f"{'it' if len(missing) == 1 else 'them'} (JAX: {err}). Set JAX_COORDINATOR_ADDRESS "
        "(HOST:PORT of process 0), JAX_NUM_PROCESSES and JAX_PROCESS_ID (0, 1, ...) for every "
        "process, or none of them on a TPU VM or under SLURM") from err
  logging.info("process %d of %d", jax.process_index(), jax.process_count())


def start(argv, distributed: bool = False) -> None:
  """Common start of every command: no stray arguments, multi-host set up, quiet logging."""
  if len(argv) > 1:
    _fail(f"unexpected arguments {argv[1:]} (flags are --name=value; see --help)")
  if distributed or any(os.environ.get(name) for name in DISTRIBUTED_ENV):
    initialize_distributed()
  # Orbax reports every checkpoint step at INFO; keep the terminal for the progress bar.
  logging.set_verbosity(logging.WARNING)
  # tfds warns about the folders it looks into when a data set is missing; our error says it all.
  logging.get_absl_handler().addFilter(lambda record: "tensorflow_datasets" not in record.pathname)
