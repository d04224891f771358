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
import tqdm
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


# XLA's CPU backend spends most of an initialisation's compile time optimising its random
# number generation (21 s against 1 s for ResNet-8 on a 2-core CPU), for a program that runs once:
# compiled unoptimised there. Its draws may differ from an optimised compile's in the last bits.
_INIT_COMPILER_OPTIONS = {"cpu": {"xla_backend_optimization_level": 0}}


def compile_init(init_fn: Callable, mesh: Mesh) -> Callable:
  """Jits `init_fn` (rng -> a train state, e.g. `create_train_state` with its model bound), its
  output replicated over `mesh`."""
  options = _INIT_COMPILER_OPTIONS.get(mesh.devices.flat[0].platform)
  return jax.jit(init_fn, out_shardings=replicated(mesh), compiler_options=options)


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


def compile_train_step_on_batch(step_fn: Callable, mesh: Mesh, *,
                                per_device_bn: bool = False) -> Callable:
  """Jits `step_fn` (steps.train_step_on_batch with its keywords bound) over `mesh`, for batches
  that the host feeds as global arrays sharded over the mesh (`put_batch`).

  Returns:
    step(state, batch, aug_rng) -> (state, metrics); `state` is donated.
  """
  repl, batch_sharding = replicated(mesh), sharded(mesh)
  if per_device_bn:
    step_fn = jax.shard_map(functools.partial(step_fn, axis_name=DATA_AXIS), mesh=mesh,
                            in_specs=(P(), P(DATA_AXIS), P()), out_specs=P())
  return jax.jit(step_fn, in_shardings=(repl, batch_sharding, repl),
                 out_shardings=(repl, repl), donate_argnums=0)


def put_batch(local: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
  """One global batch sharded over `mesh` from this process's slice of it: `local` holds the
  rows that this process's devices keep (on one process, the whole batch)."""
  sharding = sharded(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in local.items()}


def process_slice(batch_size: int, mesh: Mesh) -> slice:
  """The rows of a global batch of `batch_size` that this process's devices hold.

  Rows are split evenly over the mesh's devices in mesh order, and a process's devices must form
  one contiguous run of that order (as `make_mesh` over jax.devices() gives).
  """
  check_batch_size(batch_size, mesh.size)
  per_device = batch_size // mesh.size
  mine = [i for i, d in enumerate(mesh.devices.flat) if d.process_index == jax.process_index()]
  if mine != list(range(mine[0], mine[0] + len(mine))):
    raise ValueError("this process's devices are not contiguous in the mesh")
  return slice(mine[0] * per_device, (mine[-1] + 1) * per_device)


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


# How `compile_seeds_train_step` batches the seeds (same numbers, different speed).
SEEDS_FORMULATIONS = ("vmap", "unroll")


def default_seeds_formulation(mesh: Mesh) -> str:
  """"unroll" on CPUs, where XLA runs vmap's grouped convolutions (and their batch-grouped weight
  gradients) 2-3x slower than the seeds' separate ones (benchmarks/joint_seeds.py); "vmap"
  elsewhere."""
  return "unroll" if mesh.devices.flat[0].platform == "cpu" else "vmap"


def compile_seeds_train_step(step_fn: Callable, mesh: Mesh, *, batch_size: int,
                             per_device_bn: bool = False, shared_data: bool = False,
                             formulation: str | None = None) -> Callable:
  """Jits `step_fn` (steps.train_step with its keywords bound) for S seeds at once: one compiled
  step over a leading seed axis of the state, the keys and (unless `shared_data`) the data.

  Each seed's slice is computed exactly as `compile_train_step` computes that seed alone (its own
  batch, augmentation, model rngs and BatchNorm statistics), to float tolerance. The
  formulations (`SEEDS_FORMULATIONS`; None: `default_seeds_formulation`) differ only in speed:
  "vmap" batches every op over the seeds (a convolution becomes one grouped convolution);
  "unroll" traces one copy of the step per seed into the same program (compiling S times the
  ops), which XLA may schedule side by side.

  Returns:
    step(states, data, data_rngs, aug_rngs) -> (states, metrics): states, keys and metrics with a
    leading [S] axis; data {"image": [S, M, ...], "label": [S, M]}, or [M, ...] shared by every
    seed with `shared_data`. `states` is donated.
  """
  formulation = formulation or default_seeds_formulation(mesh)
  if formulation not in SEEDS_FORMULATIONS:
    raise ValueError(f"formulation must be one of {SEEDS_FORMULATIONS}, got {formulation!r}")
  check_batch_size(batch_size, mesh.size)
  if per_device_bn:
    one_seed = functools.partial(step_fn, axis_name=DATA_AXIS)
  else:
    # The constraint sees one seed's batch; under vmap JAX leaves the seed axis unsharded.
    batch_sharding = sharded(mesh)
    one_seed = functools.partial(
        step_fn, shard_batch=lambda batch: jax.lax.with_sharding_constraint(batch, batch_sharding))
  data_axis = None if shared_data else 0
  if formulation == "vmap":
    seeds_fn = jax.vmap(one_seed, in_axes=(0, data_axis, 0, 0))
  else:
    seeds_fn = functools.partial(_unrolled_seeds, one_seed, data_axis)
  if per_device_bn:
    seeds_fn = jax.shard_map(seeds_fn, mesh=mesh, in_specs=(P(), P(), P(), P()),
                             out_specs=(P(), P()))
  repl = replicated(mesh)
  return jax.jit(seeds_fn, in_shardings=(repl,) * 4, out_shardings=(repl, repl), donate_argnums=0)


def _unrolled_seeds(one_seed: Callable, data_axis: int | None, states, data, data_rngs,
                    aug_rngs):
  """`one_seed` on each seed's slice in turn, traced into one program; outputs stacked."""
  outs = []
  for i in range(data_rngs.shape[0]):
    seed_data = data if data_axis is None else jax.tree.map(lambda x, i=i: x[i], data)
    outs.append(one_seed(jax.tree.map(lambda x, i=i: x[i], states), seed_data, data_rngs[i],
                         aug_rngs[i]))
  return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)


