"""Our train step against PyTorch's on the same net (`make bench-peer`): JSON lines and a table.

For each CIFAR ResNet (resnet20, resnet56, resnet110 by default) it times one SGD step at the
same batch, image size and precision (float32) on both sides:
  * "ours": the project's compiled step (`parallel.compile_train_step` over `steps.train_step`,
    as `make bench` times it) over a training set of exactly one batch, so its batch is as good as
    made. It still gathers that batch and applies the recipe's pad-crop-flip, which the peer does
    not do (a few percent of the step at most), and it computes the step's metrics;
  * "torch_eager" and "torch_compile": the same net in PyTorch (`torch_resnet.py`, channels_last;
    its parameter count is checked against ours), forward, softmax cross-entropy, backward and
    SGD with momentum 0.9 and weight decay 1e-4, eager and under `torch.compile`, with every core
    as threads. They run in a worker process (`torch_resnet.py` as a script) under
    `--torch_python`, by default this Python: the driver imports no torch, so it runs on a Python
    for which no CPU torch wheel exists, and the two thread pools never share a process.

The variants alternate (ours, torch eager, torch compile, ours, ...) for `--rounds` rounds of
`--steps` steps after a warm-up that compiles each. Each row reports the median ms/step and, for
each of our variants, the median over rounds of the paired ratio ours / peer (below 1: ours is
faster). `--ours` times several of our model options side by side (e.g.
`--ours="conv_grad_chunks=1;"` for the plain convolutions and the default); their rows also give
the paired ratio to the first of them.
`--device=cuda` runs both sides on the first GPU (a CUDA jaxlib and a CUDA torch needed).
`--dtype=bfloat16` times mixed precision on both sides: our `config.dtype="bfloat16"` (bf16
compute; float32 parameters, BatchNorm statistics, loss and update) against torch's autocast.

Distance to the hardware: every row carries XLA's estimate of our step's floating-point work and
memory traffic (`cost_analysis()` of the compiled step: `gflop_per_step`, `gb_per_step`; the
peer runs the same net, so its rows use the same work) and the achieved TFLOP/s. Given the
chip's peaks (`--peak_tflops` for the dtype timed, `--peak_gbps`), each row also gives the
fraction of the FLOP peak reached and the fraction of the step that the memory-traffic bound
alone would take (`memory_bound_fraction`: 1.0 means bandwidth-bound).
"""
import argparse
import functools
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time

import flax
import jax
import numpy as np
import optax

from resnet_jax import configs, optim, parallel, steps
from resnet_jax.models import get_model
from resnet_jax.train_state import create_train_state, num_params

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_resnet.py")
PEERS = ("eager", "compile")


def jax_device(kind: str) -> jax.Device:
  platform_name = {"cpu": "cpu", "cuda": "gpu"}[kind]
  try:
    return jax.devices(platform_name)[0]
  except RuntimeError:
    sys.exit(f"--device={kind}: this jax has no {platform_name} backend "
             f"(installed: {jax.default_backend()})")


def cifar_depth(name: str) -> int:
  found = re.fullmatch(r"resnet(\d+)", name)
  if found is None or (int(found.group(1)) - 2) % 6:
    sys.exit(f"the peer exists for the CIFAR ResNets resnet{{6n+2}} only, got {name!r}")
  return int(found.group(1))


class Ours:
  """Our compiled train step on one device, over a training set of one random batch."""

  def __init__(self, name: str, options: str, batch_size: int, image_size: int,
               device: jax.Device, dtype: str = "float32"):
    config = configs.resolve_warmup(configs.base_config())
    model = get_model(name, **configs.parse_model_options(options))
    tx = optim.make_optimizer(config)
    mesh = parallel.make_mesh([device])
    repl = parallel.replicated(mesh)
    step_fn = functools.partial(steps.train_step, model=model, tx=tx,
                                learning_rate_fn=optim.learning_rate_schedule(config),
                                batch_size=batch_size, compute_dtype=dtype)
    self.step = parallel.compile_train_step(step_fn, mesh, batch_size=batch_size)
    shape = (image_size, image_size, 3)
    self.state = jax.jit(functools.partial(create_train_state, model, tx, image_shape=shape),
                         out_shardings=repl)(jax.random.key(0))
    self.params = num_params(self.state.params)
    rng = np.random.default_rng(0)
    self.data = {
        "image": parallel.put_global(rng.standard_normal((batch_size, *shape), np.float32), repl),
        "label": parallel.put_global(rng.integers(0, 10, batch_size, np.int32), repl)}
    self.keys = jax.device_put((jax.random.key(1), jax.random.key(2)), repl)
    start = time.perf_counter()
    # Compiled once, ahead of time: the executable that is timed is the one whose cost is read.
    self.step = self.step.lower(self.state, self.data, *self.keys).compile()
    self.cost = step_cost(self.step)
    self.run(1)  # warms up
    self.setup_s = time.perf_counter() - start

  def run(self, num_steps: int) -> float:
    """Seconds per step over num_steps steps."""
    start = time.perf_counter()
    for _ in range(num_steps):
      self.state, metrics = self.step(self.state, self.data, *self.keys)
    jax.block_until_ready((self.state, metrics))
    return (time.perf_counter() - start) / num_steps


