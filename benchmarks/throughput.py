"""Train-step throughput (`make bench`): images/s and ms/step as JSON lines.

Data path: for each model (resnet20, resnet56 at batch 128), each data path (synthetic, digits,
mocked CIFAR-10 through tfds) and 1 vs all local devices, it times
  * "data_path": the real step, which gathers its batch from the device-resident training set
    and augments it on device (`parallel.compile_train_step`), its data order drawn once per
    epoch as the training loop draws it (`parallel.compile_data_order`), and
  * "premade": the same compiled step over a training set that is exactly one batch (its
    gather and data order then cost next to nothing: the batch is as good as made),
and prints premade time / data-path time (goal: >= 0.97). With --sort_per_step it also times the
step that draws its epoch's permutation (a sort of the training set) itself, as the step did
before the loop carried the order.

Steps per call: for each case of --call_cases (model:batch:image size, synthetic data, one
device), one train step per call against `--steps_per_call` K steps per call
(`parallel.compile_train_steps`: unrolled on a CPU, lax.scan elsewhere), with the first call's
time (compile and run) of each.

Variants alternate in rounds; times are each variant's best round and ratios the median of the
rounds' paired ratios, so that a neighbour's load in one round does not decide a comparison.
Run with --quick for a short smoke run.
"""
import argparse
import functools
import json
import time

import jax
import numpy as np

from resnet_jax import configs, data, optim, parallel, steps
from resnet_jax.models import get_model
from resnet_jax.train_state import create_train_state


def load(source: str, image_size: int | None = None) -> data.Dataset:
  if source == "cifar10_mock":
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    with tfds.testing.mock_data(num_examples=2048):
      return data.load_dataset("cifar10", val_size=0)
  if source == "synthetic":
    return data.load_dataset("synthetic", limit=2048, image_size=image_size)
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


def in_order(call, draw_order, data_rng, *, steps_per_call: int, batch_size: int,
             num_examples: int):
  """`call` (a compiled step of steps_per_call steps) with the data order the training loop would
  give it: drawn when a call starts in a new epoch. Counts steps on the host from 0, as the loop
  does from its start step, so a new state needs a new wrapper."""
  host = {"step": 0, "epoch": None, "order": None}

  def run(state, *args):
    epoch = host["step"] * batch_size // num_examples
    if epoch != host["epoch"]:
      host["epoch"], host["order"] = epoch, draw_order(data_rng, state.step)
    host["step"] += steps_per_call
    return call(state, *args, host["order"])
  return run


def setup_step(model_name: str, dataset: data.Dataset, devices, batch_size: int):
  """(mesh, the train step to compile, a jitted init(rng), replicated keys) of `model_name`
  with the base recipe: what every benchmark of the real step times."""
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
  return mesh, step_fn, init, keys


def _on_device(dataset: data.Dataset, count: int, mesh) -> dict[str, jax.Array]:
  repl = parallel.replicated(mesh)
  return {"image": parallel.put_global(dataset.train_images[:count], repl),
          "label": parallel.put_global(dataset.train_labels[:count], repl)}


def _rounds(variants: dict, num_steps: int, rounds: int) -> dict[str, list[float]]:
  """variants: name -> (fn(state, *args) -> (state, metrics), new_state(), args); seconds per step
  of each round."""
  times = {name: [] for name in variants}
  for _ in range(rounds):
    for name, (make_fn, new_state, args) in variants.items():
      times[name].append(timed(make_fn(), new_state(), args, num_steps)[0])
  return times


def _ratio(times, over: str, under: str) -> float:
  """Median over rounds of times[over] / times[under]."""
  return round(float(np.median(np.asarray(times[over]) / np.asarray(times[under]))), 3)


def bench_data_path(model_name: str, dataset: data.Dataset, devices, batch_size: int,
                    num_steps: int, rounds: int, sort_per_step: bool) -> dict[str, list[float]]:
  mesh, step_fn, init, keys = setup_step(model_name, dataset, devices, batch_size)
  step = parallel.compile_train_step(step_fn, mesh, batch_size=batch_size)
  full, one_batch = _on_device(dataset, len(dataset.train_images), mesh), _on_device(
      dataset, batch_size, mesh)

  def ordered(train_data):
    count = train_data["label"].shape[0]
    draw = parallel.compile_data_order(mesh, num_examples=count, batch_size=batch_size,
                                       num_batches=1)
    return lambda: in_order(step, draw, keys[0], steps_per_call=1, batch_size=batch_size,
                            num_examples=count)
  new_state = lambda: init(jax.random.key(0))
  variants = {"data_path": (ordered(full), new_state, (full, *keys)),
              "premade": (ordered(one_batch), new_state, (one_batch, *keys))}
  if sort_per_step:
    variants["sort_per_step"] = (lambda: step, new_state, (full, *keys))
  return _rounds(variants, num_steps, rounds)


