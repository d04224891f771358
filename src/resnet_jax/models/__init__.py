"""The model zoo: `get_model(name)` returns a Flax Linen module; `list_models()` names them.

Names:
  plain{6n+2}, resnet{6n+2}      He et al. 2015 CIFAR nets (n >= 1: 8, 20, 32, 44, 56, 110, 1202,
                                 ...), option A shortcuts by default, so a ResNet and its plain
                                 twin have exactly the same parameters.
  preact_resnet{6n+2}            He et al. 2016 pre-activation nets with basic units (option A).
  preact_bottleneck{9n+2}        pre-activation nets with bottleneck units (option B).
  preact_resnet164, preact_resnet1001
                                 the paper's names for the *bottleneck* nets 164 = 9*18+2 and
                                 1001 = 9*111+2, as in He et al. 2016 (164 is also of the form
                                 6n+2; use preact_bottleneck164 / a basic 6n+2 name to be explicit).
  resnet{18,34,50,101,152}_imagenet, plain{18,34}_imagenet
                                 He et al. 2015 Table 1, option B. Bottleneck nets stride the
                                 first 1x1 conv as in the paper (v1); stride_in_3x3=True gives
                                 the "v1.5" placement most libraries use.

Overrides (keyword arguments): `shortcut` ("A" | "B" | "C") for residual nets, `stride_in_3x3`
for ImageNet bottleneck nets, `widths` and `scan_unroll` (how many of a stage's identical blocks
run per loop step; see `stages.py`) for all.
"""
import functools
import re
from typing import Any

import flax.linen as nn

from resnet_jax.models import blocks, layers
from resnet_jax.models.layers import BlockControls
from resnet_jax.models.resnet import CifarResNet, ImageNetResNet, PreActCifarResNet

__all__ = ["BlockControls", "get_model", "list_models", "CifarResNet", "ImageNetResNet",
           "PreActCifarResNet"]

_IMAGENET = {
    18: (blocks.BasicBlock, (2, 2, 2, 2)),
    34: (blocks.BasicBlock, (3, 4, 6, 3)),
    50: (blocks.Bottleneck, (3, 4, 6, 3)),
    101: (blocks.Bottleneck, (3, 4, 23, 3)),
    152: (blocks.Bottleneck, (3, 8, 36, 3)),
}
_PLAIN_IMAGENET = (18, 34)
_PAPER_BOTTLENECK_NAMES = {"preact_resnet164": 164, "preact_resnet1001": 1001}
_CIFAR_RE = re.compile(r"(plain|resnet|preact_resnet|preact_bottleneck)(\d+)")
_IMAGENET_RE = re.compile(r"(plain|resnet)(\d+)_imagenet")

_NAMES_HELP = ("plain{6n+2} and resnet{6n+2} (n >= 1: 8, 14, 20, ..., 56, 110, 1202), "
               "preact_resnet{6n+2}, preact_bottleneck{9n+2} (11, 20, ..., 164, 1001), "
               "preact_resnet164, preact_resnet1001, resnet{18,34,50,101,152}_imagenet, "
               "plain{18,34}_imagenet")


def list_models() -> list[str]:
  """The named presets of the papers (every other 6n+2 / 9n+2 depth is accepted too)."""
  cifar = [f"{kind}{d}" for kind in ("plain", "resnet") for d in (8, 20, 32, 44, 56, 110, 1202)]
  preact = ["preact_resnet20", "preact_resnet56", "preact_resnet110", "preact_resnet164",
            "preact_resnet1001", "preact_bottleneck164", "preact_bottleneck1001"]
  imagenet = [f"resnet{d}_imagenet" for d in _IMAGENET]
  imagenet += [f"plain{d}_imagenet" for d in _PLAIN_IMAGENET]
  return cifar + preact + imagenet


def _blocks_per_stage(name: str, depth: int, layers_per_block: int) -> int:
  n, remainder = divmod(depth - 2, layers_per_block)
  if remainder or n < 1:
    valid = ", ".join(str(layers_per_block * k + 2) for k in (1, 2, 3, 9, 18))
    raise ValueError(f"unknown model {name!r}: the depth of this family must be of the form "
                     f"{layers_per_block}n+2 with n >= 1 ({valid}, ...); valid names: "
                     f"{_NAMES_HELP}")
  return n


def _preset(name: str) -> functools.partial:
  if name in _PAPER_BOTTLENECK_NAMES:
    name = f"preact_bottleneck{_PAPER_BOTTLENECK_NAMES[name]}"
  if match := _IMAGENET_RE.fullmatch(name):
    kind, depth = match.group(1), int(match.group(2))
    allowed = _PLAIN_IMAGENET if kind == "plain" else tuple(_IMAGENET)
    if depth not in allowed:
      raise ValueError(f"unknown model {name!r}: {kind}*_imagenet exists for depths {allowed}")
    block_cls, sizes = _IMAGENET[depth]
    if kind == "plain":
      block_cls = blocks.PlainBlock
    return functools.partial(ImageNetResNet, stage_sizes=sizes, block_cls=block_cls)
  if match := _CIFAR_RE.fullmatch(name):
    kind, depth = match.group(1), int(match.group(2))
    if kind == "preact_bottleneck":
      n = _blocks_per_stage(name, depth, 9)
      return functools.partial(PreActCifarResNet, blocks_per_stage=n,
                               block_cls=blocks.PreActBottleneck, shortcut="B")
    n = _blocks_per_stage(name, depth, 6)
    if kind == "preact_resnet":
      return functools.partial(PreActCifarResNet, blocks_per_stage=n,
                               block_cls=blocks.PreActBlock)
    block_cls = blocks.PlainBlock if kind == "plain" else blocks.BasicBlock
    return functools.partial(CifarResNet, blocks_per_stage=n, block_cls=block_cls)
  raise ValueError(f"unknown model {name!r}; valid names: {_NAMES_HELP}")


def _allowed_overrides(preset: functools.partial) -> tuple[str, ...]:
  allowed = ["widths", "scan_unroll"]
  if preset.keywords["block_cls"] is not blocks.PlainBlock:
    allowed.append("shortcut")
  if preset.keywords["block_cls"] is blocks.Bottleneck:
    allowed.append("stride_in_3x3")
  return tuple(allowed)


def get_model(name: str, *, num_classes: int = 10, **overrides: Any) -> nn.Module:
  """Returns the Flax module for `name` (see the module docstring for names and overrides).

  Raises:
    ValueError: unknown name or depth, num_classes < 1, an override the model does not take, or
      a bad shortcut letter; the message names the valid choices.
  """
  preset = _preset(name)
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
  allowed = _allowed_overrides(preset)
  unknown = sorted(set(overrides) - set(allowed))
  if unknown:
    raise ValueError(f"{name} takes no override {unknown}; it takes {list(allowed)}")
  if "shortcut" in overrides:
    layers.check_shortcut(overrides["shortcut"])
  if "widths" in overrides:
    overrides["widths"] = tuple(overrides["widths"])
  return preset(num_classes=num_classes, **overrides)
