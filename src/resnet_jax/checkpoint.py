"""Orbax checkpoints of the train state in `workdir/checkpoints`, resumed automatically.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
at any moment leaves only whole checkpoints behind.
"""
import contextlib
import gc
import logging as std_logging
import os
import sys
import threading
from typing import Iterator

import jax
import orbax.checkpoint as ocp
from absl import logging

from resnet_jax.errors import NoRunError
from resnet_jax.train_state import TrainState

# A checkpoint that does not restore is renamed with this suffix (kept for inspection, never
# deleted): its step can then be saved again, and no later run tries it.
UNREADABLE_SUFFIX = ".unreadable"


def manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                               options=options)


def save(mngr: ocp.CheckpointManager, state: TrainState) -> None:
  step = int(jax.device_get(state.step))
  mngr.save(step, args=ocp.args.StandardSave(state))


def save_variables(mngr: ocp.CheckpointManager, variables: dict, step: int = 0) -> None:
  """Saves a model's variables alone, {"params", "batch_stats"} (numpy or jax arrays), and waits
  for the write: a checkpoint of weights, such as `resnet_jax.convert` writes. `restore_saved`
  reads it back (numpy arrays come back as numpy arrays, on any machine); it holds no optimizer
  state, so no training resumes from it (`pretrained.initial_variables` starts one from it)."""
  mngr.save(step, args=ocp.args.StandardSave(
      {"params": variables["params"], "batch_stats": variables["batch_stats"]}))
  mngr.wait_until_finished()


def restore_latest(mngr: ocp.CheckpointManager, like: TrainState) -> TrainState | None:
  """The newest checkpoint that restores, onto the shardings of `like`; None if there is none.

  A checkpoint that fails to restore (truncated or overwritten files) is renamed
  `STEP.unreadable`, with a warning that says why, and the next older one is tried.
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  for step in sorted(mngr.all_steps(), reverse=True):
    try:
      with _quiet_failed_reads():
        return mngr.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as err:  # noqa: BLE001 - any failure to read means: try an older one
      # tensorstore appends a page of "full details": the first sentence says what went wrong.
      reason = (str(err).strip().splitlines() or [""])[0].split(" See full")[0][:300]
      _set_aside(mngr, step)
      logging.warning("checkpoint %d of %s could not be restored (%s: %s); it is kept as %d%s "
                      "and the run resumes from the previous checkpoint", step, mngr.directory,
                      type(err).__name__, reason, step, UNREADABLE_SUFFIX)
  return None


@contextlib.contextmanager
def _quiet_failed_reads() -> Iterator[None]:
  """Silences what a failed restore leaves behind: tensorstore's other reads of the same
  checkpoint fail too, in coroutines and threads that print a traceback each when collected
  (hundreds of lines for one truncated file). The failure itself is raised and reported."""
  hooks = sys.unraisablehook, threading.excepthook
  loggers = [std_logging.getLogger(name) for name in ("asyncio", "concurrent.futures")]
  sys.unraisablehook = threading.excepthook = lambda *_: None
  for logger in loggers:
    logger.disabled = True
  try:
    yield
  finally:
    gc.collect()  # the failed reads' coroutines go now, while their tracebacks are silenced
    sys.unraisablehook, threading.excepthook = hooks
    for logger in loggers:
      logger.disabled = False


def _set_aside(mngr: ocp.CheckpointManager, step: int) -> None:
  if jax.process_index() == 0:
    path = os.path.join(str(mngr.directory), str(step))
    target, n = path + UNREADABLE_SUFFIX, 1
    while os.path.exists(target):
      target, n = f"{path}{UNREADABLE_SUFFIX}{n}", n + 1
    os.rename(path, target)
  mngr.reload()


def restore_saved(mngr: ocp.CheckpointManager, step: int | None = None) -> dict:
  """A checkpoint as saved (nested dicts of arrays), with no target to match; for analyses and
  tests that only read it. Defaults to the latest step.

  Arrays go back onto the devices they were saved from where this process has those devices,
  and whole onto its first local device where it does not (a run of several processes read by
  one).
  """
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise NoRunError(f"no checkpoint in {mngr.directory}: the run saved none yet")
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return mngr.restore(step, args=ocp.args.StandardRestore(fallback_sharding=local))
