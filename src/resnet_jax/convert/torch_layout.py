"""torchvision's (and timm's) ResNet state dicts <-> the variables of our ImageNet ResNets.

Our `resnet{18,34,50,101,152}_imagenet` (option B, bottlenecks with `stride_in_3x3=True`) are
torchvision's `resnet18` ... `resnet152` layer for layer; timm's ResNets of those names have the
same keys and shapes. A torch key names a module and a tensor, and every tensor has exactly one
place in our variables:

  conv1, bn1                          stem_conv, stem_bn
  layer{s}.0.{conv,bn}{k}             stage{s}/block1/{conv,bn}{k}
  layer{s}.{i}.{conv,bn}{k}, i >= 1   stage{s}/blocks/block/{conv,bn}{k}, row i - 1 of the stacked
                                      block axis (`stages.Stage` scans a stage's identical blocks)
  layer{s}.0.downsample.{0,1}         stage{s}/block1/{conv_proj,bn_proj}
  fc                                  head

  conv weight [out, in, kh, kw]       kernel [kh, kw, in, out]
  fc weight [out, in], bias           kernel [in, out], bias
  bn weight, bias                     params scale, bias
  bn running_mean, running_var        batch_stats mean, var

BatchNorm's `num_batches_tracked` counts training steps and takes part in no output (our BN uses
a fixed momentum): it is accepted and ignored on the way in, and left out on the way out (torch's
`load_state_dict` fills it in, strict or not).

The table is not written out key by key: `entries(model)` walks the model's own variables
(`jax.eval_shape` of its init) and names the torch key of each, so every variable has one key and
a layout change in the models shows up as an error here, not as a silently wrong mapping.
"""
import dataclasses
import re
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax.errors import CheckpointMismatchError, ConversionError
from resnet_jax.models import blocks, network, resnet

IGNORED_SUFFIX = ".num_batches_tracked"
SUPPORTED = "resnet{18,34,50,101,152}_imagenet"
COLLECTIONS = ("params", "batch_stats")

# Our layer names inside a block -> torchvision's, in torchvision's order within a block.
_BLOCK_LAYERS = {"conv1": "conv1", "bn1": "bn1", "conv2": "conv2", "bn2": "bn2", "conv3": "conv3",
                 "bn3": "bn3", "conv_proj": "downsample.0", "bn_proj": "downsample.1"}
_TOP_LAYERS = {"stem_conv": "conv1", "stem_bn": "bn1", "head": "fc"}
# (collection, our leaf) -> torch's tensor name.
_TENSORS = {("params", "kernel"): "weight", ("params", "bias"): "bias",
            ("params", "scale"): "weight", ("batch_stats", "mean"): "running_mean",
            ("batch_stats", "var"): "running_var"}
_TENSOR_ORDER = ("weight", "bias", "running_mean", "running_var")


@dataclasses.dataclass(frozen=True)
class Entry:
  """One torch tensor and its place in our variables.

  Attributes:
    key: the torch state-dict key ("layer3.4.bn2.running_var").
    path: (collection, module names ..., leaf) of our variable.
    row: the row of a stacked (scanned-block) variable, else None.
    shape: the torch tensor's shape.
  """
  key: str
  path: tuple[str, ...]
  row: int | None
  shape: tuple[int, ...]

  def to_ours(self, tensor: np.ndarray) -> np.ndarray:
    """torch's layout -> ours: convolution and dense weights are transposed."""
    if tensor.ndim == 4:
      return tensor.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    return tensor.T if tensor.ndim == 2 else tensor

  def to_torch(self, value: np.ndarray) -> np.ndarray:
    if value.ndim == 4:
      return value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    return value.T if value.ndim == 2 else value


def check_model(model: nn.Module) -> None:
  """ConversionError unless `model` has a torchvision/timm counterpart: an ImageNet ResNet with
  option-B shortcuts, its bottlenecks strided in the 3x3 conv (v1.5)."""
  if not isinstance(model, network.ResNet) or model.stem is not network.imagenet_stem:
    raise ConversionError(f"only the ImageNet ResNets ({SUPPORTED}) have a torchvision/timm "
                          f"counterpart; this model is a {type(model).__name__} of another kind")
  block = getattr(model.block, "func", model.block)
  options = getattr(model.block, "keywords", {})
  if not model.is_residual:
    raise ConversionError("plain nets (no shortcuts) have no torchvision or timm counterpart; "
                          f"only the ResNets {SUPPORTED} convert")
  if (block not in (blocks.BasicBlock, blocks.Bottleneck) or model.head is not network.pooled_head
      or model.first_block is not None or model.unit_widths is not None
      or model.stem_width is not None or options.get("expansion", 4) != 4):
    raise ConversionError(f"this ResNet differs from torchvision's in its parts; only {SUPPORTED} "
                          "convert")
  if options.get("shortcut", "B") != "B":
    raise ConversionError(f"torchvision's and timm's ResNets project the shortcut where the shape "
                          f"changes (option B); this net uses option {options['shortcut']}: build "
                          "it with shortcut='B'")
  if block is blocks.Bottleneck and not options.get("stride_in_3x3", False):
    raise ConversionError(
        "torchvision's and timm's bottleneck ResNets stride the 3x3 conv (v1.5); this net strides "
        "the first 1x1 conv (He et al.'s v1): build it with stride_in_3x3=True (get_model(NAME, "
        "stride_in_3x3=True), or --config.model_options=stride_in_3x3=True)")


