"""A model family: a name template ("resnet{depth}") and the builder its numbers are passed to."""
import dataclasses
import inspect
import re
from typing import Callable

import flax.linen as nn

_FIELD = re.compile(r"\{(\w+)\}")


class UnknownDepthError(ValueError):
  """A name of the family's form whose numbers the family does not build (e.g. resnet21)."""


@dataclasses.dataclass(frozen=True)
class Family:
  """Names of one family of models and how to build them.

  Attributes:
    template: the name, with `{field}` for each integer it carries: "resnet{depth}" matches
      resnet20 and calls `build(20, ...)`. A template without fields names one model.
    build: `build(*numbers, num_classes=..., **options)` -> the Linen module. Its keyword-only
      parameters are the options (overrides) that `get_model` accepts for the family.
    presets: the papers' named models, listed by `list_models()`.
    help: how the names look, for error messages ("" to say nothing more).
    decimal: the fields whose number may have a fractional part ("4.75", passed as a float;
      without a point, as an int).
  """
  template: str
  build: Callable[..., nn.Module]
  presets: tuple[str, ...]
  help: str
  decimal: tuple[str, ...] = ()

  def match(self, name: str) -> tuple[int | float, ...] | None:
    """The numbers that `name` carries, in template order, or None if it is not of this family."""
    parts = _FIELD.split(self.template)
    # Even positions are literal text, odd positions field names.
    pattern = "".join(re.escape(p) if i % 2 == 0 else
                      r"(\d+(?:\.\d+)?)" if p in self.decimal else r"(\d+)"
                      for i, p in enumerate(parts))
    found = re.fullmatch(pattern, name)
    return None if found is None else tuple(float(g) if "." in g else int(g)
                                            for g in found.groups())

  def options(self) -> tuple[str, ...]:
    """The overrides this family takes (keyword-only parameters of `build`, but num_classes)."""
    params = inspect.signature(self.build).parameters.values()
    return tuple(p.name for p in params
                 if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "num_classes")
