"""Pretrained ImageNet ResNets in and out: torchvision's and timm's checkpoints <-> our runs.

  python -m resnet_jax.convert --input=resnet50.safetensors --model=resnet50_imagenet --out=DIR
  python -m resnet_jax.convert --to_torch --input=DIR --out=resnet50.safetensors

Our `resnet{18,34,50,101,152}_imagenet` are torchvision's `resnet18` ... `resnet152` layer for
layer, and timm's ResNets of those names have the same state dicts (`torch_layout` holds the
mapping). torchvision's and timm's bottleneck nets are "v1.5" (stride in the 3x3 conv): their
runs here are built with `stride_in_3x3=True`, which the command sets itself.

Library:
  random_state_dict(model_name): an untrained net's state dict, initialised as torchvision
    initialises its ResNets (what converts where no trained weights can be had: offline, tests)
  from_torch_state_dict(state_dict, model) -> {"params", "batch_stats"}
  to_torch_state_dict(variables, model) -> {key: array}, its exact inverse
  read_state_dict(path), write_safetensors(state_dict, path): the files (numpy; torch only to read
    a .pth pickle)
  from_torch_file(path, model_name, out) and to_torch_file(workdir, path): what the command does.

A converted directory reads as a run (`runs.read_config`, `checkpoint.restore_saved`): evaluation,
the analyses (`python -m resnet_jax.analyze --workdir=DIR --data_dir=PREPARED --num_images=500`)
and fine-tuning (`pretrained.initial_variables`) take it; no training resumes in it (it holds the
weights, not an optimizer state). It holds
  config.json       `configs.base_config()` with model, model_options ("stride_in_3x3=True" for
                    the bottleneck nets, else ""), dataset "imagenet", normalization
                    "channel_mean_std" (as the streamed path reads it), and num_classes, a field
                    only converted runs carry: the rows of the file's fc layer (a run trained here
                    takes its class count from its data set);
  checkpoints/0/    {"params", "batch_stats"} as float32 numpy arrays (`checkpoint.save_variables`);
  converted.json    where it came from: the file, its SHA-256, the tensors used and ignored.
The library never imports torch: `.safetensors` files are read with numpy.
"""
import hashlib
import os
import shutil
import tempfile
from typing import Any

import ml_collections
import numpy as np

from resnet_jax import checkpoint, configs, metrics_io, runs
from resnet_jax.convert.files import read_state_dict, write_safetensors
from resnet_jax.convert.torch_layout import (
  IGNORED_SUFFIX,
  entries,
  from_torch_state_dict,
  to_torch_state_dict,
)
from resnet_jax.errors import CheckpointMismatchError, ConversionError, NoRunError
from resnet_jax.models import blocks

__all__ = ["CONVERTED_FILE", "DATASET", "from_torch_file", "from_torch_state_dict",
           "random_state_dict", "read_state_dict", "to_torch_file", "to_torch_state_dict",
           "write_safetensors"]

CONVERTED_FILE = "converted.json"
DATASET = "imagenet"
DEFAULT_CLASSES = 1000


def converted_config(model_name: str, num_classes: int) -> ml_collections.ConfigDict:
  """The config.json of a converted run (see the module docstring): model, model_options,
  dataset and num_classes set on `configs.base_config()`.

  Raises:
    ConversionError: an unknown model name.
  """
  config = configs.base_config()
  config.model, config.dataset = model_name, DATASET
  # torchvision's and timm's nets take images normalised by ImageNet's channel mean and std.
  config.normalization = "channel_mean_std"
  config.num_classes = num_classes
  model = _build(config)
  block = getattr(getattr(model, "block", None), "func", None)
  if block is blocks.Bottleneck:
    config.model_options = "stride_in_3x3=True"  # torchvision's and timm's v1.5 placement
  return config


def _build(config: ml_collections.ConfigDict):
  try:
    return runs.build_model(config, config.num_classes)
  except ValueError as err:
    raise ConversionError(str(err)) from None


def random_state_dict(model_name: str, num_classes: int = DEFAULT_CLASSES,
                      seed: int = 0) -> dict[str, np.ndarray]:
  """The state dict of an untrained torchvision ResNet (`torchvision.models.resnet50()` without
  weights), float32: the distributions torchvision initialises it from, drawn with numpy (not
  torch's numbers). Convolutions He-normal with fan_out (std sqrt(2 / (out * kh * kw))), BatchNorm
  weight 1, bias 0, running mean 0 and variance 1, fc weight and bias uniform in
  +-1/sqrt(in_features) (torch's Linear).

  Raises:
    ConversionError: a model with no torchvision counterpart.
  """
  layout = entries(_build(converted_config(model_name, num_classes)))
  fc_inputs = next(e.shape[1] for e in layout if e.key == "fc.weight")
  rng = np.random.default_rng(seed)
  state = {}
  for entry in layout:
    module, tensor = entry.key.rsplit(".", 1)
    if len(entry.shape) == 4:
      out, _, kh, kw = entry.shape
      value = rng.normal(0.0, np.sqrt(2.0 / (out * kh * kw)), entry.shape)
    elif module == "fc":
      bound = 1.0 / np.sqrt(fc_inputs)
      value = rng.uniform(-bound, bound, entry.shape)
    else:
      value = np.full(entry.shape, 1.0 if tensor in ("weight", "running_var") else 0.0)
    state[entry.key] = value.astype(np.float32)
  return state


