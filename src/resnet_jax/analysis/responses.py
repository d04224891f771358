"""Layer response strength: He et al. 2015, Fig. 7.

"The responses are the outputs of each 3x3 layer, after BN and before other nonlinearity
(ReLU/addition)" (He et al. 2015, Sec. 4.2; reference §2.2). The models sow exactly these tensors
(`models.blocks`); `surgery.responses_in_order` lists them in network order: the stem, then each
block's response1, response2 (in pre-activation units the last response is the conv output, as no
BN follows it).

The paper leaves open the reduction and the BN mode. Here BN runs in eval mode (running
statistics) and, by default, a layer's std is one population std (ddof = 0) over all N*H*W*C
elements; `per_channel=True` gives instead the mean over channels of the per-channel std over
N*H*W. The data split is the caller's choice (He et al. plot CIFAR-10 test images, presumably).
"""
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax.analysis import _common
from resnet_jax.models import surgery


def _response_moments_impl(model, variables, images, weights):
  """Per-layer, per-channel (count, mean, M2) of the responses of one chunk.

  Returns:
    A list over layers (network order) of ([] count, [C] mean, [C] sum of squared deviations),
    counting only examples of weight 1.
  """
  _, state = model.apply(variables, images, train=False, mutable=["intermediates"])
  out = []
  for _, y in surgery.responses_in_order(state["intermediates"]):
    w = weights.reshape((-1, 1, 1, 1)).astype(y.dtype)
    count = jnp.sum(w) * y.shape[1] * y.shape[2]
    mean = jnp.sum(w * y, axis=(0, 1, 2), keepdims=True) / count
    # Centred per chunk (then merged with Chan's formula) so that large means do not cancel.
    m2 = jnp.sum(w * jnp.square(y - mean), axis=(0, 1, 2))
    out.append((count, mean.reshape(-1), m2))
  return out


_response_moments = jax.jit(_response_moments_impl, static_argnums=0)  # the model is static


def response_layer_names(model: Any, variables: Mapping[str, Any],
                         image_shape: tuple[int, ...]) -> list[str]:
  """Names of the response layers in network order, without running the network.

  Args:
    model: a model of `resnet_jax.models`.
    variables: its variables.
    image_shape: [H, W, C] of one image.
  Returns:
    ["stem", "stage1_block1_response1", ...], as `surgery.responses_in_order` names them.
  """
  _common.check_block_network(model)
  x = jax.ShapeDtypeStruct((1,) + tuple(image_shape), jnp.float32)
  _, state = jax.eval_shape(
      lambda v, x: model.apply(v, x, train=False, mutable=["intermediates"]),
      _common.eval_variables(variables), x)
  # Zero-stride views stand in for the arrays: responses_in_order only indexes them.
  fake = jax.tree.map(lambda s: np.broadcast_to(np.zeros((), s.dtype), s.shape),
                      state["intermediates"])
  return [name for name, _ in surgery.responses_in_order(fake)]


def _merge(a, b):
  """Chan et al.'s parallel update of per-channel (count, mean, M2), float64."""
  n_a, mean_a, m2_a = a
  n_b, mean_b, m2_b = b
  n = n_a + n_b
  delta = mean_b - mean_a
  return n, mean_a + delta * n_b / n, m2_a + m2_b + np.square(delta) * n_a * n_b / n


def response_std(model: Any, variables: Mapping[str, Any], images: Any, *,
                 per_channel: bool = False, batch_size: int = 256) -> dict[str, float]:
  """Std of every 3x3 layer's response (after BN, before ReLU/addition), He et al. 2015 Fig. 7.

  Works for ResNets, their plain twins and pre-activation nets alike.

  Args:
    model: a model of `resnet_jax.models`.
    variables: {"params", "batch_stats"}; BN uses the running statistics (eval mode).
    images: [N, H, W, C] float images (normalised as in training).
    per_channel: False: one population std over all N*H*W*C elements of a layer. True: the mean
      over channels of each channel's population std over N*H*W.
    batch_size: images per forward pass; the statistics are merged exactly across chunks (one
      compile: the last chunk is padded and its padding weighted 0).
  Returns:
    {layer name: std} in network order (dicts keep insertion order): "stem", then
    "stage{s}_block{i}_response{j}".
  Raises:
    ValueError: images not [N, H, W, C] floats, or batch_size < 1.
  """
  _common.check_block_network(model)
  images = _common.check_images(images)
  batch_size = _common.check_count(batch_size, "batch_size")
  variables = _common.eval_variables(variables)
  chunk = min(batch_size, images.shape[0])
  dummy_labels = jnp.zeros((images.shape[0],), jnp.int32)
  stats = None
  for x, _, w in _common.image_chunks(images, dummy_labels, chunk):
    moments = jax.device_get(_response_moments(model, variables, x, w))
    moments = [tuple(np.asarray(a, np.float64) for a in layer) for layer in moments]
    stats = moments if stats is None else [_merge(s, m) for s, m in zip(stats, moments)]
  names = response_layer_names(model, variables, images.shape[1:])
  out = {}
  for name, (count, mean, m2) in zip(names, stats, strict=True):
    if per_channel:
      out[name] = float(np.mean(np.sqrt(m2 / count)))
    else:
      # Pool the channels: total M2 = sum of within-channel M2 + between-channel deviations.
      total_mean = np.mean(mean)
      total_m2 = np.sum(m2) + count * np.sum(np.square(mean - total_mean))
      out[name] = float(np.sqrt(total_m2 / (count * mean.size)))
  return out


def sorted_response_std(stds: Mapping[str, float]) -> list[tuple[str, float]]:
  """Fig. 7 (bottom): the (layer name, std) pairs ranked in descending order of std."""
  return sorted(stds.items(), key=lambda item: item[1], reverse=True)
