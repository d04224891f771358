"""What the analyses of a converted ImageNet ResNet cost (`python -m resnet_jax.analyze` on a
directory `python -m resnet_jax.convert` wrote). Not a test.

Each piece of the analyses runs twice on a few images at the real image size: a first call that
compiles (its time is printed) and a second, measured call of a known amount of work, counted in
images through the net: forwards for the responses and the lesions (every mask row, random
subset and order counted), forward + input-gradient backward passes for the path gradients
(every sampled path's batch; the exact decomposition's n + 1 stacked copies). The measured time
per image gives the cost at the target setting (`--target_*`), printed as an extrapolation, not
a measurement. XLA's own count of floating-point operations per image (`cost_analysis` of the
lowered programs) gives the work in FLOPs, from which a GPU's time is estimated at an assumed
throughput (`--gpu_tflops`).

One JSON line per piece, then a "total" line; times are wall seconds and this process's CPU
seconds (every thread), since on a shared machine the wall time says more about the other
processes than about this one. The net's weights do not change the time: by
default a random-weight ResNet-50 (`convert.random_state_dict`) is converted into a temporary
directory, and the images are the offline fixture's photos (ImageNet's JPEG sizes), written and
prepared under build/bench_pretrained unless --data_dir names a prepared directory.

Run: PYTHONPATH=src python benchmarks/pretrained_analyses.py [--image_size=224 --num_images=20
    --path_images=8 --target_num_images=500 --target_path_images=32 --target_samples=1000]
"""
import argparse
import json
import os
import resource
import tempfile
import time

import jax
import jax.numpy as jnp

from resnet_jax import analysis, analyze, configs, convert, runs
from resnet_jax.data import fixtures, prepare_imagenet

BUILD = os.path.join("build", "bench_pretrained")


def _emit(**record):
  print(json.dumps(record), flush=True)


def _timed(fn, *args, **kwargs):
  """(fn's output, wall seconds, CPU seconds of every thread of this process)."""
  start, cpu = time.perf_counter(), time.process_time()
  out = jax.block_until_ready(fn(*args, **kwargs))
  return out, time.perf_counter() - start, time.process_time() - cpu


def _prepared(args) -> str:
  if args.data_dir:
    return args.data_dir
  out = os.path.join(BUILD, "prepared")
  if not os.path.exists(os.path.join(out, "dataset.json")):
    raw = os.path.join(BUILD, "raw")
    fixtures.write_imagenet_fixture(raw, num_classes=10, train_per_class=6, val_per_class=6)
    prepare_imagenet.prepare(os.path.join(raw, "train"), os.path.join(raw, "val"), out,
                             train_shards=2, val_shards=1, workers=1, progress=False)
  return out


def _converted(args, root: str) -> str:
  if args.workdir:
    return args.workdir
  path = os.path.join(root, "weights.safetensors")
  convert.write_safetensors(convert.random_state_dict(args.model), path)
  convert.from_torch_file(path, args.model, os.path.join(root, "converted"))
  return os.path.join(root, "converted")


def _flops_per_image(model, variables, image_shape) -> tuple[float, float]:
  """XLA's FLOP count of one image's eval forward, and of its forward + input-gradient backward."""
  x = jnp.zeros((1, *image_shape), jnp.float32)
  forward = jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, x)
  grad = jax.jit(jax.grad(lambda x, v: model.apply(v, x, train=False).sum())).lower(x, variables)
  return forward.cost_analysis()["flops"], grad.cost_analysis()["flops"]