def _sha256(path: str) -> str:
  """The file's SHA-256, the digest the model hubs list for their weight files."""
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def from_torch_file(path: str, model_name: str, out: str) -> dict[str, Any]:
  """Converts a torchvision/timm ResNet state-dict file into a run directory `out`.

  Args:
    path: a `.safetensors` file, or a `.pth`/`.pt` pickle (read through torch, which must then be
      installed).
    model_name: one of `resnet{18,34,50,101,152}_imagenet`; the class count is the file's.
    out: a directory that does not exist yet; it appears whole or not at all (written under a
      temporary name, then renamed).
  Returns:
    What converted.json holds.
  Raises:
    ConversionError: `out` exists, a model with no torch counterpart, torch absent for a pickle.
    CorruptDataError: the file is missing, truncated or not a state dict.
    CheckpointMismatchError: the file's keys or shapes are not the model's (the message names the
      keys and the net the file holds).
  """
  if os.path.lexists(out):
    raise ConversionError(f"{out} exists; name a new directory for the converted run")
  state = read_state_dict(path)
  fc = state.get("fc.weight")
  num_classes = int(fc.shape[0]) if getattr(fc, "ndim", 0) == 2 else DEFAULT_CLASSES
  config = converted_config(model_name, num_classes)
  variables = from_torch_state_dict(state, _build(config))
  ignored = sorted(k for k in state if k.endswith(IGNORED_SUFFIX))
  info = {"source": os.path.abspath(path), "sha256": _sha256(path), "model": model_name,
          "model_options": config.model_options, "num_classes": num_classes,
          "tensors": len(state) - len(ignored), "ignored": {IGNORED_SUFFIX[1:]: len(ignored)},
          "checkpoint_step": 0}
  parent = os.path.dirname(os.path.abspath(out))
  os.makedirs(parent, exist_ok=True)
  partial = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.", suffix=".partial", dir=parent)
  try:
    mngr = checkpoint.manager(partial)
    checkpoint.save_variables(mngr, variables, step=0)
    mngr.close()
    metrics_io.write_json(os.path.join(partial, metrics_io.CONFIG_FILE), config.to_dict())
    metrics_io.write_json(os.path.join(partial, CONVERTED_FILE), info)
    os.rename(partial, out)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise
  return info


def to_torch_file(workdir: str, path: str, step: int | None = None) -> dict[str, Any]:
  """Writes the checkpoint of the run in `workdir` (converted or trained here; the latest step by
  default) as a torchvision-layout `.safetensors` state dict at `path` (a new file).

  torch reads it with `model.load_state_dict(safetensors.torch.load_file(path))` (strict: the
  `num_batches_tracked` counts it lacks are filled in by torch).

  Raises:
    ConversionError: `path` exists or is not a .safetensors name, the run's model has no torch
      counterpart.
    NoRunError: `workdir` holds no run or no checkpoint.
  """
  if not path.endswith(".safetensors"):
    raise ConversionError(f"--out={path}: the torch state dict is written as a .safetensors file")
  if os.path.lexists(path):
    raise ConversionError(f"{path} exists; name a new file")
  config = runs.read_config(workdir)
  if not os.path.isdir(os.path.join(workdir, "checkpoints")):
    raise NoRunError(f"{workdir} holds no checkpoint (no checkpoints/ directory)")
  mngr = checkpoint.manager(workdir)
  restored = checkpoint.restore_saved(mngr, step)
  step = mngr.latest_step() if step is None else step
  mngr.close()
  variables = {c: restored.get(c, {}) for c in ("params", "batch_stats")}
  head = variables["params"].get("head", {}).get("kernel")
  if head is None:
    raise CheckpointMismatchError(f"the checkpoint of {workdir} has no head (params/head/kernel)")
  config.num_classes = int(np.shape(head)[-1])
  state = to_torch_state_dict(variables, _build(config))
  write_safetensors(state, path)
  return {"workdir": os.path.abspath(workdir), "checkpoint_step": step, "model": config.model,
          "num_classes": config.num_classes, "tensors": len(state), "path": os.path.abspath(path)}
