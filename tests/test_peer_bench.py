"""`make bench-peer`: the PyTorch twins of our nets, and a smoke run of the benchmark."""
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


def our_num_params(name: str, **options) -> int:
  rngs = {"params": jax.random.key(0), "minibatch": jax.random.key(1),
          "dropout": jax.random.key(2)}
  shapes = jax.eval_shape(lambda: get_model(name, **options).init(
      rngs, np.zeros((1, 32, 32, 3), np.float32)))
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("depth", [8, 20, 56, 110])
def test_torch_net_has_our_parameter_count(depth):
  assert torch_resnet.num_params(torch_resnet.CifarResNet(depth)) == our_num_params(
      f"resnet{depth}")


# The descendants of `make bench-peer` (2,748,890; 1,772,706; 769,162; 33,714,314 parameters)
# and small members of each family, with the options the benchmark gives both sides.
@pytest.mark.parametrize("name,options", [
    ("wrn16_4", {}), ("wrn10_1", {}), ("pyramidnet110_a48", {}), ("pyramidnet8_a4", {}),
    ("densenet_bc100_k12", {"memory_efficient": False}), ("densenet_bc16_k4", {}),
    ("fractalnet_c3", {}), ("fractalnet_c2", {"drop_path": 0.0, "global_drop": 0.0})])
def test_descendant_twins_have_our_parameter_counts(name, options):
  twin = torch_resnet.build_net(name, 10, dict(options))
  assert torch_resnet.num_params(twin) == our_num_params(name, **options)
  logits = twin(torch.zeros(2, 3, 32, 32))
  assert tuple(logits.shape) == (2, 10)


def test_quick_run_prints_rows_and_table():
  env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "src")}
  out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "peer.py"), "--quick"],
                       env=env, capture_output=True, text=True, timeout=600, check=True).stdout
  rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
  assert [r["variant"] for r in rows] == ["ours", "torch_eager"]
  assert rows[0]["params"] == rows[1]["params"] and rows[0]["ratios"]["ours/torch_eager"] > 0
  assert "| resnet8 | ours |" in out
