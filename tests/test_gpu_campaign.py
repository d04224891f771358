"""The GPU campaign script (benchmarks/gpu_campaign.py) and the peer benchmark's hardware columns,
on the CPU: budgets, skips, stops, the commands it builds, and one smoke run (slow)."""
import importlib.util
import json
import os
import subprocess
import sys
import tarfile

import jax
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import gpu_campaign  # noqa: E402
import peer  # noqa: E402  (imports no torch)


def load_experiment(name: str):
  spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "experiments",
                                                                   f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_hardware_fractions_arithmetic():
  # 2 GFLOP in 4 ms = 0.5 TFLOP/s, half of a 1 TFLOP/s peak; 0.5 GB at 1000 GB/s take 0.5 ms,
  # an eighth of the step.
  out = peer.hardware_fractions({"gflop": 2.0, "gb": 0.5}, 4.0, 1.0, 1000.0)
  assert out["tflops"] == 0.5 and out["flop_peak_fraction"] == 0.5
  assert out["memory_bound_fraction"] == 0.125
  assert "flop_peak_fraction" not in peer.hardware_fractions({"gflop": 2.0, "gb": 0.5}, 4.0, 0, 0)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_our_step_cost_is_about_three_forward_passes(dtype):
  # XLA's count for a whole train step of ResNet-8 (batch 8, 8x8) against the convolutions' and
  # the dense layer's forward multiply-adds counted by hand: a train step is about 3 forward
  # passes (forward, input gradient, kernel gradient; the stem has no input gradient), plus BN,
  # the update and augmentation. XLA's estimate comes to about 2.3 of them here: the band only
  # catches a count of the wrong thing (none, or the forward pass alone, or per example).
  ours = peer.Ours("resnet8", "", 8, 8, jax.devices("cpu")[0], dtype)
  # 3x3 convs: stem 3->16 at 8x8; stage 1: two 16->16 at 8x8; stage 2: 16->32 and 32->32 at
  # 4x4; stage 3: 32->64 and 64->64 at 2x2. Dense 64->10.
  macs = 9 * (64 * (3 * 16 + 2 * 16 * 16) + 16 * (16 * 32 + 32 * 32) + 4 * (32 * 64 + 64 * 64))
  forward_gflop = 8 * 2 * (macs + 64 * 10) / 1e9
  assert 1.8 * forward_gflop < ours.cost["gflop"] < 5 * forward_gflop, ours.cost
  assert ours.cost["gb"] > 0


def test_train_commands_use_existing_config_fields():
  config = load_experiment("degradation").get_config("fashion_mnist,smoke")
  args = gpu_campaign.main_parser().parse_args(["--out=x", "--smoke"])
  args.workdir = "w"
  for name in gpu_campaign.TRAIN_ITEMS:
    argv = gpu_campaign.train_argv(name, args)
    assert "--config=experiments/degradation.py:fashion_mnist,smoke" in argv
    for flag in argv:
      if flag.startswith("--config.train."):
        assert flag.split("=")[0][len("--config.train."):] in config.train, flag
  warm = gpu_campaign.train_argv("resnet56_warmup", args)
  assert "--config.train.warmup=steps" in warm and "--joint_seeds=True" in warm
  assert "--config.train.dtype=bfloat16" in gpu_campaign.train_argv("resnet56_bf16", args)
  assert "--joint_seeds=False" in gpu_campaign.train_argv("resnet110", args)


def test_estimates_follow_steps_seeds_and_models():
  assert gpu_campaign.estimate_s("resnet20") == pytest.approx(
      gpu_campaign.OVERHEAD_S + 64_000 * 2.5e-3 * 3)
  assert gpu_campaign.estimate_s("plain") == pytest.approx(
      gpu_campaign.OVERHEAD_S + 64_000 * (2.3e-3 + 6.2e-3))


def test_command_stops_at_its_time_limit(tmp_path):
  campaign = gpu_campaign.Campaign(str(tmp_path), budget_s=60)
  rc, _, wall = campaign.command([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)
  assert rc == 124 and wall < 20
  rc, lines, _ = campaign.command([sys.executable, "-c", "print('done')"], 30)
  assert rc == 0 and lines == ["done\n"]


def run_campaign(tmp_path, *flags) -> list[dict]:
  out = tmp_path / "out"
  subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_campaign.py"),
                  f"--out={out}", f"--workdir={tmp_path / 'runs'}", *flags],
                 env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")},
                 capture_output=True, text=True, timeout=900, check=True)
  return [json.loads(line) for line in (out / "campaign.jsonl").read_text().splitlines()]


def test_items_that_do_not_fit_are_skipped_with_the_reason(tmp_path):
  events = run_campaign(tmp_path, "--budget_s=30", "--items=resnet20,plain")
  skipped = {e["item"]: e["skipped"] for e in events if "skipped" in e}
  assert set(skipped) == {"resnet20", "plain"} and "s needed" in skipped["plain"]
  assert events[1]["item"] == "versions" and events[1]["jax"] == jax.__version__
  assert events[-1]["done"] and not (tmp_path / "runs").exists()


def test_unknown_item_is_one_line(tmp_path):
  result = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_campaign.py"),
                           f"--out={tmp_path}", "--items=resnet21"], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")})
  assert result.returncode != 0
  assert result.stderr.strip().splitlines() == [
      f"--items: unknown ['resnet21']; choose among {','.join(gpu_campaign.ITEMS)}"]


@pytest.mark.slow
def test_smoke_campaign_trains_and_packs_without_checkpoints(tmp_path):
  events = run_campaign(tmp_path, "--smoke", "--items=peer,resnet56_warmup",
                        "--torch_python=/nonexistent/python")
  peer_event = next(e for e in events if e["item"] == "peer")
  assert "no torch" in peer_event["skipped"]
  end = next(e for e in events if e["item"] == "resnet56_warmup" and "rc" in e)
  assert end["rc"] == 0 and end["summary"]["seeds"] == 3
  assert end["summary"]["models"]["resnet56"]["final_test_error"]["n"] == 3
  with tarfile.open(tmp_path / "out" / "runs.tar.gz") as tar:
    names = tar.getnames()
  assert "runs/resnet56_warmup/summary.json" in names
  assert not [n for n in names if "checkpoints" in n]
  config = json.load(open(tmp_path / "runs" / "resnet56_warmup" / "seed0" / "resnet56" /
                          "config.json"))
  assert config["warmup"] == "steps"