def step_cost(compiled) -> dict:
  """XLA's estimate of the work of one compiled step (`jax.stages.Compiled`): {"gflop": ...,
  "gb": ...} (0 where the backend gives none)."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
    cost = cost[0] if cost else {}
  cost = cost or {}
  return {"gflop": float(cost.get("flops", 0.0)) / 1e9,
          "gb": float(cost.get("bytes accessed", 0.0)) / 1e9}


def hardware_fractions(cost: dict, ms: float, peak_tflops: float, peak_gbps: float) -> dict:
  """Achieved TFLOP/s of a step of `cost` taking `ms`, and its fractions of the chip's peaks."""
  out = {"gflop_per_step": round(cost["gflop"], 3), "gb_per_step": round(cost["gb"], 4),
         "tflops": round(cost["gflop"] / ms, 3)}
  if peak_tflops:
    out["flop_peak_fraction"] = round(cost["gflop"] / ms / peak_tflops, 4)
  if peak_gbps:
    out["memory_bound_fraction"] = round(1000 * cost["gb"] / peak_gbps / ms, 4)
  return out


class Peer:
  """The torch worker process (`torch_resnet.py`), one per benchmark run."""

  def __init__(self, python: str, device: str):
    self.proc = subprocess.Popen([python, WORKER, f"--device={device}"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, text=True)

  def call(self, cmd: str, **args) -> dict:
    self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
    self.proc.stdin.flush()
    line = self.proc.stdout.readline()
    if not line:
      sys.exit("the torch worker stopped (its error is above). Is torch installed for "
               "--torch_python? `pip install -e '.[bench]'` installs it.")
    reply = json.loads(line)
    if "error" in reply:
      sys.exit(f"torch worker, {cmd}: {reply['error']}")
    return reply

  def close(self) -> None:
    self.proc.stdin.close()
    self.proc.wait()


class PeerRun:
  """One net of the worker, timed like `Ours`."""

  def __init__(self, peer: Peer, key: str, **setup):
    self.peer, self.key = peer, key
    reply = peer.call("setup", key=key, **setup)
    self.params, self.setup_s = reply["params"], reply["setup_s"]

  def run(self, num_steps: int) -> float:
    return self.peer.call("run", key=self.key, steps=num_steps)["seconds"]


def ours_name(options: str) -> str:
  return f"ours[{options}]" if options else "ours"


def bench_model(name: str, args, peer: Peer, device: jax.Device) -> list[dict]:
  """Alternated rounds of every variant of one model; one row per variant."""
  depth = cifar_depth(name)
  runners = {}
  for options in args.ours:
    try:
      runners[ours_name(options)] = Ours(name, options, args.batch_size, args.image_size, device,
                                         args.dtype)
    except ValueError as err:
      sys.exit(f"--ours={options!r}: {err}")
  for variant in args.peers:
    runners[f"torch_{variant}"] = PeerRun(
        peer, f"{name}/{variant}", depth=depth, variant=variant, batch_size=args.batch_size,
        image_size=args.image_size, num_classes=10, dtype=args.dtype)
  counts = {key: runner.params for key, runner in runners.items()}
  if len(set(counts.values())) != 1:
    sys.exit(f"{name}: the nets differ in parameter count: {counts}")
  cost = runners[ours_name(args.ours[0])].cost  # the same net on every side
  times = {key: [] for key in runners}
  for _ in range(args.rounds):
    for key, runner in runners.items():
      times[key].append(runner.run(args.steps))
  ours = [ours_name(o) for o in args.ours]

  def ratio(a: str, b: str) -> float:
    return round(statistics.median(x / y for x, y in zip(times[a], times[b])), 3)
  rows = []
  for key, runner in runners.items():
    ms = 1000 * statistics.median(times[key])
    if key in ours:
      ratios = {f"{key}/{other}": ratio(key, other) for other in runners
                if other not in ours or (other == ours[0] and key != ours[0])}
    else:
      ratios = {f"{o}/{key}": ratio(o, key) for o in ours}
    rows.append({"model": name, "variant": key, "batch_size": args.batch_size,
                 "image_size": args.image_size, "dtype": args.dtype, "params": runner.params,
                 "ms_per_step": round(ms, 2),
                 **hardware_fractions(cost, ms, args.peak_tflops, args.peak_gbps),
                 "images_per_s": round(1000 * args.batch_size / ms, 1),
                 "ms_per_round": [round(1000 * t, 2) for t in times[key]],
                 "ratios": ratios, "setup_s": round(runner.setup_s, 1)})
  return rows


def versions(peer: Peer, device: jax.Device) -> dict:
  return {"python": platform.python_version(), "jax": jax.__version__,
          "jaxlib": jax.lib.__version__, "flax": flax.__version__, "optax": optax.__version__,
          "numpy": np.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""),
          "ld_preload": os.environ.get("LD_PRELOAD", ""),
          "jax_device": f"{device.device_kind}, {os.cpu_count()} cores",
          **{f"peer_{k}": v for k, v in peer.call("versions").items()}}


