"""Where compilation happens: the pure steps of `steps.py` jitted over a device mesh.

The default is jit over a one-axis ("data") mesh of every device: the batch is sharded, the state
replicated and donated, and XLA inserts the gradient all-reduce; BatchNorm then sees the global
batch (synchronised BN). `per_device_bn=True` runs the same step under `jax.shard_map`, each
device normalising with its own shard's statistics, as multi-GPU reference runs did with pmap.
`compile_train_steps` runs several steps per call, so that the host dispatches once for them.
"""
import functools
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from resnet_jax import augment

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A one-axis mesh over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else list(devices)
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def put_global(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
  """Places a host array that every process holds in full; each process fills its own devices
  (works on one host and across hosts alike)."""
  array = np.asarray(array)
  return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])


def replicate(tree, mesh: Mesh):
  """`tree` (arrays or PRNG keys, equal on every process) replicated over every device of `mesh`.

  A compiled identity, because jax.device_put places host arrays onto other processes' devices
  but not PRNG keys.
  """
  return jax.jit(lambda t: t, out_shardings=replicated(mesh))(tree)


def check_batch_size(batch_size: int, num_devices: int) -> None:
  """The batch is split evenly over the devices of the mesh."""
  if batch_size % num_devices:
    raise ValueError(f"batch size {batch_size} must be a multiple of the {num_devices} devices")


def _mesh_step(step_fn: Callable, mesh: Mesh, batch_size: int, per_device_bn: bool) -> Callable:
  """`step_fn` made to split its batch over `mesh` (see the module docstring)."""
  check_batch_size(batch_size, mesh.size)
  if per_device_bn:
    # P() is a prefix of every argument: all of them (the optional data order too) replicated.
    return jax.shard_map(functools.partial(step_fn, axis_name=DATA_AXIS), mesh=mesh,
                         in_specs=P(), out_specs=P())
  batch_sharding = sharded(mesh)
  return functools.partial(
      step_fn, shard_batch=lambda batch: jax.lax.with_sharding_constraint(batch, batch_sharding))


def compile_train_step(step_fn: Callable, mesh: Mesh, *, batch_size: int,
                       per_device_bn: bool = False) -> Callable:
  """Jits `step_fn` (steps.train_step with its keywords bound) over `mesh`.

  Returns:
    step(state, data, data_rng, aug_rng, order=None) -> (state, metrics), with `data` the
    replicated, device-resident training set from which the step gathers its own batch (the host
    never feeds the loop) and `order` its data order (`compile_data_order`). `state` is donated.
  """
  repl = replicated(mesh)
  return jax.jit(_mesh_step(step_fn, mesh, batch_size, per_device_bn), in_shardings=repl,
                 out_shardings=(repl, repl), donate_argnums=0)


def repeat_step(step_fn: Callable, num_steps: int, *, unroll: bool) -> Callable:
  """`num_steps` consecutive steps as one function (pure; `compile_train_steps` jits it).

  Args:
    step_fn: step_fn(state, *args) -> (state, metrics), e.g. `steps.train_step` with its keywords
      bound.
    num_steps: static, >= 1.
    unroll: True runs a Python loop (the trace holds num_steps copies of the step, so compile time
      grows with num_steps); False runs lax.scan (one copy).
  Returns:
    run(state, *args) -> (state after the steps, {name: [num_steps]} the steps' metrics stacked).
  """
  def run(state, *args):
    if not unroll:
      return jax.lax.scan(lambda s, _: step_fn(s, *args), state, length=num_steps)
    every = []
    for _ in range(num_steps):
      state, metrics = step_fn(state, *args)
      every.append(metrics)
    return state, jax.tree.map(lambda *m: jnp.stack(m), *every)
  return run


def compile_train_steps(step_fn: Callable, mesh: Mesh, *, batch_size: int, num_steps: int,
                        per_device_bn: bool = False, unroll: bool | None = None) -> Callable:
  """Like `compile_train_step`, but one call runs `num_steps` consecutive steps.

  Args:
    unroll: how the steps are chained (`repeat_step`); None chooses by platform: unrolled on a
      CPU, whose convolution gradients run several times slower inside a loop, lax.scan
      elsewhere (compile time flat in num_steps).
  Returns:
    steps(state, data, data_rng, aug_rng, order=None) -> (state, metrics), each metric
    [num_steps], one per step; `order` must serve all num_steps batches.
  """
  if unroll is None:
    unroll = mesh.devices.flat[0].platform == "cpu"
  repl = replicated(mesh)
  run = repeat_step(_mesh_step(step_fn, mesh, batch_size, per_device_bn), num_steps,
                    unroll=unroll)
  return jax.jit(run, in_shardings=repl, out_shardings=(repl, repl), donate_argnums=0)


def compile_data_order(mesh: Mesh, *, num_examples: int, batch_size: int,
                       num_batches: int) -> Callable:
  """Jits `augment.data_order`.

  Returns:
    order(data_rng, step) -> the replicated data order of batches step, ...,
    step + num_batches - 1: drawn once for them, so that their steps only gather.
  """
  return jax.jit(functools.partial(augment.data_order, num_examples=num_examples,
                                   batch_size=batch_size, num_batches=num_batches),
                 in_shardings=replicated(mesh), out_shardings=replicated(mesh))


def compile_eval_step(eval_fn: Callable, mesh: Mesh) -> Callable:
  """Jits steps.eval_step (model bound) with the batch sharded over `mesh`."""
  repl = replicated(mesh)
  return jax.jit(eval_fn, in_shardings=(repl, sharded(mesh)), out_shardings=repl)


def evaluate(eval_step: Callable, state, images: np.ndarray, labels: np.ndarray, mesh: Mesh,
             batch_size: int) -> dict[str, float]:
  """Error and mean loss over a whole split, in fixed-size padded batches (one compile)."""
  if len(images) == 0:
    return {"error": float("nan"), "loss": float("nan")}
  batch_size = -(-batch_size // mesh.size) * mesh.size
  totals = None
  for start in range(0, len(images), batch_size):
    chunk = slice(start, start + batch_size)
    count = len(images[chunk])
    pad = batch_size - count
    batch = {
        "image": np.pad(images[chunk], ((0, pad),) + ((0, 0),) * (images.ndim - 1)),
        "label": np.pad(labels[chunk], (0, pad)),
        "mask": np.pad(np.ones(count, np.float32), (0, pad)),
    }
    batch = {k: put_global(v, sharded(mesh)) for k, v in batch.items()}
    sums = eval_step(state, batch)
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  totals = jax.device_get(totals)
  return {"error": float(totals["error_sum"] / totals["count"]),
          "loss": float(totals["loss_sum"] / totals["count"])}
