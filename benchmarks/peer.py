"""Our train step against PyTorch's on the same net (`make bench-peer`): JSON lines and a table.

For each net of `--models` (the CIFAR ResNets resnet20, resnet56, resnet110 and one of each
descendant family by default: WRN-16-4, PyramidNet-110 (alpha 48), DenseNet-BC-100 (k = 12) and
FractalNet (C = 3)) it times one SGD step at the same batch, image size and precision (float32)
on both sides:
  * "ours": the project's compiled step (`parallel.compile_train_step` over `steps.train_step`,
    as `make bench` times it) over a training set of exactly one batch, so its batch is as good as
    made. It still gathers that batch and applies the recipe's pad-crop-flip, which the peer does
    not do (a few percent of the step at most), and it computes the step's metrics;
  * "torch_eager" and "torch_compile": the same net in PyTorch (`torch_resnet.py`,
    `torch_descendants.py`, channels_last; its parameter count is checked against ours),
    forward, softmax cross-entropy, backward and SGD with momentum 0.9 and weight decay 1e-4,
    eager and under `torch.compile`, with every core as threads. They run in a worker process
    (`torch_resnet.py` as a script) under `--torch_python`, by default this Python: the driver
    imports no torch, so it runs on a Python for which no CPU torch wheel exists, and the two
    thread pools never share a process.

The variants alternate (ours, torch eager, torch compile, ours, ...) for `--rounds` rounds of
`--steps` steps after a warm-up that compiles each. Each row reports the median ms/step and, for
each of our variants, the median over rounds of the paired ratio ours / peer (below 1: ours is
faster). `--ours` times several of our model options side by side (e.g.
`--ours="conv_grad_chunks=1;"` for the plain convolutions and the default); their rows also give
the paired ratio to the first of them.
A net of `--models` may carry variants, options given to both sides (ours: `get_model`'s
overrides; the twin takes the same), as `name[options|options]`: e.g.
`densenet_bc100_k12[memory_efficient=False|memory_efficient=True]` times the plain and the
memory-efficient DenseNet-BC side by side, and each row after the first of a net gives every
side's paired ratio to that first ("plain") variant.
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


DESCENDANTS = ("wrn16_4,pyramidnet110_a48,densenet_bc100_k12[memory_efficient=False|"
               "memory_efficient=True],fractalnet_c3[drop_path=0.0,global_drop=0.0|]")
MODELS = "resnet20,resnet56,resnet110," + DESCENDANTS


def parse_models(text: str) -> list[tuple[str, list[str]]]:
  """"a,b[o1|o2]" -> [("a", [""]), ("b", ["o1", "o2"])]: each net with its variants' options."""
  specs = []
  for found in re.finditer(r"([\w.]+)(?:\[([^\]]*)\])?(?:,|$)", text):
    if found.group(1):
      specs.append((found.group(1), found.group(2).split("|") if found.group(2) is not None
                    else [""]))
  if ",".join(n + (f"[{'|'.join(v)}]" if v != [""] else "") for n, v in specs) != text:
    sys.exit(f"--models must read name,name[options|options],..., got {text!r}")
  return specs


def joined(*options: str) -> str:
  return ",".join(o for o in options if o)


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
    # Initialised as the train loop does (unoptimised on a CPU): a plain jit spent minutes
    # optimising DenseNet-BC-100's initialisation, a program that runs once.
    self.state = parallel.compile_init(
        functools.partial(create_train_state, model, tx, image_shape=shape), mesh)(
            jax.random.key(0))
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


def progress(message: str) -> None:
  """One line on stderr, so a long run shows where it is (stdout carries the JSON rows)."""
  print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def ours_name(options: str) -> str:
  return f"ours[{options}]" if options else "ours"