def layout(model: nn.Module) -> dict[str, Any]:
  """The model's variables as shapes (`jax.ShapeDtypeStruct`s), without computing them."""
  # The image size decides no parameter's shape; 32 px leaves 1x1 after the five halvings.
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3), jnp.float32))


def _module_name(modules: tuple[str, ...]) -> str | None:
  """Our module path -> torch's module name ("{}" for the block index of a stacked one), or None
  where torch has no such module."""
  if len(modules) == 1 and modules[0] in _TOP_LAYERS:
    return _TOP_LAYERS[modules[0]]
  stage = re.fullmatch(r"stage(\d+)", modules[0]) if modules else None
  if stage is None or modules[-1] not in _BLOCK_LAYERS:
    return None
  if modules[1:-1] == ("block1",):
    return f"layer{stage.group(1)}.0.{_BLOCK_LAYERS[modules[-1]]}"
  if modules[1:-1] == ("blocks", "block"):
    return f"layer{stage.group(1)}.{{}}.{_BLOCK_LAYERS[modules[-1]]}"
  return None


def _sort_key(key: str) -> tuple:
  """torchvision's order: stem, layers and blocks in network order, fc; within a block conv1, bn1,
  ..., downsample; within a BN weight, bias, running statistics."""
  parts = key.split(".")
  layer = re.fullmatch(r"layer(\d+)", parts[0])
  head = (0 if parts[0] == "conv1" else 1 if parts[0] == "bn1" else 3,) if layer is None else (
      2, int(layer.group(1)), int(parts[1]), list(_BLOCK_LAYERS.values()).index(
          ".".join(parts[2:-1])))
  return head + (_TENSOR_ORDER.index(parts[-1]),)


def entries(model: nn.Module) -> list[Entry]:
  """Every torch tensor of `model`'s counterpart, in torchvision's order, each with its place in
  our variables (see the module docstring). ConversionError if the model has no counterpart."""
  check_model(model)
  found = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(layout(model)):
    names = tuple(p.key for p in path)
    collection, modules, leaf_name = names[0], names[1:-1], names[-1]
    name = _module_name(modules)
    tensor = _TENSORS.get((collection, leaf_name))
    if name is None or tensor is None:
      raise ConversionError(f"{'/'.join(names)} has no torchvision counterpart; only {SUPPORTED} "
                            "convert")
    shape = tuple(leaf.shape)
    if "{}" in name:  # a stacked variable: one torch tensor per scanned block
      for row in range(shape[0]):
        found.append(_entry(f"{name.format(row + 1)}.{tensor}", names, row, shape[1:]))
    else:
      found.append(_entry(f"{name}.{tensor}", names, None, shape))
  return sorted(found, key=lambda e: _sort_key(e.key))


