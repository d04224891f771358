"""The torch side of tests/test_convert.py, run as a script under a Python that has torch,
torchvision, safetensors and (for the timm test) timm: `make install-torch` makes one,
`.venv-torch`. The tests never import torch themselves (the project's Python may have no torch
wheel), so this worker reads one JSON command a line on stdin and answers one JSON line on stdout.

Commands:
  {"cmd": "make", "library": "torchvision" | "timm", "arch": "resnet50", "out": DIR, "batch": 2,
   "image_size": 64, "seed": 0}
      builds the net with random weights AND random BatchNorm statistics (weight, bias,
      running_mean, running_var; num_batches_tracked too), in eval mode, and writes its state dict
      as DIR/state.safetensors (safetensors.torch) and DIR/state.pth (torch.save), and random
      images [batch, 3, H, W] with the net's float32 logits as DIR/io.safetensors
      -> {"tensors": N, "params": P}
  {"cmd": "run", "library", "arch", "num_classes", "state": FILE, "io": FILE, "out": FILE}
      loads the .safetensors state dict FILE into a freshly built net with strict=True and writes
      its logits on io's images to `out` -> {"missing": [], "unexpected": []}
  {"cmd": "read", "src": SRC, "path": FILE.pth, "out": FILE.npz}
      reads FILE with the project's own reader (`resnet_jax.convert.files.read_state_dict`, with
      torch importable, which the tests' Python may lack) and saves what it returns -> {"keys": N}
"""
import importlib
import json
import os
import sys
import types

import numpy as np
import safetensors.torch
import torch


def build(library: str, arch: str, num_classes: int = 1000) -> torch.nn.Module:
  if library == "torchvision":
    import torchvision  # pylint: disable=g-import-not-at-top
    return getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
  if library == "timm":
    import timm  # pylint: disable=g-import-not-at-top
    return timm.create_model(arch, pretrained=False, num_classes=num_classes)
  raise ValueError(f"unknown library {library!r}")


def randomize(net: torch.nn.Module, generator: torch.Generator) -> None:
  """Random BatchNorm parameters and statistics on top of the random (default-initialised)
  convolution and fc weights: a net at initialisation has BN weight 1, bias 0, mean 0, var 1,
  where a wrong mapping of those tensors would go unnoticed. BN weights in [0.3, 0.7] keep the
  logits of order 1 at every depth (in [0.5, 1.5], ResNet-152's reach 1e7)."""
  uniform = lambda t, lo, hi: t.copy_(lo + (hi - lo) * torch.rand(t.shape, generator=generator))
  normal = lambda t, std: t.copy_(std * torch.randn(t.shape, generator=generator))
  with torch.no_grad():
    for module in net.modules():
      if isinstance(module, torch.nn.BatchNorm2d):
        uniform(module.weight, 0.3, 0.7)
        normal(module.bias, 0.2)
        normal(module.running_mean, 0.2)
        uniform(module.running_var, 0.5, 2.0)
        module.num_batches_tracked.fill_(12345)


def make(library: str, arch: str, out: str, batch: int, image_size: int, seed: int) -> dict:
  torch.manual_seed(seed)
  generator = torch.Generator().manual_seed(seed)
  net = build(library, arch)
  randomize(net, generator)
  net.eval()
  images = torch.randn(batch, 3, image_size, image_size, generator=generator)
  with torch.no_grad():
    logits = net(images)
  os.makedirs(out, exist_ok=True)
  state = net.state_dict()
  safetensors.torch.save_file(state, os.path.join(out, "state.safetensors"))
  torch.save(state, os.path.join(out, "state.pth"))
  safetensors.torch.save_file({"images": images.contiguous(), "logits": logits.contiguous()},
                              os.path.join(out, "io.safetensors"))
  return {"tensors": len(state), "params": sum(p.numel() for p in net.parameters())}


def run(library: str, arch: str, num_classes: int, state: str, io: str, out: str) -> dict:
  net = build(library, arch, num_classes)
  keys = net.load_state_dict(safetensors.torch.load_file(state), strict=True)
  net.eval()
  with torch.no_grad():
    logits = net(safetensors.torch.load_file(io)["images"])
  safetensors.torch.save_file({"logits": logits.contiguous()}, out)
  return {"missing": list(keys.missing_keys), "unexpected": list(keys.unexpected_keys)}


def read(src: str, path: str, out: str) -> dict:
  # The project's packages import JAX, which this Python lacks: stand-in package objects let
  # the reader's module and the errors module load alone, as they are.
  for name in ("resnet_jax", "resnet_jax.convert"):
    package = types.ModuleType(name)
    package.__path__ = [os.path.join(src, *name.split("."))]
    sys.modules[name] = package
  files = importlib.import_module("resnet_jax.convert.files")
  state = files.read_state_dict(path)
  np.savez(out, **state)
  return {"keys": len(state)}


def main() -> None:
  for line in sys.stdin:
    command = json.loads(line)
    cmd = command.pop("cmd")
    try:
      answer = {"make": make, "run": run, "read": read}[cmd](**command)
    except Exception as err:  # noqa: BLE001 - reported to the test, which fails with it
      answer = {"error": f"{type(err).__name__}: {err}"}
    print(json.dumps(answer), flush=True)


if __name__ == "__main__":
  main()
