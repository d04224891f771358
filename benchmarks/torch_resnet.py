"""The peer of `benchmarks/peer.py`: the project's CIFAR ResNet (He et al. 2015 §4.2) in PyTorch.

The same architecture as `resnet_jax.models.get_model("resnet{6n+2}")` with its defaults: a 3x3
stem of 16 channels with BN and ReLU; three stages of n basic blocks (16, 32, 64 channels, the
first block of stages 2 and 3 strided by 2), each block conv3x3-BN-ReLU-conv3x3-BN plus an
option-A shortcut (strided subsampling and zero-padded channels, no parameters), ReLU after the
addition; global average pooling and a dense layer. Convolutions have no bias, so the parameter
count equals ours exactly (`benchmarks/peer.py` checks it). Only the timing needs this net: its
initialisation follows ours (He normal, fan-out) but its values are never compared with ours.

Run as a script, this file is the peer's timing worker (`python benchmarks/torch_resnet.py
--device=cpu`): it reads one JSON command a line on stdin and answers one JSON line on stdout, so
that the driver, which never imports torch, can alternate rounds with it and the two frameworks'
thread pools never share a process (or even an interpreter: the driver may run a Python for which
no CPU torch wheel exists). Commands:
  {"cmd": "setup", "key": K, "model": "resnet20", "options": {}, "variant": "eager" | "compile",
   "batch_size": 128, "image_size": 32, "num_classes": 10, "dtype": "float32" | "bfloat16"}
                                           -> {"params": P, "setup_s": S} (includes compiling)
  (a CIFAR ResNet here, any other model name a twin of `torch_descendants.py`, which gets the
  options; "depth": 20 instead of "model" names resnet20)
  {"cmd": "run", "key": K, "steps": N}    -> {"seconds": S} (N steps, synchronised)
  {"cmd": "versions"}                      -> {"torch": ..., "device": ...}
"""
import argparse
import json
import os
import platform
import re
import sys
import time

import torch
import torch.nn.functional as F
import torch_descendants  # this directory
from torch import nn

WIDTHS = (16, 32, 64)
BN_MOMENTUM = 0.1  # PyTorch's convention for Flax's 0.9 (models/layers.py)
BN_EPSILON = 1e-5


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def batch_norm(channels: int) -> nn.BatchNorm2d:
  return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM)


class BasicBlock(nn.Module):
  """conv3x3-BN-ReLU-conv3x3-BN, option-A shortcut, ReLU after the addition."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1, self.bn1 = conv3x3(cin, cout, stride), batch_norm(cout)
    self.conv2, self.bn2 = conv3x3(cout, cout), batch_norm(cout)
    self.stride, self.extra = stride, cout - cin

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    skip = x[:, :, ::self.stride, ::self.stride] if self.stride > 1 else x
    if self.extra:
      # NCHW: pad the channel dimension (the third from last) with zeros at its end.
      skip = F.pad(skip, (0, 0, 0, 0, 0, self.extra))
    return F.relu(y + skip)


class CifarResNet(nn.Module):
  """ResNet-{6n+2} for [N, 3, H, W] images; returns [N, num_classes] logits."""

  def __init__(self, depth: int, num_classes: int = 10, widths=WIDTHS):
    super().__init__()
    n, remainder = divmod(depth - 2, 6)
    if remainder or n < 1:
      raise ValueError(f"depth must be 6n+2 with n >= 1, got {depth}")
    self.stem_conv, self.stem_bn = conv3x3(3, widths[0]), batch_norm(widths[0])
    blocks, cin = [], widths[0]
    for s, width in enumerate(widths):
      for i in range(n):
        blocks.append(BasicBlock(cin, width, 2 if s > 0 and i == 0 else 1))
        cin = width
    self.blocks = nn.Sequential(*blocks)
    self.head = nn.Linear(cin, num_classes)
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = F.relu(self.stem_bn(self.stem_conv(x)))
    x = self.blocks(x)
    return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_net(name: str, num_classes: int, options: dict) -> nn.Module:
  """The twin of our model `name`: a CIFAR ResNet (no options) or a descendant's."""
  found = re.fullmatch(r"resnet(\d+)", name)
  if found:
    if options:
      raise ValueError(f"the twin of {name} takes no options, got {sorted(options)}")
    return CifarResNet(int(found.group(1)), num_classes)
  return torch_descendants.build(name, num_classes, **options)


