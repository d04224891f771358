"""`make bench-peer`: the PyTorch twin of our CIFAR ResNet, and a smoke run of the benchmark."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from resnet_jax.models import get_model

torch = pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import torch_resnet  # noqa: E402


@pytest.mark.parametrize("depth", [8, 20, 56, 110])
def test_torch_net_has_our_parameter_count(depth):
  shapes = jax.eval_shape(lambda: get_model(f"resnet{depth}").init(
      jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32)))
  ours = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))
  assert torch_resnet.num_params(torch_resnet.CifarResNet(depth)) == ours


def test_quick_run_prints_rows_and_table():
  env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}
  out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "peer.py"), "--quick"],
                       env=env, capture_output=True, text=True, timeout=600, check=True).stdout
  rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
  assert [r["variant"] for r in rows] == ["ours", "torch_eager"]
  assert rows[0]["params"] == rows[1]["params"] and rows[0]["ratios"]["ours/torch_eager"] > 0
  assert "| resnet8 | ours |" in out
