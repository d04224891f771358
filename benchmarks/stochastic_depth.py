"""Training time saved by stochastic depth (`make bench`): the real train step of a ResNet against
its stochastic-depth twin, with dropped branches skipped (`nn.cond`, the paper's saving) and
computed-then-zeroed (`skip_dropped=False`), as JSON lines.

Huang et al. 2016 report about 25% less training time for ResNet-110 with p_L = 0.5: the expected
number of active blocks is (3L-1)/4 of L. The three variants are timed in alternating rounds on
the same synthetic data set, each variant's best round kept, and each row gives its time over
the constant-depth net's.
"""
import argparse
import functools
import json

import jax
import numpy as np
from throughput import timed  # the same timer as `make bench`'s first table (this directory)

from resnet_jax import configs, optim, parallel, steps
from resnet_jax.models import get_model
from resnet_jax.train_state import create_train_state

VARIANTS = {"constant depth": {}, "stochastic depth, skipped": {"stochastic_depth": 0.5},
            "stochastic depth, zeroed": {"stochastic_depth": 0.5, "skip_dropped": False}}


def compiled_step(model, batch_size: int, image_shape, mesh):
  config = configs.resolve_warmup(configs.base_config())
  tx = optim.make_optimizer(config)
  step = parallel.compile_train_step(
      functools.partial(steps.train_step, model=model, tx=tx,
                        learning_rate_fn=optim.learning_rate_schedule(config),
                        batch_size=batch_size), mesh, batch_size=batch_size)
  state = jax.jit(functools.partial(create_train_state, model, tx, image_shape=image_shape),
                  out_shardings=parallel.replicated(mesh))(jax.random.key(0))
  return step, state


def main():
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--depth", type=int, default=110)
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
  parser.add_argument("--rounds", type=int, default=2)
  args = parser.parse_args()
  mesh = parallel.make_mesh(jax.local_devices()[:1])
  repl = parallel.replicated(mesh)
  shape = (args.image_size, args.image_size, 3)
  rng = np.random.default_rng(0)
  data = {"image": parallel.put_global(
              rng.standard_normal((4 * args.batch_size,) + shape).astype(np.float32), repl),
          "label": parallel.put_global(rng.integers(0, 10, 4 * args.batch_size, np.int32), repl)}
  keys = jax.device_put((jax.random.key(1), jax.random.key(2)), repl)
  compiled = {name: compiled_step(get_model(f"resnet{args.depth}", **options), args.batch_size,
                                  shape, mesh)
              for name, options in VARIANTS.items()}
  times = {name: [] for name in VARIANTS}
  for _ in range(args.rounds):
    for name, (step, state) in compiled.items():
      seconds, state = timed(step, state, (data, *keys), args.steps)
      compiled[name] = (step, state)
      times[name].append(seconds)
  num_blocks = get_model(f"resnet{args.depth}").num_blocks
  base = min(times["constant depth"])
  for name, values in times.items():
    print(json.dumps({
        "model": f"resnet{args.depth}", "variant": name, "batch_size": args.batch_size,
        "image_size": args.image_size, "device_kind": jax.devices()[0].device_kind,
        "ms_per_step": round(1000 * min(values), 1),
        "time_over_constant_depth": round(min(values) / base, 3),
        "expected_active_blocks": round((3 * num_blocks - 1) / 4 / num_blocks, 3),
    }), flush=True)


if __name__ == "__main__":
  main()
