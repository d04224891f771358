"""resnet-jax: residual networks and the experiments that explain why they work."""
import importlib

__all__ = ["BlockControls", "get_model", "list_models"]
__version__ = "0.1.0"


def __getattr__(name: str):
  # Loaded on first use, so that a process importing only the data layer (a decoding worker of
  # the input stream) does not pay for JAX and Flax.
  if name in __all__:
    return getattr(importlib.import_module("resnet_jax.models"), name)
  raise AttributeError(f"module 'resnet_jax' has no attribute {name!r}")
