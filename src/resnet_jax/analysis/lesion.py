"""Lesion studies of Veit, Wilber & Belongie 2016: deleting blocks at test time (reordering
them: `reorder.py`).

Deleting a block means y_i = y_{i-1} + f_i(y_{i-1}) -> y_i = y_{i-1}: the residual branch goes,
the shortcut (identity, zero-pad or projection) and a v1 block's post-addition ReLU stay, as in
the authors' `delete_layer` (reference §2.10). It is `BlockControls.gate` = 0; in a plain twin
gate 0 replaces the whole block by the parameter-free option-A identity (Veit's VGG comparison).
In a multi-residual block (k branches) gate 0 deletes all k branches; `lesion_branches` deletes
one branch (`BlockControls.branch_gate`) and keeps the other k - 1.

Errors are fractions of misclassified images in [0, 1] (top-1, argmax of the logits), with BN in
eval mode. Each analysis builds all its mask rows or permutations up front and evaluates them with
one compiled, vmapped function (rows x images chunked to a fixed shape, so it compiles once).
"""
import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax.analysis import _common
from resnet_jax.models import BlockControls


def _gated_logits(model, variables, images, gate, branch_gate=None):
  """Logits with per-block gates [num_blocks] and, optionally, per-branch gates [k, num_blocks]."""
  ones = jnp.ones_like(gate)
  controls = BlockControls(gate=gate, branch_grad=ones, skip_grad=ones, branch_gate=branch_gate)
  return model.apply(variables, images, train=False, controls=controls)


def _lesion_logits_impl(model, variables, images, gates):
  """[R, N, classes] logits, one row per gate row [R, num_blocks]."""
  return jax.vmap(lambda g: _gated_logits(model, variables, images, g))(gates)


def _wrong(logits, labels, weights):
  return jnp.sum(weights * (jnp.argmax(logits, axis=-1) != labels))


def _lesion_wrong_impl(model, variables, images, labels, weights, gates):
  """[R] weighted counts of misclassified images, one per gate row."""
  return jax.vmap(
      lambda g: _wrong(_gated_logits(model, variables, images, g), labels, weights))(gates)


def _branch_wrong_impl(model, variables, images, labels, weights, branch_gates):
  """[R] weighted counts of misclassified images, one per branch-gate row [R, num_blocks, k]."""
  def one(g):
    return _wrong(_gated_logits(model, variables, images, jnp.ones(g.shape[0], g.dtype), g.T),
                  labels, weights)
  return jax.vmap(one)(branch_gates)


# The jitted cores: the model is static, everything else traced, so new gates or orders reuse the
# compile. Module attributes, looked up at call time, so that tests can swap in trace counters.
_lesion_logits = jax.jit(_lesion_logits_impl, static_argnums=0)
_lesion_wrong = jax.jit(_lesion_wrong_impl, static_argnums=0)
_branch_wrong = jax.jit(_branch_wrong_impl, static_argnums=0)


def _check_gates(model, gates) -> jax.Array:
  _common.check_block_network(model)
  gates = np.asarray(gates, np.float32)
  if gates.ndim != 2 or gates.shape[0] < 1 or gates.shape[1] != model.num_blocks:
    raise ValueError(f"gates must be [num_settings >= 1, num_blocks = {model.num_blocks}], got "
                     f"shape {gates.shape}")
  if not np.all(np.isfinite(gates)):
    raise ValueError("gates must be finite")
  return jnp.asarray(gates)


def lesion_logits(model: Any, variables: Mapping[str, Any], images: Any, gates: Any, *,
                  max_batch: int = _common.DEFAULT_MAX_BATCH) -> np.ndarray:
  """Logits of the network under each row of gates: [num_settings, N, num_classes] (float32).

  Same arguments as `lesion_errors` (no labels).
  """
  images = _common.check_images(images)
  gates = _check_gates(model, gates)
  max_batch = _common.check_count(max_batch, "max_batch")
  variables = _common.eval_variables(variables)
  labels = jnp.zeros((images.shape[0],), jnp.int32)

  def fn(x, y, w, g):
    del y, w  # no labels: padded images are cut off instead
    return _lesion_logits(model, variables, x, g)
  return _common.run_chunked(fn, gates, jnp.ones_like(gates[0]), images, labels, max_batch, False)


