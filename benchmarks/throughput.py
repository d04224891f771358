"""Train-step throughput (`make bench`): images/s and ms/step as JSON lines.

For each model (resnet20, resnet56 at batch 128), each data path (synthetic, digits, mocked
CIFAR-10 through tfds) and 1 vs all local devices, it times
  * "data_path": the real step, which gathers its batch from the device-resident training set
    and augments it on device (`parallel.compile_train_step`), and
  * "premade": the same compiled step over a training set that is exactly one batch (its
    gather and permutation then cost next to nothing: the batch is as good as made),
and prints premade time / data-path time (goal: >= 0.95), each variant's best of two alternating
rounds. Run with --quick for a short smoke run.
"""
import argparse
import functools
import json
import time

import jax

from resnet_jax import configs, data, optim, parallel, steps
from resnet_jax.models import get_model
from resnet_jax.train_state import create_train_state

ROUNDS = 2


def load(source: str) -> data.Dataset:
  if source == "cifar10_mock":
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    with tfds.testing.mock_data(num_examples=2048):
      return data.load_dataset("cifar10", val_size=0)
  if source == "synthetic":
    return data.load_dataset("synthetic", limit=2048)
  return data.load_dataset(source)


def timed(fn, state, args, num_steps: int) -> tuple[float, object]:
  """Seconds per step over num_steps calls, after one call that compiles and warms up."""
  state, metrics = fn(state, *args)
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(num_steps):
    state, metrics = fn(state, *args)
  jax.block_until_ready((state, metrics))
  return (time.perf_counter() - start) / num_steps, state


def bench(model_name: str, dataset: data.Dataset, devices, batch_size: int, num_steps: int):
  config = configs.resolve_warmup(configs.base_config())
  model = get_model(model_name, num_classes=dataset.num_classes)
  tx = optim.make_optimizer(config)
  mesh = parallel.make_mesh(devices)
  repl = parallel.replicated(mesh)
  step_fn = functools.partial(steps.train_step, model=model, tx=tx,
                              learning_rate_fn=optim.learning_rate_schedule(config),
                              batch_size=batch_size)
  init = jax.jit(functools.partial(create_train_state, model, tx,
                                   image_shape=dataset.image_shape), out_shardings=repl)
  keys = jax.device_put((jax.random.key(1), jax.random.key(2)), repl)
  step = parallel.compile_train_step(step_fn, mesh, batch_size=batch_size)

  def on_device(count):
    return {"image": parallel.put_global(dataset.train_images[:count], repl),
            "label": parallel.put_global(dataset.train_labels[:count], repl)}
  full, one_batch = on_device(len(dataset.train_images)), on_device(batch_size)
  # Alternate the two variants and keep each one's best round, so that a neighbour's load or a
  # cold cache in one round does not decide the comparison.
  real_times, pre_times = [], []
  for _ in range(ROUNDS):
    real_times.append(timed(step, init(jax.random.key(0)), (full, *keys), num_steps)[0])
    pre_times.append(timed(step, init(jax.random.key(0)), (one_batch, *keys), num_steps)[0])
  return min(real_times), min(pre_times)


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--models", default="resnet20,resnet56")
  parser.add_argument("--sources", default="synthetic,digits,cifar10_mock")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
  parser.add_argument("--quick", action="store_true", help="resnet20, synthetic, 3 steps")
  args = parser.parse_args()
  if args.quick:
    args.models, args.sources, args.steps = "resnet20", "synthetic", 3
  local = jax.local_devices()
  device_sets = [local[:1]] + ([local] if len(local) > 1 else [])
  for source in args.sources.split(","):
    dataset = load(source)
    for model_name in args.models.split(","):
      for devices in device_sets:
        t_real, t_pre = bench(model_name, dataset, devices, args.batch_size, args.steps)
        print(json.dumps({
            "model": model_name, "source": source, "image_shape": list(dataset.image_shape),
            "batch_size": args.batch_size, "devices": len(devices),
            "device_kind": devices[0].device_kind,
            "data_path_images_per_s": round(args.batch_size / t_real, 1),
            "data_path_ms_per_step": round(1000 * t_real, 2),
            "premade_images_per_s": round(args.batch_size / t_pre, 1),
            "premade_ms_per_step": round(1000 * t_pre, 2),
            "data_path_over_premade": round(t_pre / t_real, 3),
        }), flush=True)


if __name__ == "__main__":
  main()
