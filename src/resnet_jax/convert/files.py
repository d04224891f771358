"""State-dict files: `.safetensors` read and written with numpy alone, `.pth`/`.pt` read through
torch where it is installed.

timm's hub weights come as `.safetensors`; torchvision's as `.pth` pickles, which only torch can
read. This module imports neither torch nor JAX (torch only inside `read_state_dict`, for a pickle).
"""
import os
from typing import Mapping

import numpy as np

from resnet_jax.errors import ConversionError, CorruptDataError

SAFETENSORS = (".safetensors",)
PICKLES = (".pth", ".pt", ".bin")
# Training checkpoints often hold the state dict under one of these keys (timm's train script:
# "state_dict"; torchvision's reference scripts: "model").
_NESTED = ("state_dict", "model")


def _to_safetensors_hint(path: str) -> str:
  return (f"python -c \"import torch, safetensors.torch as s; s.save_file(torch.load('{path}', "
          f"map_location='cpu', weights_only=True), '{os.path.splitext(path)[0]}.safetensors')\"")


def read_state_dict(path: str) -> dict[str, np.ndarray]:
  """The tensors of a state-dict file, key -> numpy array, as stored (dtypes kept).

  Raises:
    ConversionError: an unknown file extension, or a PyTorch pickle where torch is not installed
      (the message says how to get a .safetensors file instead).
    CorruptDataError: the file is missing, truncated or not a state dict of that format.
  """
  ext = os.path.splitext(path)[1].lower()
  if ext not in SAFETENSORS + PICKLES:
    raise ConversionError(f"{path}: a state dict is read from {' or '.join(SAFETENSORS + PICKLES)} "
                          "files")
  if not os.path.isfile(path):
    raise CorruptDataError(f"{path} does not exist (or is not a file)")
  if ext in SAFETENSORS:
    return _read_safetensors(path)
  return _read_pickle(path)


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  try:
    return dict(safetensors.numpy.load_file(path))
  except Exception as err:  # noqa: BLE001 - the library raises several kinds for a bad file
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    raise CorruptDataError(f"{path} is not a readable .safetensors file ({reason}): truncated, "
                           "or not a safetensors file; download it again") from None


def _read_pickle(path: str) -> dict[str, np.ndarray]:
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise ConversionError(
        f"{path} is a PyTorch pickle, which only torch reads, and torch is not installed here: "
        "pip install 'resnet-jax[torch]', or get the .safetensors file instead (timm's hub files "
        f"are; on a machine with torch: {_to_safetensors_hint(path)})") from None
  try:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as err:  # noqa: BLE001 - a bad zip, a bad pickle, a refused object
    reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    raise CorruptDataError(f"{path} is not a readable PyTorch state dict ({reason}): truncated, "
                           "or not a torch.save file of tensors") from None
  state = _state_dict_of(loaded, torch.Tensor)
  if state is None:
    raise CorruptDataError(f"{path} holds a {type(loaded).__name__}, not a state dict (a mapping "
                           "of names to tensors)")
  out = {}
  for key, tensor in state.items():
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16 of its own: widen, exactly
      tensor = tensor.float()
    out[key] = tensor.numpy()
  return out


def _state_dict_of(loaded, tensor_type) -> Mapping | None:
  """`loaded` if it maps names to tensors, or the state dict a checkpoint holds under one of
  _NESTED; None otherwise."""
  if isinstance(loaded, Mapping):
    if loaded and all(isinstance(v, tensor_type) for v in loaded.values()):
      return loaded
    for key in _NESTED:
      if isinstance(loaded.get(key), Mapping):
        return _state_dict_of(loaded[key], tensor_type)
  return None


def write_safetensors(state_dict: Mapping[str, np.ndarray], path: str) -> None:
  """Writes a state dict as `.safetensors` (torch reads it with `safetensors.torch.load_file`),
  through a temporary name, so that a killed write leaves no partial file under `path`."""
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  partial = f"{path}.partial"
  safetensors.numpy.save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()},
                              partial)
  os.replace(partial, path)