def lesion_errors(model: Any, variables: Mapping[str, Any], images: Any, labels: Any,
                  gates: Any, *, max_batch: int = _common.DEFAULT_MAX_BATCH) -> np.ndarray:
  """Test error for each setting of the per-block gates, all in one compiled computation.

  Args:
    model: a model of `resnet_jax.models` (residual or plain).
    variables: {"params", "batch_stats"}; BN runs in eval mode.
    images: [N, H, W, C] float images.
    labels: [N] integer labels.
    gates: [num_settings, num_blocks]; row s multiplies block b's residual branch by
      gates[s, b] (1 keeps it, 0 deletes it, keeping the shortcut).
    max_batch: at most this many rows x images go through the network per call; rows are vmapped,
      rows and images chunked to a fixed shape (padding discarded), so it compiles once.
  Returns:
    [num_settings] float64 error fractions in [0, 1] (misclassified / N, top-1).
  Raises:
    ValueError: gates not [num_settings >= 1, num_blocks] and finite; bad images or labels.
  """
  variables, images, labels, max_batch = _common.check_batch(model, variables, images, labels,
                                                             max_batch)
  gates = _check_gates(model, gates)
  fn = functools.partial(_lesion_wrong, model, variables)
  wrong = _common.run_chunked(fn, gates, jnp.ones_like(gates[0]), images, labels, max_batch, True)
  return wrong.astype(np.float64) / images.shape[0]


def lesion_single(model: Any, variables: Mapping[str, Any], images: Any, labels: Any, *,
                  max_batch: int = _common.DEFAULT_MAX_BATCH) -> np.ndarray:
  """Veit et al. Fig. 3: the error after deleting each block in turn.

  Returns:
    [num_blocks] error fractions; entry b deletes block b (network order, `model.block_names()`).
  """
  gates = 1.0 - np.eye(model.num_blocks, dtype=np.float32)
  return lesion_errors(model, variables, images, labels, gates, max_batch=max_batch)


def lesion_branch_errors(model: Any, variables: Mapping[str, Any], images: Any, labels: Any,
                         branch_gates: Any, *,
                         max_batch: int = _common.DEFAULT_MAX_BATCH) -> np.ndarray:
  """Test error for each setting of the per-branch gates, all in one compiled computation.

  Args:
    model: a residual model of `resnet_jax.models` (k = `model.branches_per_block` branches per
      block; k = 1 for every family but the multi-residual nets).
    branch_gates: [num_settings, num_blocks, k]; row s multiplies branch j of block b by
      branch_gates[s, b, j] (0 deletes that branch, keeping the block's other branches and its
      shortcut).
    (variables, images, labels, max_batch as in `lesion_errors`.)
  Returns:
    [num_settings] float64 error fractions in [0, 1].
  Raises:
    ValueError: a plain net; gates not [num_settings >= 1, num_blocks, k] and finite; bad images
      or labels.
  """
  _common.check_residual(model)
  variables, images, labels, max_batch = _common.check_batch(model, variables, images, labels,
                                                             max_batch)
  shape = (model.num_blocks, _common.branches_per_block(model))
  gates = np.asarray(branch_gates, np.float32)
  if gates.ndim != 3 or gates.shape[0] < 1 or gates.shape[1:] != shape:
    raise ValueError(f"branch_gates must be [num_settings >= 1, num_blocks = {shape[0]}, "
                     f"branches = {shape[1]}], got shape {gates.shape}")
  if not np.all(np.isfinite(gates)):
    raise ValueError("branch_gates must be finite")
  gates = jnp.asarray(gates)
  fn = functools.partial(_branch_wrong, model, variables)
  wrong = _common.run_chunked(fn, gates, jnp.ones_like(gates[0]), images, labels, max_batch, True)
  return wrong.astype(np.float64) / images.shape[0]


