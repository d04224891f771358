"""DenseNet-BC train step with and without `memory_efficient` (`make bench-densenet`).

For each model and setting it compiles the real train step (`parallel.compile_train_step`, batch
64, 32x32x3 images), reads XLA's `memory_analysis()` (temp = the step's scratch buffers, the
activations kept for the backward pass among them) and times a few steps. Prints JSON lines.

A naive DenseNet keeps every layer's concatenated, normalised input for the backward pass, so
its memory grows with the square of a block's depth; `memory_efficient` rematerialises each
layer's concat-BN-ReLU-conv instead (`nn.remat`, saving only the conv output). On XLA:CPU
(jax 0.10.2) the two settings measured the same: XLA's fusion already recomputes the cheap
concat-BN-ReLU, and the temp that does grow with depth is the backward pass's per-layer input
gradients, live until each feature map's cotangent is summed (see docs/performance.md).
Run with --quick for a short smoke run.
"""
import argparse
import functools
import json
import time

import jax
import jax.numpy as jnp

from resnet_jax import configs, optim, parallel, steps
from resnet_jax.models import get_model
from resnet_jax.train_state import create_train_state

MiB = 2 ** 20


def measure(name: str, memory_efficient: bool, batch_size: int, num_steps: int) -> dict:
  config = configs.resolve_warmup(configs.base_config())
  model = get_model(name, memory_efficient=memory_efficient)
  tx = optim.make_optimizer(config)
  mesh = parallel.make_mesh(jax.devices()[:1])
  step_fn = functools.partial(steps.train_step, model=model, tx=tx,
                              learning_rate_fn=optim.learning_rate_schedule(config),
                              batch_size=batch_size)
  step = parallel.compile_train_step(step_fn, mesh, batch_size=batch_size)
  repl = parallel.replicated(mesh)
  state = jax.device_put(create_train_state(model, tx, jax.random.key(0), (32, 32, 3)), repl)
  data = jax.device_put({"image": jax.random.normal(jax.random.key(1), (batch_size, 32, 32, 3)),
                         "label": jnp.arange(batch_size, dtype=jnp.int32) % 10}, repl)
  keys = jax.device_put((jax.random.key(2), jax.random.key(3)), repl)
  start = time.perf_counter()
  compiled = step.lower(state, data, *keys).compile()
  compile_s = time.perf_counter() - start
  memory = compiled.memory_analysis()
  state, metrics = compiled(state, data, *keys)  # warm-up
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(num_steps):
    state, metrics = compiled(state, data, *keys)
  jax.block_until_ready(metrics)
  return {"model": name, "memory_efficient": memory_efficient, "batch_size": batch_size,
          "temp_mib": round(memory.temp_size_in_bytes / MiB, 1),
          "argument_mib": round(memory.argument_size_in_bytes / MiB, 1),
          "compile_s": round(compile_s, 1),
          "step_ms": round(1000 * (time.perf_counter() - start) / num_steps, 1),
          "device": jax.devices()[0].device_kind}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true", help="one small net, batch 8, one step")
  parser.add_argument("--models", default="densenet_bc28_k12,densenet_bc52_k12,densenet_bc100_k12")
  args = parser.parse_args()
  models = ["densenet_bc16_k4"] if args.quick else args.models.split(",")
  batch_size, num_steps = (8, 1) if args.quick else (64, 3)
  for name in models:
    for memory_efficient in (False, True):
      print(json.dumps(measure(name, memory_efficient, batch_size, num_steps)), flush=True)


if __name__ == "__main__":
  main()