def _entry(key: str, path: tuple[str, ...], row: int | None, shape: tuple[int, ...]) -> Entry:
  torch_shape = ((shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4
                 else tuple(reversed(shape)))
  return Entry(key, path, row, torch_shape)


def _blocks(bottleneck: bool, sizes: tuple[int, ...]) -> str:
  """"bottleneck blocks (3, 4, 6, 3) per stage (resnet50_imagenet)": our name where there is one."""
  kind = blocks.Bottleneck if bottleneck else blocks.BasicBlock
  named = [d for d, (k, s) in resnet.IMAGENET_STAGES.items() if k is kind and tuple(s) == sizes]
  name = f" (resnet{named[0]}_imagenet)" if named else ""
  return f"{'bottleneck' if bottleneck else 'basic'} blocks {sizes} per stage{name}"


def describe(state_dict: Mapping[str, Any]) -> str:
  """What net a torchvision-layout state dict holds, for error messages: its block kind and
  blocks per stage (torch's layer{s}), and our name for it where there is one."""
  counts: dict[int, int] = {}
  bottleneck = False
  for key in state_dict:
    found = re.match(r"layer(\d+)\.(\d+)\.(conv\d)", key)
    if found:
      stage, block = int(found.group(1)), int(found.group(2))
      counts[stage] = max(counts.get(stage, 0), block + 1)
      bottleneck |= found.group(3) == "conv3"
  if not counts:
    return "no torchvision ResNet (no layer{s}.{i}.conv keys)"
  return "a ResNet of " + _blocks(bottleneck,
                                 tuple(counts.get(s, 0) for s in range(1, max(counts) + 1)))


def _listed(keys: list[str], most: int = 4) -> str:
  shown = ", ".join(keys[:most])
  return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")


def _model_blocks(model: network.ResNet) -> str:
  block = getattr(model.block, "func", model.block)
  return _blocks(block is blocks.Bottleneck, tuple(model.stage_sizes))


def from_torch_state_dict(state_dict: Mapping[str, Any], model: nn.Module) -> dict[str, Any]:
  """The variables of `model` from a torchvision- or timm-layout ResNet state dict.

  Args:
    state_dict: torch key -> array (numpy arrays or anything `np.asarray` reads: the tensors of
      `torch.load` after `.numpy()`, or `safetensors.numpy.load_file`'s output).
    model: one of `resnet{18,34,50,101,152}_imagenet` with `stride_in_3x3=True` for the
      bottleneck nets (`get_model(name, num_classes=C, stride_in_3x3=True)`), C the rows of
      `fc.weight`.
  Returns:
    {"params": ..., "batch_stats": ...}: nested dicts of float32 numpy arrays in `model`'s layout
    (half-precision tensors are widened, exactly).
  Raises:
    ConversionError: `model` has no torchvision counterpart (a plain net, option A/C shortcuts, a
      v1 bottleneck net: the message says the fix).
    CheckpointMismatchError: a key the model needs is missing, a key is left over (the message says
      which net the state dict holds), or a tensor has another shape; the message names the keys.
  """
  layout_entries = entries(model)
  needed = {e.key for e in layout_entries}
  # num_batches_tracked only where the model has that BatchNorm: elsewhere it is a stray key.
  ignorable = {e.key.rsplit(".", 1)[0] + IGNORED_SUFFIX for e in layout_entries
               if e.key.endswith(".running_mean")}
  missing = [e.key for e in layout_entries if e.key not in state_dict]
  extra = sorted(k for k in state_dict if k not in needed and k not in ignorable)
  if missing or extra:
    what = [f"lacks {len(missing)} key(s) the model needs: {_listed(missing)}"] if missing else []
    what += [f"has {len(extra)} key(s) the model does not: {_listed(extra)}"] if extra else []
    raise CheckpointMismatchError(
        f"the state dict {' and '.join(what)}; it holds {describe(state_dict)}, the model "
        f"has {_model_blocks(model)}")
  stacked: dict[tuple[str, ...], dict[int, np.ndarray]] = {}
  out: dict[str, Any] = {}
  for e in layout_entries:
    tensor = np.asarray(state_dict[e.key])
    if tuple(tensor.shape) != e.shape:
      raise CheckpointMismatchError(
          f"{e.key} has shape {tuple(tensor.shape)}, the model needs {e.shape}; the state dict "
          f"holds {describe(state_dict)}, the model has {_model_blocks(model)}")
    if not np.issubdtype(tensor.dtype, np.floating):
      raise CheckpointMismatchError(f"{e.key} holds {tensor.dtype} values, not floating point")
    value = np.ascontiguousarray(e.to_ours(tensor.astype(np.float32)))
    if e.row is None:
      _put(out, e.path, value)
    else:
      stacked.setdefault(e.path, {})[e.row] = value
  for path, rows in stacked.items():
    _put(out, path, np.stack([rows[i] for i in range(len(rows))]))
  return out


def to_torch_state_dict(variables: Mapping[str, Any], model: nn.Module) -> dict[str, np.ndarray]:
  """The torchvision-layout state dict of `model`'s `variables`: the inverse of
  `from_torch_state_dict`, exactly (float32 numpy arrays in torchvision's key order, without
  `num_batches_tracked`, which torch's `load_state_dict` fills in).

  Raises:
    ConversionError: as `from_torch_state_dict`.
    CheckpointMismatchError: a variable of the model is missing from `variables` or has another
      shape (the message names it).
  """
  layout_entries = entries(model)
  known = {e.path for e in layout_entries}
  extra = sorted("/".join(str(p.key) for p in path) for path, _ in
                 jax.tree_util.tree_leaves_with_path({c: variables.get(c, {}) for c in COLLECTIONS})
                 if tuple(str(p.key) for p in path) not in known)
  if extra:
    raise CheckpointMismatchError(f"the variables hold {len(extra)} the model does not: "
                                  f"{_listed(extra)}")
  state: dict[str, np.ndarray] = {}
  for e in layout_entries:
    value = variables
    for name in e.path:
      if not isinstance(value, Mapping) or name not in value:
        raise CheckpointMismatchError(f"the variables lack {'/'.join(e.path)} ({e.key})")
      value = value[name]
    value = np.asarray(value)
    if e.row is not None:
      value = value[e.row]
    value = e.to_torch(value)
    if value.shape != e.shape:
      raise CheckpointMismatchError(
          f"{'/'.join(e.path)} has shape {value.shape} in torch's layout, the model needs "
          f"{e.shape} ({e.key})")
    state[e.key] = np.ascontiguousarray(value, dtype=np.float32)
  return state


def _put(tree: dict[str, Any], path: tuple[str, ...], value: np.ndarray) -> None:
  for name in path[:-1]:
    tree = tree.setdefault(name, {})
  tree[path[-1]] = value