def stack_seeds(trees: Sequence, mesh: Mesh):
  """The pytrees `trees` (one per seed, same structure) as one pytree with a leading [S] axis,
  replicated over `mesh`."""
  return jax.jit(lambda *t: jax.tree.map(lambda *xs: jnp.stack(xs), *t),
                 out_shardings=replicated(mesh))(*trees)


def unstack_seeds(tree, mesh: Mesh, seeds: Sequence[int] | None = None) -> list:
  """The slices `seeds` (default: all) of a pytree with a leading seed axis, each replicated over
  `mesh`, as one pytree per seed; `seeds` as a list of indices also selects a subset to keep."""
  seeds = range(jax.tree.leaves(tree)[0].shape[0]) if seeds is None else seeds
  index = np.asarray(list(seeds), np.int32)
  return jax.jit(lambda t: [jax.tree.map(lambda x, i=i: x[i], t) for i in index],
                 out_shardings=replicated(mesh))(tree)


def compile_eval_step(eval_fn: Callable, mesh: Mesh) -> Callable:
  """Jits steps.eval_step (model bound) with the batch sharded over `mesh`."""
  repl = replicated(mesh)
  return jax.jit(eval_fn, in_shardings=(repl, sharded(mesh)), out_shardings=repl)


def evaluate(eval_step: Callable, state, images: np.ndarray, labels: np.ndarray, mesh: Mesh,
             batch_size: int, progress: bool = False) -> dict[str, float]:
  """Top-1 and top-5 error and mean loss over a whole split, in fixed-size padded batches (one
  compile)."""
  if len(images) == 0:
    return {"error": float("nan"), "top5_error": float("nan"), "loss": float("nan"), "count": 0}
  batch_size = -(-batch_size // mesh.size) * mesh.size
  totals = None
  for start in tqdm.trange(0, len(images), batch_size, desc="evaluate", unit="batch",
                           disable=not progress or jax.process_index() != 0, leave=False):
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
  return error_rates(jax.device_get(totals))


def error_rates(totals: dict[str, np.ndarray]) -> dict[str, float]:
  """{"error", "top5_error", "loss"} of an eval step's sums over a split."""
  count = totals["count"]
  return {"error": float(totals["error_sum"] / count),
          "top5_error": float(totals["top5_error_sum"] / count),
          "loss": float(totals["loss_sum"] / count), "count": int(count)}
