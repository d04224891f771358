"""Model names -> models: `get_model(name)` and `list_models()`.

A family module exports `FAMILIES` (see `family.Family`); the tuple below lists every family
module's, in the order names are matched (a fixed name before a template that would also match
it). Adding a family is one module and one entry here.
"""
from typing import Any

import flax.linen as nn

from resnet_jax.models import densenet, fractalnet, layers, multires, network, pyramid, resnet, wide
from resnet_jax.models.family import UnknownDepthError

FAMILIES = (*resnet.FAMILIES, *wide.FAMILIES, *pyramid.FAMILIES, *multires.FAMILIES,
            *densenet.FAMILIES, *fractalnet.FAMILIES)


def list_models() -> list[str]:
  """The named presets of the papers (every other depth of a family is accepted too)."""
  return [name for family in FAMILIES for name in family.presets]


def _names_help() -> str:
  return ", ".join(family.help for family in FAMILIES if family.help)


def _with_drops(name: str, model: nn.Module, drops: dict[str, Any]) -> nn.Module:
  """`model` with the network's stochastic-depth options (`network.NETWORK_OPTIONS`) set."""
  if not drops:
    return model
  if not isinstance(model, network.ResNet) or not model.is_residual:
    raise ValueError(f"{sorted(drops)} apply to nets of residual blocks (each adds a branch to "
                     f"a shortcut, which a dropped block keeps); {name} is not built of them")
  current = {k: getattr(model, k) for k in network.NETWORK_OPTIONS}
  network.check_drops(model.num_blocks, **{**current, **drops})
  return model.clone(**drops)


def _with_conv_grad_chunks(model: nn.Module, chunks: int | None) -> nn.Module:
  """`model` whose convolutions compute their kernel gradients on `chunks` slices of the batch
  (`layers.sliced_grad_conv`); None: the backend's default, decided here once. Every family
  has the option."""
  if chunks is None:
    chunks = layers.default_conv_grad_chunks()
  return model.clone(conv_grad_chunks=layers.check_conv_grad_chunks(chunks))


def get_model(name: str, *, num_classes: int = 10, **overrides: Any) -> nn.Module:
  """Returns the Flax module called `name`, with `num_classes` logits and the family's options.

  Raises:
    ValueError: unknown name or depth, num_classes < 1, an override the family does not take, or
      a bad option value; the message names the valid choices.
  """
  if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
    raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
  for family in FAMILIES:
    numbers = family.match(name)
    if numbers is None:
      continue
    options = family.options() + network.NETWORK_OPTIONS + ("conv_grad_chunks",)
    unknown = sorted(set(overrides) - set(options))
    if unknown:
      raise ValueError(f"{name} takes no override {unknown}; it takes {list(options)}")
    drops = {k: overrides.pop(k) for k in network.NETWORK_OPTIONS if k in overrides}
    chunks = overrides.pop("conv_grad_chunks", None)
    try:
      model = family.build(*numbers, num_classes=num_classes, **overrides)
    except UnknownDepthError as err:
      raise ValueError(f"unknown model {name!r}: {err}; valid names: {_names_help()}") from None
    return _with_conv_grad_chunks(_with_drops(name, model, drops), chunks)
  raise ValueError(f"unknown model {name!r}; valid names: {_names_help()}")