def bench_steps_per_call(model_name: str, batch_size: int, image_size: int, devices,
                         per_call: int, num_steps: int, rounds: int) -> dict:
  dataset = load("synthetic", image_size)
  mesh, step_fn, init, keys = setup_step(model_name, dataset, devices, batch_size)
  train_data = _on_device(dataset, len(dataset.train_images), mesh)
  draw = {k: parallel.compile_data_order(mesh, num_examples=len(dataset.train_images),
                                         batch_size=batch_size, num_batches=k)
          for k in (1, per_call)}
  calls = {1: parallel.compile_train_step(step_fn, mesh, batch_size=batch_size),
           per_call: parallel.compile_train_steps(step_fn, mesh, batch_size=batch_size,
                                                  num_steps=per_call)}
  first_call_s = {}
  for k, call in calls.items():
    state, order = init(jax.random.key(0)), draw[k](keys[0], 0)
    start = time.perf_counter()
    jax.block_until_ready(call(state, train_data, *keys, order))
    first_call_s[k] = round(time.perf_counter() - start, 2)
  variants = {k: (lambda k=k: in_order(calls[k], draw[k], keys[0], steps_per_call=k,
                                       batch_size=batch_size,
                                       num_examples=len(dataset.train_images)),
                  lambda: init(jax.random.key(0)), (train_data, *keys))
              for k in calls}
  # Each variant runs the same number of steps per round: num_steps calls of K steps each.
  times = {k: [] for k in calls}
  for _ in range(rounds):
    for k, (make_fn, new_state, args) in variants.items():
      times[k].append(timed(make_fn(), new_state(), args, num_steps * per_call // k)[0] / k)
  return {
      "model": model_name, "source": "synthetic", "image_shape": list(dataset.image_shape),
      "batch_size": batch_size, "devices": len(devices),
      "device_kind": devices[0].device_kind, "steps_per_call": per_call,
      "loop": "unrolled" if devices[0].platform == "cpu" else "scan",
      "single_ms_per_step": round(1000 * min(times[1]), 3),
      "k_ms_per_step": round(1000 * min(times[per_call]), 3),
      "single_over_k": _ratio({"a": times[1], "b": times[per_call]}, "a", "b"),
      "single_first_call_s": first_call_s[1], "k_first_call_s": first_call_s[per_call],
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--models", default="resnet20,resnet56")
  parser.add_argument("--sources", default="synthetic,digits,cifar10_mock")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--steps", type=int, default=5, help="timed steps (or calls) per round")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--sort_per_step", action="store_true",
                      help="also time the step that sorts the training set itself")
  parser.add_argument("--call_cases", default="resnet8:32:8,resnet20:128:32",
                      help="model:batch:image_size cases of the steps-per-call rows ('' for none)")
  parser.add_argument("--steps_per_call", type=int, default=4)
  parser.add_argument("--quick", action="store_true",
                      help="resnet20 on synthetic, resnet8 steps per call, 3 steps, 2 rounds")
  args = parser.parse_args()
  if args.quick:
    args.models, args.sources, args.steps, args.rounds = "resnet20", "synthetic", 3, 2
    args.call_cases = "resnet8:32:8"
  local = jax.local_devices()
  device_sets = [local[:1]] + ([local] if len(local) > 1 else [])
  for source in filter(None, args.sources.split(",")):
    dataset = load(source)
    for model_name in filter(None, args.models.split(",")):
      for devices in device_sets:
        times = bench_data_path(model_name, dataset, devices, args.batch_size, args.steps,
                                args.rounds, args.sort_per_step)
        t_real, t_pre = min(times["data_path"]), min(times["premade"])
        row = {
            "model": model_name, "source": source, "image_shape": list(dataset.image_shape),
            "batch_size": args.batch_size, "devices": len(devices),
            "device_kind": devices[0].device_kind,
            "train_images": len(dataset.train_images),
            "data_path_images_per_s": round(args.batch_size / t_real, 1),
            "data_path_ms_per_step": round(1000 * t_real, 2),
            "premade_images_per_s": round(args.batch_size / t_pre, 1),
            "premade_ms_per_step": round(1000 * t_pre, 2),
            "data_path_over_premade": _ratio(times, "premade", "data_path"),
        }
        if args.sort_per_step:
          row["sort_per_step_ms_per_step"] = round(1000 * min(times["sort_per_step"]), 2)
          row["sort_per_step_over_premade"] = _ratio(times, "premade", "sort_per_step")
        print(json.dumps(row), flush=True)
  for case in filter(None, args.call_cases.split(",")):
    model_name, batch_size, image_size = case.split(":")
    print(json.dumps(bench_steps_per_call(model_name, int(batch_size), int(image_size),
                                          local[:1], args.steps_per_call, args.steps,
                                          args.rounds)), flush=True)


if __name__ == "__main__":
  main()
