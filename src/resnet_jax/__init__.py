"""resnet-jax: residual networks and the experiments that explain why they work."""
from resnet_jax.models import BlockControls, get_model, list_models

__all__ = ["BlockControls", "get_model", "list_models"]
__version__ = "0.1.0"