def _lesion_rows(n: int, samples: int) -> int:
  """Gate rows of `analyze`'s lesion analysis: baseline, n single deletions, the k sweep and the
  reorderings (as `analyze._lesions` chooses them)."""
  ks = {k for k in (0, 1, 2, n // 4, n // 2, (3 * n) // 4, n) if 0 <= k <= n}
  swaps = {1, 2, 4, 8, max(1, n // 2)}
  return 1 + n + (len(ks) + len(swaps)) * samples


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="resnet50_imagenet")
  parser.add_argument("--workdir", default="", help="a converted directory (default: random)")
  parser.add_argument("--data_dir", default="", help="a prepared directory (default: fixture)")
  parser.add_argument("--image_size", type=int, default=224)
  parser.add_argument("--resize_size", type=int, default=256)
  parser.add_argument("--num_images", type=int, default=20, help="measured: responses, lesions")
  parser.add_argument("--lesion_samples", type=int, default=2, help="measured")
  parser.add_argument("--path_images", type=int, default=8, help="measured: per sampled path")
  parser.add_argument("--samples", type=int, default=2, help="measured: sampled paths per length")
  parser.add_argument("--max_batch", type=int, default=0, help="0: analyze's budget by size")
  parser.add_argument("--target_num_images", type=int, default=500)
  parser.add_argument("--target_lesion_samples", type=int, default=20)
  parser.add_argument("--target_path_images", type=int, default=32)
  parser.add_argument("--target_samples", type=int, default=1000, help="Veit: about 1,000")
  parser.add_argument("--gpu_tflops", type=float, default=50.0,
                      help="assumed sustained TFLOP/s of a GPU: JAX runs float32 convolutions "
                           "through TF32 tensor cores on an H100/H200 (about 495 dense at peak); "
                           "a ResNet-50 sustains a fraction of it")
  args = parser.parse_args()

  with tempfile.TemporaryDirectory() as root:
    workdir = _converted(args, root)
    settings = configs.analysis_config()
    settings.update(num_images=args.num_images, path_images=args.path_images,
                    samples_per_length=args.samples, lesion_samples=args.lesion_samples,
                    max_batch=args.max_batch)
    settings = analyze.resolve_settings(settings)
    config = runs.read_config(workdir)
    overrides = analyze.data_overrides(config, settings, data_dir=_prepared(args),
                                       image_size=args.image_size, resize_size=args.resize_size)
    (_, dataset, model, variables), load_s, _ = _timed(
        runs.load_run, workdir, splits=("train", "test"), overrides=overrides)
  n, shape = model.num_blocks, (args.image_size, args.image_size, 3)
  budget = analyze.batch_budget(settings, shape)
  images, labels = dataset.test_images[:args.num_images], dataset.test_labels[:args.num_images]
  pool, pool_labels = dataset.train_images, dataset.train_labels
  _emit(name="setup", model=args.model, num_blocks=n, image_size=args.image_size,
        max_batch=budget, images_loaded=int(len(labels) + len(pool_labels)),
        load_s=round(load_s, 2), platform=jax.devices()[0].platform,
        load_average=os.getloadavg(), cpus=os.cpu_count())
  forward_flops, backward_flops = _flops_per_image(model, variables, shape)
  key = jax.random.key(0)
  target_rows = _lesion_rows(n, args.target_lesion_samples)
  # The first call compiles every program the measured call runs (the same chunk shapes).
  warm = analyze.resolve_settings(settings)
  warm.lesion_samples = 1
  pieces = {
      # name: (first call, measured call, images measured, images at the target, FLOPs/image)
      "response_std": (
          lambda: analysis.response_std(model, variables, images, batch_size=budget),
          lambda: analysis.response_std(model, variables, images, batch_size=budget),
          len(labels), args.target_num_images, forward_flops),
      "lesion": (
          lambda: analyze.compute(model, variables, images[:budget], labels[:budget], "lesion",
                                  warm, progress=False),
          lambda: analyze.compute(model, variables, images, labels, "lesion", settings,
                                  progress=False),
          _lesion_rows(n, args.lesion_samples) * len(labels),
          target_rows * args.target_num_images, forward_flops),
      "paths_sampled": (
          lambda: analysis.sampled_path_gradients(
              model, variables, pool, pool_labels, key, samples_per_length=1, lengths=[n // 2],
              batch_size=args.path_images, max_batch=budget),
          lambda: analysis.sampled_path_gradients(
              model, variables, pool, pool_labels, key, samples_per_length=args.samples,
              batch_size=args.path_images, max_batch=budget),
          (n + 1) * args.samples * args.path_images,
          (n + 1) * args.target_samples * args.target_path_images, backward_flops),
      "paths_exact": (
          lambda: analysis.exact_path_gradients(model, variables, pool[:args.path_images],
                                                pool_labels[:args.path_images],
                                                max_batch=budget),
          lambda: analysis.exact_path_gradients(model, variables, pool[:args.path_images],
                                                pool_labels[:args.path_images],
                                                max_batch=budget),
          (n + 1) * args.path_images, (n + 1) * args.target_path_images, backward_flops),
  }
  total_wall = total_cpu = total_flops = 0.0
  for name, (first, measured, count, target, flops) in pieces.items():
    _, first_s, first_cpu = _timed(first)
    _, measured_s, measured_cpu = _timed(measured)
    scale = target / count
    total_wall += measured_s * scale + first_s
    total_cpu += measured_cpu * scale + first_cpu
    total_flops += flops * target
    _emit(name=name, first_call_s=round(first_s, 1), first_call_cpu_s=round(first_cpu, 1),
          measured_s=round(measured_s, 1), measured_cpu_s=round(measured_cpu, 1),
          images_measured=count, gflop_per_image=round(flops / 1e9, 2),
          gflop_per_s=round(flops * count / measured_s / 1e9, 1),
          gflop_per_cpu_s=round(flops * count / measured_cpu / 1e9, 1), target_images=target,
          extrapolated_s=round(measured_s * scale), extrapolated_cpu_s=round(measured_cpu * scale),
          gpu_estimate_s=round(flops * target / (args.gpu_tflops * 1e12), 1))
  _emit(name="total", target=dict(num_images=args.target_num_images,
                                  lesion_samples=args.target_lesion_samples,
                                  path_images=args.target_path_images,
                                  samples_per_length=args.target_samples),
        extrapolated_h=round(total_wall / 3600, 2), extrapolated_cpu_h=round(total_cpu / 3600, 2),
        tflop=round(total_flops / 1e12, 1),
        gpu_estimate_min=round(total_flops / (args.gpu_tflops * 1e12) / 60, 1),
        gpu_tflops_assumed=args.gpu_tflops, load_average=os.getloadavg(),
        peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2))

if __name__ == "__main__":
  main()
