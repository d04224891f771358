"""The streamed input path's speed (`make bench-input`), as JSON lines.

On a prepared directory of JPEGs at ImageNet's sizes (by default the fixture's real photos,
written and prepared under build/bench_input), it measures:
  * "decode": a bare decode loop over the training records on one core (`imagenet.decode_rgb`,
    the whole image), images/s;
  * "pipeline": the training stream at 224 (`stream.train_batches`, He 2015's transform, batches
    of --batch_size) with 1 and 2 worker processes, images/s after the first batch, and per
    worker against the bare decode (goal: >= 0.7);
  * "step": a ResNet-18 train step fed by the stream (`StreamFeed.train`: next batch, placed on
    the mesh, the step) against the same compiled step fed one batch already on the device,
    alternated in rounds; ratio = on-device time / streamed time (goal: >= 0.95 where the workers
    have cores of their own; on a 2-core machine the workers and XLA's step share them).
Run with --quick for a short smoke run.
"""
import argparse
import json
import os
import time

import jax
import numpy as np

from resnet_jax import configs, feeds, optim, parallel, runs
from resnet_jax.data import fixtures, imagenet, prepare_imagenet, records, stream
from resnet_jax.train_state import create_train_state


def prepared_dir(args) -> str:
  if args.data_dir:
    return args.data_dir
  out = os.path.join("build", "bench_input")
  if not os.path.exists(os.path.join(out, "prepared", records.INFO_FILE)):
    raw = os.path.join(out, "raw")
    fixtures.write_imagenet_fixture(raw, num_classes=4, train_per_class=args.images // 4,
                                    val_per_class=2, seed=0)
    prepare_imagenet.prepare(os.path.join(raw, "train"), os.path.join(raw, "val"),
                             os.path.join(out, "prepared"), train_shards=4, val_shards=1,
                             workers=1, progress=False)
  return os.path.join(out, "prepared")


def bare_decode(source, count: int) -> float:
  """Images/s of decoding `count` records whole, in this process."""
  start = time.perf_counter()
  for i in range(count):
    imagenet.decode_rgb(source[i % len(source)][1])
  return count / (time.perf_counter() - start)


def pipeline(source, *, workers: int, batch_size: int, num_batches: int) -> float:
  """Images/s of the training stream at 224 with `workers` processes, after its first batch."""
  batches = stream.train_batches(
      source, seed=0, batch_size=batch_size, rows=slice(0, batch_size), start_step=0,
      num_steps=num_batches + 1, transform=stream.TrainCrop("he2015", 224, (256, 480)),
      workers=workers)
  try:
    next(batches)
    start = time.perf_counter()
    for _ in range(num_batches):
      next(batches)
    return num_batches * batch_size / (time.perf_counter() - start)
  finally:
    batches.close()


def step_ratio(data_dir: str, *, batch_size: int, workers: int, rounds: int,
               steps_per_round: int) -> dict:
  """A ResNet-18 step fed by the stream vs fed a batch already on the device (see above)."""
  config = configs.stream_data(configs.imagenet_recipe("resnet18"), "imagenet")
  config.update(data_dir=data_dir, batch_size=batch_size, input_workers=workers,
                num_steps=1 + rounds * steps_per_round)
  config = runs.check_config(config)
  prepared = records.open_prepared(data_dir)
  model = runs.build_model(config, prepared.num_classes)
  tx = optim.make_optimizer(config)
  mesh = parallel.make_mesh()
  repl = parallel.replicated(mesh)
  state = jax.jit(lambda rng: create_train_state(model, tx, rng, image_shape=(224, 224, 3)),
                  out_shardings=repl)(jax.random.key(0))
  feed = feeds.StreamFeed(config, prepared, model, tx, mesh,
                          parallel.replicate(jax.random.key(1), mesh))
  try:
    fixed = parallel.put_batch(next(stream.train_batches(
        prepared.source("train"), seed=1, batch_size=batch_size, rows=slice(0, batch_size),
        start_step=0, num_steps=1, transform=feed.transform)), mesh)
    state, metrics = feed.train(state, 0, 1)  # compiles, starts the workers
    jax.block_until_ready(metrics)
    step, streamed, on_device = 1, [], []
    for _ in range(rounds):
      start = time.perf_counter()
      for _ in range(steps_per_round):
        state, metrics = feed.train(state, step, 1)
        step += 1
      jax.block_until_ready((state, metrics))
      streamed.append((time.perf_counter() - start) / steps_per_round)
      start = time.perf_counter()
      for _ in range(steps_per_round):
        state, metrics = feed.train_step(state, fixed, feed.aug_rng)
      jax.block_until_ready((state, metrics))
      on_device.append((time.perf_counter() - start) / steps_per_round)
  finally:
    feed.close()
  ratios = [d / s for d, s in zip(on_device, streamed)]
  return {"bench": "step", "model": "resnet18_imagenet", "batch_size": batch_size,
          "workers": workers, "streamed_ms": 1e3 * min(streamed),
          "on_device_ms": 1e3 * min(on_device), "ratio": float(np.median(ratios)),
          "ratios": [round(r, 3) for r in ratios]}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data_dir", default="", help="a prepared directory (default: fixture)")
  parser.add_argument("--images", type=int, default=256, help="fixture training images")
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--num_batches", type=int, default=16)
  parser.add_argument("--workers", default="1,2")
  parser.add_argument("--step_batch_size", type=int, default=16)
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--steps_per_round", type=int, default=3)
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  if args.quick:
    args.images, args.num_batches, args.rounds, args.steps_per_round = 32, 2, 1, 1
    args.batch_size, args.step_batch_size = 8, 4
  data_dir = prepared_dir(args)
  source = records.open_prepared(data_dir).source("train")
  bare = bare_decode(source, max(args.images, 64))
  print(json.dumps({"bench": "decode", "images_per_s": round(bare, 1), "cores": 1}), flush=True)
  for workers in (int(w) for w in args.workers.split(",")):
    rate = pipeline(source, workers=workers, batch_size=args.batch_size,
                    num_batches=args.num_batches)
    print(json.dumps({"bench": "pipeline", "workers": workers, "images_per_s": round(rate, 1),
                      "per_worker_vs_decode": round(rate / workers / bare, 3),
                      "cpu_count": os.cpu_count()}), flush=True)
  print(json.dumps(step_ratio(data_dir, batch_size=args.step_batch_size,
                              workers=max(int(w) for w in args.workers.split(",")),
                              rounds=args.rounds, steps_per_round=args.steps_per_round)),
        flush=True)


if __name__ == "__main__":
  main()