def table(rows: list[dict], ours: list[str], peers: list[str]) -> str:
  """A markdown table: one line per model and our variant."""
  peaks = "flop_peak_fraction" in rows[0]
  head = ["model", "variant", "ours ms"] + [f"torch {p} ms" for p in peers] + [
      f"ours / torch {p}" for p in peers] + ["ours TFLOP/s"] + (
      ["ours % of FLOP peak"] if peaks else [])
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  by_key = {(r["model"], r["variant"]): r for r in rows}
  for model in dict.fromkeys(r["model"] for r in rows):
    for o in ours:
      row = by_key[(model, o)]
      cells = [model, o, f"{row['ms_per_step']:.1f}"]
      cells += [f"{by_key[(model, f'torch_{p}')]['ms_per_step']:.1f}" for p in peers]
      cells += [f"{row['ratios'][f'{o}/torch_{p}']:.2f}" for p in peers]
      cells += [f"{row['tflops']:.3g}"] + (
          [f"{100 * row['flop_peak_fraction']:.1f}"] if peaks else [])
      lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", default="resnet20,resnet56,resnet110")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--image_size", type=int, default=32)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
  parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
  parser.add_argument("--dtype", choices=tuple(steps.COMPUTE_DTYPES), default="float32",
                      help="compute dtype of both sides: ours config.dtype, torch autocast")
  parser.add_argument("--peak_tflops", type=float, default=0.0,
                      help="the chip's peak TFLOP/s at --dtype (0: not reported)")
  parser.add_argument("--peak_gbps", type=float, default=0.0,
                      help="the chip's memory bandwidth in GB/s (0: not reported)")
  parser.add_argument("--ours", default="",
                      help="';'-separated model options of our variants ('' = the defaults)")
  parser.add_argument("--peers", default=",".join(PEERS), help="torch variants: eager,compile")
  parser.add_argument("--torch_python", default=sys.executable,
                      help="the Python whose torch runs the peer (default: this one)")
  parser.add_argument("--quick", action="store_true",
                      help="a smoke run: resnet8, batch 8, 8x8 images, torch eager, 1 round")
  args = parser.parse_args()
  if args.quick:
    args.models, args.batch_size, args.image_size = "resnet8", 8, 8
    args.rounds, args.steps, args.peers = 1, 2, "eager"
  args.ours = args.ours.split(";")
  args.peers = [p for p in args.peers.split(",") if p]
  if not set(args.peers) <= set(PEERS):
    sys.exit(f"--peers must be among {PEERS}, got {args.peers}")
  device = jax_device(args.device)
  peer = Peer(args.torch_python, args.device)
  try:
    common = {"device": args.device, **versions(peer, device)}
    rows = []
    for name in args.models.split(","):
      for row in bench_model(name, args, peer, device):
        print(json.dumps({**row, **common}), flush=True)
        rows.append(row)
  finally:
    peer.close()
  print()
  print(table(rows, [ours_name(o) for o in args.ours], args.peers))


if __name__ == "__main__":
  main()
