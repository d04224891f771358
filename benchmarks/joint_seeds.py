"""Several seeds in one compiled step vs one run per seed (`make bench-seeds`).

For each case (model, image size, batch) and each number of seeds S, it times
  * "separate": S seeds trained one after another, each by its own step
    (`parallel.compile_train_step`), as `--joint_seeds=false` trains them, and
  * each formulation of `parallel.compile_seeds_train_step` ("vmap", "unroll"): the S seeds in
    one step, as `--joint_seeds=true` trains them,
alternating the variants in every round (a few steps each) so that a neighbour's load hits them
alike, and prints per case one JSON line: each variant's aggregate images/s (all seeds together,
median over rounds) and the median over rounds of the paired ratio joint / separate images/s.
"""
import argparse
import json
import time

import jax
import numpy as np
from throughput import setup_step  # this directory

from resnet_jax import data, parallel

CASES = {  # name: (model, data set, image size, batch size)
    "resnet20_16px_b128": ("resnet20", "synthetic", 16, 128),
    "resnet8_digits_b32": ("resnet8", "digits", 8, 32),
}


def _timed(fn, num_steps: int) -> float:
  start = time.perf_counter()
  out = None
  for _ in range(num_steps):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / num_steps


def bench(case: str, num_seeds: int, rounds: int, num_steps: int, formulations) -> dict:
  model_name, source, image_size, batch_size = CASES[case]
  dataset = data.load_dataset(source, image_size=image_size if source == "synthetic" else None,
                              limit=2048 if source == "synthetic" else None)
  # The same model, optimizer, step and init as `make bench`'s (throughput.py).
  mesh, step_fn, init, _ = setup_step(model_name, dataset, jax.local_devices()[:1], batch_size)
  repl = parallel.replicated(mesh)
  train_data = {"image": parallel.put_global(dataset.train_images, repl),
                "label": parallel.put_global(dataset.train_labels, repl)}
  keys = [parallel.replicate((jax.random.key(100 + s), jax.random.key(200 + s)), mesh)
          for s in range(num_seeds)]
  states = [init(jax.random.key(s)) for s in range(num_seeds)]
  one = parallel.compile_train_step(step_fn, mesh, batch_size=batch_size)

  def separate():
    for s in range(num_seeds):
      states[s], metrics = one(states[s], train_data, *keys[s])
    return states, metrics

  variants = {"separate": separate}
  stacked_keys = parallel.stack_seeds(keys, mesh)
  for formulation in formulations:
    joint = parallel.compile_seeds_train_step(step_fn, mesh, batch_size=batch_size,
                                              shared_data=True, formulation=formulation)
    box = [parallel.stack_seeds([init(jax.random.key(s)) for s in range(num_seeds)], mesh)]

    def run(joint=joint, box=box):
      box[0], metrics = joint(box[0], train_data, *stacked_keys)
      return box[0], metrics
    variants[formulation] = run
  compile_s = {}
  for name, fn in variants.items():  # compile and warm up
    start = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s[name] = time.perf_counter() - start
  times = {name: [] for name in variants}
  for r in range(rounds):
    order = list(variants) if r % 2 == 0 else list(variants)[::-1]
    for name in order:
      times[name].append(_timed(variants[name], num_steps))
  images = num_seeds * batch_size
  result = {"case": case, "seeds": num_seeds, "rounds": rounds, "steps_per_round": num_steps,
            "device_kind": jax.local_devices()[0].device_kind}
  for name, t in times.items():
    result[f"{name}_images_per_s"] = round(images / float(np.median(t)), 1)
    result[f"{name}_first_call_s"] = round(compile_s[name], 2)
    if name != "separate":
      result[f"{name}_over_separate"] = round(
          float(np.median(np.asarray(times["separate"]) / np.asarray(t))), 3)
  return result


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--cases", default=",".join(CASES))
  parser.add_argument("--seeds", default="2,4")
  parser.add_argument("--formulations", default=",".join(parallel.SEEDS_FORMULATIONS))
  parser.add_argument("--rounds", type=int, default=8)
  parser.add_argument("--steps", type=int, default=3, help="timed steps per variant and round")
  args = parser.parse_args()
  for case in args.cases.split(","):
    for num_seeds in (int(s) for s in args.seeds.split(",")):
      print(json.dumps(bench(case, num_seeds, args.rounds, args.steps,
                             args.formulations.split(","))), flush=True)


if __name__ == "__main__":
  main()
