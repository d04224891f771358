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
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

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

  In a run of several processes they decide together: a checkpoint that any of them cannot
  restore is set aside by process 0 while the others wait, and every process then reloads the
  list of steps, so that all resume from the same step and agree on the steps saved later.
  (Orbax ends a restore with a barrier of its own, so a checkpoint that only some processes fail
  to read would hold the others there; a damaged file of the replicated state, which every
  process reads, fails them all.)
  """
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  for step in sorted(mngr.all_steps(), reverse=True):
    restored, error = None, None
    try:
      with _quiet_failed_reads():
        restored = mngr.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as err:  # noqa: BLE001 - any failure to read means: try an older one
      error = err
    if _every_process(error is None):
      return restored
    if error is None:
      reason = "another process could not read it"
    else:
      # tensorstore appends a page of "full details": the first sentence says what went wrong.
      reason = (str(error).strip().splitlines() or [""])[0].split(" See full")[0][:300]
      reason = f"{type(error).__name__}: {reason}"
    _set_aside(mngr, step)
    logging.warning("checkpoint %d of %s could not be restored (%s); it is kept as %d%s and the "
                    "run resumes from the previous checkpoint", step, mngr.directory, reason, step,
                    UNREADABLE_SUFFIX)
  return None


def _every_process(ok: bool) -> bool:
  """Whether `ok` holds in every process of the run (a collective: all of them must call it)."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.asarray(ok))))


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
  """Renames checkpoint `step` (process 0); every process reloads the steps once it is done."""
  if jax.process_index() == 0:
    path = os.path.join(str(mngr.directory), str(step))
    target, n = path + UNREADABLE_SUFFIX, 1
    while os.path.exists(target):
      target, n = f"{path}{UNREADABLE_SUFFIX}{n}", n + 1
    os.rename(path, target)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f"checkpoint {step} set aside")
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