def bench_model(name: str, model_variants: list[str], args, peer: Peer,
                device: jax.Device) -> list[dict]:
  """Alternated rounds of every variant of one net (its `model_variants` times ours and the
  peers); one row per variant."""
  runners, groups = {}, []
  for model_options in model_variants:
    group = {}
    for options in args.ours:
      try:
        group[ours_name(options)] = Ours(name, joined(model_options, options), args.batch_size,
                                         args.image_size, device, args.dtype)
      except ValueError as err:
        sys.exit(f"{name}, options {joined(model_options, options)!r}: {err}")
    for variant in args.peers:
      group[f"torch_{variant}"] = PeerRun(
          peer, f"{name}[{model_options}]/{variant}", model=name,
          options=configs.parse_model_options(model_options), variant=variant,
          batch_size=args.batch_size, image_size=args.image_size, num_classes=10,
          dtype=args.dtype)
    for key, runner in group.items():
      progress(f"{name}[{model_options}] {key}: set up and warmed up in {runner.setup_s:.1f} s")
    counts = {key: runner.params for key, runner in group.items()}
    if len(set(counts.values())) != 1:
      sys.exit(f"{name}[{model_options}]: the nets differ in parameter count: {counts}")
    groups.append((model_options, group))
    runners.update({(model_options, key): runner for key, runner in group.items()})
  times = {key: [] for key in runners}
  for round_index in range(args.rounds):
    for key, runner in runners.items():
      times[key].append(runner.run(args.steps))
    progress(f"{name}: round {round_index + 1} of {args.rounds} done")
  ours = [ours_name(o) for o in args.ours]

  def ratio(a, b) -> float:
    return round(statistics.median(x / y for x, y in zip(times[a], times[b])), 3)
  rows = []
  plain = model_variants[0]
  for model_options, group in groups:
    cost = group[ours[0]].cost  # the same net on every side
    for key, runner in group.items():
      ms = 1000 * statistics.median(times[(model_options, key)])
      if key in ours:
        ratios = {f"{key}/{other}": ratio((model_options, key), (model_options, other))
                  for other in group if other not in ours or (other == ours[0] and key != ours[0])}
      else:
        ratios = {f"{o}/{key}": ratio((model_options, o), (model_options, key)) for o in ours}
      if model_options != plain:
        ratios[f"{key}/plain"] = ratio((model_options, key), (plain, key))
      rows.append({"model": name, "model_options": model_options, "variant": key,
                   "batch_size": args.batch_size, "image_size": args.image_size,
                   "dtype": args.dtype, "params": runner.params, "ms_per_step": round(ms, 2),
                   **hardware_fractions(cost, ms, args.peak_tflops, args.peak_gbps),
                   "images_per_s": round(1000 * args.batch_size / ms, 1),
                   "ms_per_round": [round(1000 * t, 2) for t in times[(model_options, key)]],
                   "ratios": ratios, "setup_s": round(runner.setup_s, 1),
                   "load": round(os.getloadavg()[0], 2)})
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
  head = ["model", "options", "variant", "ours ms"] + [f"torch {p} ms" for p in peers] + [
      f"ours / torch {p}" for p in peers] + ["ours TFLOP/s"] + (
      ["ours % of FLOP peak"] if peaks else []) + ["ours / plain"] + [
      f"torch {p} / plain" for p in peers]
  lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
  by_key = {(r["model"], r["model_options"], r["variant"]): r for r in rows}
  for model, options in dict.fromkeys((r["model"], r["model_options"]) for r in rows):
    for o in ours:
      row = by_key[(model, options, o)]
      peer_rows = [by_key[(model, options, f"torch_{p}")] for p in peers]
      cells = [model, options or "-", o, f"{row['ms_per_step']:.1f}"]
      cells += [f"{r['ms_per_step']:.1f}" for r in peer_rows]
      cells += [f"{row['ratios'][f'{o}/torch_{p}']:.2f}" for p in peers]
      cells += [f"{row['tflops']:.3g}"] + (
          [f"{100 * row['flop_peak_fraction']:.1f}"] if peaks else [])
      cells += [f"{r['ratios'][k]:.2f}" if (k := f"{r['variant']}/plain") in r["ratios"] else "-"
                for r in [row] + peer_rows]
      lines.append("| " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--models", default=MODELS,
                      help="nets, each with its variants' options: name[options|options]")
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
    for name, model_variants in parse_models(args.models):
      for row in bench_model(name, model_variants, args, peer, device):
        print(json.dumps({**row, **common}), flush=True)
        rows.append(row)
  finally:
    peer.close()
  print()
  print(table(rows, [ours_name(o) for o in args.ours], args.peers))


if __name__ == "__main__":
  main()