def lesion_branches(model: Any, variables: Mapping[str, Any], images: Any, labels: Any, *,
                    max_batch: int = _common.DEFAULT_MAX_BATCH) -> np.ndarray:
  """The error after deleting each single branch in turn (the multi-residual lesion).

  Returns:
    [num_blocks, k] error fractions; entry (b, j) deletes branch j of block b and keeps the
    block's other branches. With k = 1 it equals `lesion_single` (as a [num_blocks, 1] column).
  """
  _common.check_residual(model)
  n, k = model.num_blocks, _common.branches_per_block(model)
  gates = 1.0 - np.eye(n * k, dtype=np.float32).reshape(n * k, n, k)
  return lesion_branch_errors(model, variables, images, labels, gates,
                              max_batch=max_batch).reshape(n, k)


# An intact net whose error is at least this share of the chance error counts as at chance.
AT_CHANCE = 0.9


def lesion_damage(single_errors: Any, intact_error: float, num_classes: int) -> float:
  """How much deleting one block hurts: the share of the way from the intact error to chance.

  mean_b (e_b - e_0) / (c - e_0), with e_b the error after deleting block b (`lesion_single`), e_0
  the intact net's error and c = 1 - 1 / num_classes the error of guessing. 0: deleting a block
  changes nothing on average; 1: it sends the net to chance. A slope of error vs deleted blocks,
  or the plain increase e_b - e_0, ranks a net already at chance as the most robust (nothing can
  make it worse); such a net has no damage to measure, and gets nan.

  Args:
    single_errors: [num_blocks] error fractions of `lesion_single`.
    intact_error: the error of the intact net, in [0, 1].
    num_classes: classes of the task (>= 2).
  Returns:
    The mean damage (may exceed 1, or fall below 0 where deleting a block helps), or nan when
    e_0 >= AT_CHANCE * c.
  Raises:
    ValueError: empty or non-finite errors, num_classes < 2.
  """
  errors = np.asarray(single_errors, np.float64).reshape(-1)
  num_classes = _common.check_count(num_classes, "num_classes", minimum=2)
  if errors.size == 0 or not np.all(np.isfinite(errors)) or not np.isfinite(intact_error):
    raise ValueError("single_errors must be a non-empty list of finite errors, and "
                     "intact_error finite")
  chance = 1.0 - 1.0 / num_classes
  if intact_error >= AT_CHANCE * chance:
    return float("nan")
  return float(np.mean(errors - intact_error) / (chance - intact_error))


@dataclasses.dataclass(frozen=True)
class LesionK:
  """Error vs the number k of randomly deleted blocks (Veit et al. Fig. 5a).

  Attributes:
    ks: [K] numbers of deleted blocks.
    errors: [K, samples] error of each random k-subset.
    mean: [K] mean error over the subsets.
    std: [K] std (ddof = 0) over the subsets.
  """
  ks: np.ndarray
  errors: np.ndarray
  mean: np.ndarray
  std: np.ndarray


def lesion_k(model: Any, variables: Mapping[str, Any], images: Any, labels: Any,
             ks: Sequence[int], samples: int, key: jax.Array, *,
             max_batch: int = _common.DEFAULT_MAX_BATCH) -> LesionK:
  """Deletes `samples` random k-subsets of blocks for each k in ks (uniform over subsets).

  Args:
    ks: numbers of blocks to delete, each in [0, num_blocks].
    samples: random subsets per k.
    key: JAX PRNG key for the subsets.
    (model, variables, images, labels, max_batch as in `lesion_errors`; all len(ks) * samples
    masks go through one `lesion_errors` call.)
  Returns:
    LesionK with errors [len(ks), samples] and their mean and std per k.
  Raises:
    ValueError: a k outside [0, num_blocks], or samples < 1.
  """
  n = model.num_blocks
  samples = _common.check_count(samples, "samples")
  ks = _common.check_counts(ks, "ks", n)
  gates = (~_common.random_subsets(key, ks, samples, n)).astype(np.float32)  # 0: deleted
  errors = lesion_errors(model, variables, images, labels, gates.reshape(-1, n),
                         max_batch=max_batch).reshape(ks.size, samples)
  return LesionK(ks=ks, errors=errors, mean=errors.mean(axis=1), std=errors.std(axis=1))
