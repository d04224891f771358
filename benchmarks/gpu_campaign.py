r"""The GPU campaign: every measurement a lent GPU is wanted for, in one command, within a budget.

  python benchmarks/gpu_campaign.py --out=DIR --budget_s=540                   # on the GPU
  python benchmarks/gpu_campaign.py --out=DIR --budget_s=900 --smoke           # tried on a CPU
  make gpu-campaign CAMPAIGN_FLAGS="--out=DIR --items=peer,resnet20"

Items, in this order (`--items` picks some; each is skipped, with the reason, when its estimate
exceeds what is left of `--budget_s`, and stopped when it runs past it):
  peer          `benchmarks/peer.py --device=cuda`: our step vs torch eager and torch.compile
                (channels_last) for ResNet-20/56/110 at batch 128 and 1024, float32 and bfloat16
                (ours `config.dtype`, torch autocast), with the fractions of the chip's peaks
                (`--peak_tflops_fp32/_bf16`, `--peak_gbps`: the H200's datasheet values).
  resnet20      the full He 2015 recipe (`make degradation`'s: 64k steps of 128, lr 0.1 /10 at
  resnet56      32k and 48k) on Fashion-MNIST, 3 seeds in one compiled step (`--joint_seeds`);
  resnet56_warmup  ResNet-56 with He's 400-step warm-up at lr 0.01 (the first steps at lr 0.1
                blow up on Fashion-MNIST);
  plain         plain-20 and plain-56, one seed; plain56_warmup the same with the warm-up;
  resnet56_bf16 ResNet-56, 3 seeds, config.dtype="bfloat16" (to compare with resnet56);
  resnet110     ResNet-110, one seed (its recipe warms up by default).
Every training item is one `python -m resnet_jax.experiment` run of experiments/degradation.py
with overrides (printed in the log, so each result names its command), K = --steps_per_call
steps per compiled call, evaluation every 4,000 steps and one checkpoint kept.

What it writes in --out (flat, few files, so that all of it comes back from a lent machine):
  campaign.jsonl  one JSON line per event: versions, each peer row, each item's start, end,
                  wall time, return code or skip reason, and each training run's summary
  peer.md         the peer tables, one per batch size and dtype
  runs.tar.gz     the training workdirs without checkpoints: reports, metrics, curves
  campaign.log    everything the commands printed
--smoke tries the same path on a CPU in minutes: the peer on ResNet-8 at batch 8 (8x8 images,
torch eager only; skipped without a --torch_python that has torch) and each training item for a
few steps on a slice of Fashion-MNIST (the `,smoke` config), with no budget estimates.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import tarfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# H200 SXM datasheet: 989 TFLOP/s dense bf16 tensor, 67 TFLOP/s fp32 (non-tensor), 4.8 TB/s.
H200 = {"peak_tflops_fp32": 67.0, "peak_tflops_bf16": 989.0, "peak_gbps": 4800.0}
# Train-step ms at batch 128 on the H200, measured by this project (docs/performance.md), for
# the estimates; a joint step of S seeds is counted as S steps, which overestimates when the GPU
# is not full.
STEP_MS = {"resnet20": 2.5, "resnet56": 6.7, "resnet110": 13.0, "plain20": 2.3, "plain56": 6.2}
FULL_STEPS = 64_000
OVERHEAD_S = 60  # start, data, compile, evaluations

# name: (models, seeds, extra overrides)
TRAIN_ITEMS = {
    "resnet20": (("resnet20",), 3, {}),
    "resnet56": (("resnet56",), 3, {}),
    "resnet56_warmup": (("resnet56",), 3, {"warmup": "steps"}),
    "plain": (("plain20", "plain56"), 1, {}),
    "plain56_warmup": (("plain56",), 1, {"warmup": "steps"}),
    "resnet56_bf16": (("resnet56",), 3, {"dtype": "bfloat16"}),
    "resnet110": (("resnet110",), 1, {}),
}
ITEMS = ("peer",) + tuple(TRAIN_ITEMS)


class Campaign:
  """The output folder, the clock and the log of one campaign."""

  def __init__(self, out: str, budget_s: float):
    os.makedirs(out, exist_ok=True)
    self.out, self.deadline = out, time.monotonic() + budget_s
    self.events = open(os.path.join(out, "campaign.jsonl"), "a")
    self.log = open(os.path.join(out, "campaign.log"), "a")

  def left_s(self) -> float:
    return self.deadline - time.monotonic()

  def event(self, **fields) -> None:
    fields = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **fields}
    self.events.write(json.dumps(fields) + "\n")
    self.events.flush()
    print(json.dumps(fields), flush=True)

  def command(self, argv: list[str], timeout_s: float) -> tuple[int, list[str], float]:
    """Runs argv from the repository root with its output in the log; (rc, stdout lines, s).
    rc is 124 when the budget stopped it, as timeout(1) says."""
    self.log.write(f"$ {shlex.join(argv)}\n")
    self.log.flush()
    start, lines = time.monotonic(), []
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [os.path.join(REPO, "src"),
                                                        os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    stopped = threading.Event()

    def stop():
      stopped.set()
      proc.kill()
    timer = threading.Timer(max(0.0, timeout_s), stop)  # a silent child is stopped too
    timer.start()
    try:
      for line in proc.stdout:
        self.log.write(line)
        self.log.flush()
        lines.append(line)
      rc = proc.wait()
    finally:
      timer.cancel()
    if stopped.is_set():
      rc = 124
    return rc, lines, time.monotonic() - start


def versions(campaign: Campaign) -> None:
  # In a child process: the driver never imports jax, which would take the GPU's memory from
  # the commands it runs.
  rc, lines, _ = campaign.command([sys.executable, "benchmarks/versions.py"], 120)
  found = [json.loads(line) for line in lines if line.startswith("{")]
  campaign.event(item="versions", rc=rc, **(found[0]["versions"] if found else {}))


def peer_runs(args) -> list[tuple[str, list[str]]]:
  """(label, argv) of each peer.py invocation."""
  base = [sys.executable, "benchmarks/peer.py", f"--torch_python={args.torch_python}"]
  if args.smoke:
    return [(f"quick {dtype}", base + ["--quick", f"--dtype={dtype}"])
            for dtype in ("float32", "bfloat16")]
  runs = []
  for batch in (128, 1024):
    for dtype, peak in (("float32", args.peak_tflops_fp32), ("bfloat16", args.peak_tflops_bf16)):
      runs.append((f"batch {batch} {dtype}", base + [
          "--device=cuda", "--models=resnet20,resnet56,resnet110", f"--batch_size={batch}",
          f"--dtype={dtype}", "--rounds=3", "--steps=20", f"--peak_tflops={peak}",
          f"--peak_gbps={args.peak_gbps}"]))
  return runs


def has_torch(python: str) -> bool:
  try:
    return subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0
  except OSError:  # no such interpreter
    return False


def run_peer(campaign: Campaign, args) -> None:
  if not has_torch(args.torch_python):
    campaign.event(item="peer", skipped=f"no torch in {args.torch_python} (--torch_python)")
    return
  tables = []
  for label, argv in peer_runs(args):
    estimate = 10 if args.smoke else 120
    if campaign.left_s() < estimate:
      campaign.event(item="peer", run=label, skipped=f"{campaign.left_s():.0f} s left, "
                                                     f"about {estimate} s needed")
      continue
    rc, lines, wall = campaign.command(argv, campaign.left_s())
    for line in lines:
      if line.startswith("{"):
        campaign.event(item="peer", run=label, row=json.loads(line))
    table = [line for line in lines if line.startswith("|")]
    if table:
      tables.append(f"### {label}\n\n" + "".join(table))
    campaign.event(item="peer", run=label, rc=rc, wall_s=round(wall, 1))
  with open(os.path.join(campaign.out, "peer.md"), "w") as f:
    f.write("\n".join(tables))


def train_argv(name: str, args) -> list[str]:
  models, seeds, extra = TRAIN_ITEMS[name]
  dataset = "fashion_mnist,smoke" if args.smoke else "fashion_mnist"
  steps = 4 if args.smoke else FULL_STEPS
  overrides = {"num_steps": steps, "eval_every": 2 if args.smoke else 4000,
               "checkpoint_every": steps if args.smoke else 8000, "keep_checkpoints": 1,
               "steps_per_call": args.steps_per_call, **extra}
  if args.data_dir:
    overrides["data_dir"] = args.data_dir
  argv = [sys.executable, "-m", "resnet_jax.experiment",
          f"--config=experiments/degradation.py:{dataset}",
          f"--workdir={os.path.join(args.workdir, name)}", f"--seeds={seeds}",
          f"--joint_seeds={seeds > 1}", f"--config.models={models!r}"]
  return argv + [f"--config.train.{k}={v}" for k, v in overrides.items()]


def estimate_s(name: str) -> float:
  models, seeds, _ = TRAIN_ITEMS[name]
  return OVERHEAD_S + sum(FULL_STEPS * STEP_MS[m] / 1000 * seeds for m in models)


def run_train(campaign: Campaign, name: str, args) -> None:
  argv = train_argv(name, args)
  estimate = 0 if args.smoke else estimate_s(name)
  if campaign.left_s() < estimate:
    campaign.event(item=name, skipped=f"{campaign.left_s():.0f} s left, about "
                                      f"{estimate:.0f} s needed at the measured step times")
    return
  campaign.event(item=name, start=shlex.join(argv[1:]), estimate_s=round(estimate))
  rc, _, wall = campaign.command(argv, campaign.left_s())
  summary_file = os.path.join(args.workdir, name, "summary.json")
  summary = json.load(open(summary_file)) if os.path.exists(summary_file) else None
  campaign.event(item=name, rc=rc, wall_s=round(wall, 1), summary=summary,
                 **({"stopped": "by the budget"} if rc == 124 else {}))


def pack_runs(campaign: Campaign, workdir: str) -> None:
  """The training workdirs without their checkpoints, as one archive."""
  if not os.path.isdir(workdir):
    return

  def keep(info: tarfile.TarInfo):
    parts = info.name.split("/")
    return None if "checkpoints" in parts or parts[-1].startswith(".lock") else info
  with tarfile.open(os.path.join(campaign.out, "runs.tar.gz"), "w:gz") as tar:
    tar.add(workdir, arcname="runs", filter=keep)


def main_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="folder of the results (a lent machine's $OUT)")
  parser.add_argument("--workdir", default="",
                      help="training workdirs (default: OUT/../gpu_campaign_runs)")
  parser.add_argument("--budget_s", type=float, default=540,
                      help="seconds for the whole campaign; items that do not fit are skipped")
  parser.add_argument("--items", default=",".join(ITEMS), help=f"among {','.join(ITEMS)}")
  parser.add_argument("--data_dir", default="", help="Fashion-MNIST's IDX files (default: "
                      "resnet_jax's own search: /usr/share/datasets/fashion-mnist)")
  parser.add_argument("--torch_python", default=sys.executable)
  parser.add_argument("--steps_per_call", type=int, default=10)
  parser.add_argument("--smoke", action="store_true", help="the same path, tiny, on a CPU")
  for key, value in H200.items():
    parser.add_argument(f"--{key}", type=float, default=value)
  return parser


def main():
  args = main_parser().parse_args()
  items = [item for item in args.items.split(",") if item]
  unknown = sorted(set(items) - set(ITEMS))
  if unknown:
    sys.exit(f"--items: unknown {unknown}; choose among {','.join(ITEMS)}")
  args.workdir = args.workdir or os.path.join(os.path.dirname(os.path.abspath(args.out)),
                                              "gpu_campaign_runs")
  campaign = Campaign(args.out, args.budget_s)
  campaign.event(item="campaign", items=items, budget_s=args.budget_s, smoke=args.smoke)
  versions(campaign)
  try:
    for item in items:
      if item == "peer":
        run_peer(campaign, args)
      else:
        run_train(campaign, item, args)
  finally:
    pack_runs(campaign, args.workdir)
    campaign.event(item="campaign", done=True, left_s=round(campaign.left_s()))


if __name__ == "__main__":
  main()