def num_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


DTYPES = {"float32": None, "bfloat16": torch.bfloat16}


def make_step(net: nn.Module, device: torch.device, dtype: str = "float32"):
  """One train step on a fixed batch: forward, softmax cross-entropy, backward, SGD (momentum
  0.9, weight decay 1e-4 on every parameter, as the project's recipe). dtype "bfloat16" runs
  the forward pass under autocast (PyTorch's mixed precision: float32 parameters and update, bf16
  convolutions and matmuls), the counterpart of our `config.dtype`; the loss is float32 as ours."""
  if dtype not in DTYPES:
    raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {dtype!r}")
  opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

  def step(images: torch.Tensor, labels: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device.type, dtype=DTYPES[dtype] or torch.float32,
                        enabled=DTYPES[dtype] is not None):
      logits = net(images)
    F.cross_entropy(logits.float(), labels).backward()
    opt.step()
  return step


class Worker:
  """The nets being timed, by the driver's key."""

  def __init__(self, device: str):
    self.device = torch.device(device)
    self.runs = {}

  def sync(self) -> None:
    if self.device.type == "cuda":
      torch.cuda.synchronize(self.device)

  def setup(self, key: str, variant: str, batch_size: int, image_size: int, num_classes: int,
            dtype: str = "float32", depth: int | None = None, model: str | None = None,
            options: dict | None = None) -> dict:
    torch.manual_seed(0)
    net = build_net(model or f"resnet{depth}", num_classes, options or {})
    net = net.to(self.device, memory_format=torch.channels_last)
    net.train()
    params = num_params(net)
    if variant == "compile":
      net = torch.compile(net)
    elif variant != "eager":
      raise ValueError(f"variant must be eager or compile, got {variant!r}")
    images = torch.randn(batch_size, 3, image_size, image_size, device=self.device)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, num_classes, (batch_size,), device=self.device)
    step = make_step(net, self.device, dtype)
    start = time.perf_counter()
    for _ in range(2):  # compiles (torch.compile), warms caches and the allocator
      step(images, labels)
    self.sync()
    self.runs[key] = (step, images, labels)
    return {"params": params, "setup_s": time.perf_counter() - start}

  def run(self, key: str, steps: int) -> dict:
    step, images, labels = self.runs[key]
    self.sync()
    start = time.perf_counter()
    for _ in range(steps):
      step(images, labels)
    self.sync()
    return {"seconds": (time.perf_counter() - start) / steps}

  def versions(self) -> dict:
    name = (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
            else f"{platform.machine()} cpu, {torch.get_num_threads()} threads")
    return {"torch": torch.__version__, "python": platform.python_version(), "device": name}


def serve(device: str) -> None:
  torch.set_num_threads(os.cpu_count())
  worker = Worker(device)
  for line in sys.stdin:
    command = json.loads(line)
    name = command.pop("cmd")
    try:
      if name not in ("setup", "run", "versions"):
        raise ValueError(f"unknown command {name!r}")
      reply = getattr(worker, name)(**command)
    except Exception as err:  # noqa: BLE001  reported to the driver, which stops with it
      reply = {"error": f"{type(err).__name__}: {err}"}
    print(json.dumps(reply), flush=True)


if __name__ == "__main__":
  parser = argparse.ArgumentParser(description="The peer benchmark's torch worker.")
  parser.add_argument("--device", default="cpu")
  serve(parser.parse_args().device)
