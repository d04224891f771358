"""Compile time of the train step, ResNet-110 vs ResNet-1202 (`make bench-compile`).

Scanning the identical blocks of each stage keeps compile time flat in depth; the goal is a
1202-layer step compiling in at most 3x the time of the 110-layer one. Prints JSON lines.
"""
import functools
import json
import time

import jax
import jax.numpy as jnp

from resnet_jax import configs, optim, parallel, steps
from resnet_jax.models import get_model
from resnet_jax.train_state import create_train_state


def compile_seconds(name: str, batch_size: int = 128) -> float:
  config = configs.resolve_warmup(configs.base_config())
  model = get_model(name)
  tx = optim.make_optimizer(config)
  mesh = parallel.make_mesh()
  step_fn = functools.partial(steps.train_step, model=model, tx=tx,
                              learning_rate_fn=optim.learning_rate_schedule(config),
                              batch_size=batch_size)
  compiled = parallel.compile_train_step(step_fn, mesh, batch_size=batch_size)
  state = jax.eval_shape(functools.partial(create_train_state, model, tx,
                                           image_shape=(32, 32, 3)), jax.random.key(0))
  repl = parallel.replicated(mesh)
  state = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), state)
  train_data = {"image": jax.ShapeDtypeStruct((1024, 32, 32, 3), jnp.float32, sharding=repl),
                "label": jax.ShapeDtypeStruct((1024,), jnp.int32, sharding=repl)}
  key = jax.ShapeDtypeStruct((), jax.random.key(0).dtype, sharding=repl)
  start = time.perf_counter()
  compiled.lower(state, train_data, key, key).compile()
  return time.perf_counter() - start


def main():
  compile_seconds("resnet8")  # XLA's one-time start-up cost, so it burdens neither model
  times = {}
  for name in ("resnet110", "resnet1202"):
    times[name] = compile_seconds(name)
    print(json.dumps({"model": name, "compile_s": round(times[name], 2),
                      "device": jax.devices()[0].device_kind}), flush=True)
  ratio = times["resnet1202"] / times["resnet110"]
  print(json.dumps({"ratio_1202_over_110": round(ratio, 2), "goal": "<= 3", "ok": ratio <= 3}))


if __name__ == "__main__":
  main()
