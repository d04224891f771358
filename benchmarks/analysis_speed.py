"""Speed of the path and lesion analyses on ResNet-110 (54 blocks). Not a test.

Prints one JSON line per measurement:
  * exact_path_gradients at batch 8 (32x32x3 random images, freshly initialised variables): the
    first call (trace + compile + run) and the steady-state time of a second call;
  * Veit's sampled protocol: the steady time of a few chunks of single-path routes, extrapolated to
    `--samples` routes per length for all 55 lengths, and its ratio to the exact method;
  * all 54 single-block lesions in one compiled function, in eval-forward equivalents (its time
    over the time of one jitted eval forward of the same images).

Run: .venv/bin/python benchmarks/analysis_speed.py [--model resnet110 --batch 8 --samples 1000]
"""
import argparse
import functools
import json
import time

import jax

from resnet_jax.analysis import _common, exact_path_gradients, lesion_single, sampled_path_gradients
from resnet_jax.models import get_model


def _timed(fn, *args, **kwargs):
  start = time.perf_counter()
  out = jax.block_until_ready(fn(*args, **kwargs))
  return out, time.perf_counter() - start


def _emit(**record):
  print(json.dumps(record), flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="resnet110")
  parser.add_argument("--batch", type=int, default=8, help="images for the gradient analyses")
  parser.add_argument("--lesion-batch", type=int, default=64, help="images for the lesions")
  parser.add_argument("--samples", type=int, default=1000, help="Veit's routes per length")
  parser.add_argument("--route-chunks", type=int, default=2,
                      help="chunks of routes timed for the extrapolation")
  args = parser.parse_args()

  model = get_model(args.model)
  n = model.num_blocks
  keys = jax.random.split(jax.random.key(0), 4)
  images = jax.random.normal(keys[0], (args.batch, 32, 32, 3))
  labels = jax.random.randint(keys[1], (args.batch,), 0, 10)
  variables, init_s = _timed(jax.jit(model.init), keys[2], images)
  _emit(name="init", model=args.model, num_blocks=n, seconds=round(init_s, 3))

  _, first = _timed(exact_path_gradients, model, variables, images, labels)
  _, steady = _timed(exact_path_gradients, model, variables, images, labels)
  _emit(name="exact_path_gradients", model=args.model, batch=args.batch, copies=n + 1,
        first_call_s=round(first, 3), steady_s=round(steady, 3),
        compile_s_estimate=round(first - steady, 3))

  # Veit: routes are vmapped in chunks of max_batch // batch; time whole chunks, one length.
  per_chunk = max(1, _common.DEFAULT_MAX_BATCH // args.batch)
  timed_routes = per_chunk * args.route_chunks
  sample = functools.partial(sampled_path_gradients, model, variables, images, labels, keys[3],
                             samples_per_length=timed_routes, lengths=[n // 2])
  _, veit_first = _timed(sample)
  _, veit_steady = _timed(sample)
  total_routes = (n + 1) * args.samples
  veit_estimate = veit_steady / timed_routes * total_routes
  _emit(name="veit_sampled_estimate", model=args.model, batch=args.batch,
        routes_timed=timed_routes, routes_per_call=per_chunk, first_call_s=round(veit_first, 3),
        steady_s=round(veit_steady, 3), samples_per_length=args.samples,
        total_routes=total_routes, estimated_s=round(veit_estimate, 1),
        ratio_to_exact=round(veit_estimate / steady, 1))

  lesion_images = jax.random.normal(keys[0], (args.lesion_batch, 32, 32, 3))
  lesion_labels = jax.random.randint(keys[1], (args.lesion_batch,), 0, 10)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False))
  _timed(forward, variables, lesion_images)
  _, forward_s = _timed(forward, variables, lesion_images)
  _, lesion_first = _timed(lesion_single, model, variables, lesion_images, lesion_labels)
  _, lesion_steady = _timed(lesion_single, model, variables, lesion_images, lesion_labels)
  _emit(name="lesion_single", model=args.model, batch=args.lesion_batch, settings=n,
        first_call_s=round(lesion_first, 3), steady_s=round(lesion_steady, 3),
        eval_forward_s=round(forward_s, 4),
        eval_forward_equivalents=round(lesion_steady / forward_s, 1),
        platform=jax.devices()[0].platform)


if __name__ == "__main__":
  main()
