"""Orbax checkpoints of the train state in `workdir/checkpoints`, resumed automatically.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
at any moment leaves only whole checkpoints behind.
"""
import os

import jax
import orbax.checkpoint as ocp

from resnet_jax.train_state import TrainState


def manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                         cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")),
                               options=options)


def save(mngr: ocp.CheckpointManager, state: TrainState) -> None:
  step = int(jax.device_get(state.step))
  mngr.save(step, args=ocp.args.StandardSave(state))


def restore_latest(mngr: ocp.CheckpointManager, like: TrainState) -> TrainState | None:
  """The latest checkpoint restored onto the shardings of `like`, or None if there is none."""
  step = mngr.latest_step()
  if step is None:
    return None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
  return mngr.restore(step, args=ocp.args.StandardRestore(abstract))


def restore_saved(mngr: ocp.CheckpointManager, step: int | None = None) -> dict:
  """A checkpoint as saved (nested dicts of arrays), with no target to match; for analyses and
  tests that only read it. Defaults to the latest step.

  Arrays go back onto the devices they were saved from where this process has those devices,
  and whole onto its first local device where it does not (a run of several processes read by
  one).
  """
  step = mngr.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"no checkpoint in {mngr.directory}")
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  return mngr.restore(step, args=ocp.args.StandardRestore(fallback_sharding=local))
