"""FractalNet's column analysis (Larsson et al. 2017, Table 3 and §4.3): the test error of each
column alone and of the net as columns are removed; the ensemble view of FractalNet, next to
Veit's lesions of ResNets.

A column subset is a 0/1 row over the columns (0 = shallowest, one conv per block; C - 1 the
deepest, 2^(C-1)); every join then averages only the inputs of the kept columns (see
`models.fractalnet`). Column c alone is the plain chain of its 2^c convs per block: what global
drop-path trains. Errors are fractions in [0, 1] with BN in eval mode; every row runs through one
compiled, vmapped function (rows x images chunked to a fixed shape).
"""
import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax.analysis import _common
from resnet_jax.models.fractalnet import FractalNet


def _wrong_impl(model, variables, images, labels, weights, masks):
  """[R] weighted counts of misclassified images, one per column mask row [R, C]."""
  def wrong(mask):
    logits = model.apply(variables, images, train=False, columns=mask)
    return jnp.sum(weights * (jnp.argmax(logits, axis=-1) != labels))
  return jax.vmap(wrong)(masks)


# The model is static, masks traced: one compile per model and chunk shape.
_column_wrong = jax.jit(_wrong_impl, static_argnums=0)


def check_fractal(model: Any) -> None:
  if not isinstance(model, FractalNet):
    raise ValueError(f"the column analysis needs a FractalNet (fractalnet_c{{C}}), got "
                     f"{type(model).__name__}")


def column_errors(model: FractalNet, variables: Mapping[str, Any], images: Any, labels: Any,
                  masks: Any, *, max_batch: int = _common.DEFAULT_MAX_BATCH) -> np.ndarray:
  """Test error of the net restricted to each row of `masks`.

  Args:
    model: a FractalNet.
    variables: {"params", "batch_stats"}.
    images, labels: [N, H, W, C] float and [N] int.
    masks: [R, num_columns] 0/1, each row with at least one column kept.
    max_batch: budget of rows x images per compiled call.
  Returns:
    [R] float64 errors in [0, 1].
  """
  check_fractal(model)
  variables, images, labels, max_batch = _common.check_batch(model, variables, images, labels,
                                                             max_batch)
  masks = np.asarray(masks, np.float32)
  if masks.ndim != 2 or masks.shape[0] < 1 or masks.shape[1] != model.num_columns or \
      not np.all((masks == 0) | (masks == 1)) or not np.all(masks.sum(axis=1) >= 1):
    raise ValueError(f"masks must be [R >= 1, num_columns = {model.num_columns}] of 0/1 with at "
                     f"least one column kept per row, got {masks.tolist()}")
  masks = jnp.asarray(masks)

  def fn(x, y, w, m):
    return _column_wrong(model, variables, x, y, w, m)
  wrong = _common.run_chunked(fn, masks, masks[0], images, labels, max_batch, True)
  return np.asarray(wrong, np.float64) / images.shape[0]


@dataclasses.dataclass(frozen=True)
class ColumnAnalysis:
  """Errors in [0, 1] of a FractalNet's column subsets.

  Attributes:
    full: every column (the trained net at eval).
    alone: [C] column c alone (c = 0 shallowest).
    deepest_removed: [C] the net without its k deepest columns, k = 0..C-1 (k = C-1: the
      shallowest column alone).
    shallowest_removed: [C] the net without its k shallowest columns, k = 0..C-1 (k = C-1: the
      deepest column alone, the paper's "deepest column" row).
  """
  full: float
  alone: list[float]
  deepest_removed: list[float]
  shallowest_removed: list[float]


def column_masks(num_columns: int) -> dict[str, np.ndarray]:
  """The mask rows of `column_analysis`: "alone" [C, C], "deepest_removed" and
  "shallowest_removed" [C, C] (row k removes k columns)."""
  keep = np.arange(num_columns)
  k = np.arange(num_columns)[:, None]
  return {"alone": np.eye(num_columns, dtype=np.float32),
          "deepest_removed": (keep[None, :] < num_columns - k).astype(np.float32),
          "shallowest_removed": (keep[None, :] >= k).astype(np.float32)}


def column_analysis(model: FractalNet, variables: Mapping[str, Any], images: Any, labels: Any, *,
                    max_batch: int = _common.DEFAULT_MAX_BATCH) -> ColumnAnalysis:
  """Each column alone, and the net as columns are removed deepest-first and shallowest-first.

  Args as `column_errors`. All 3C rows run in one compiled pass.
  """
  check_fractal(model)
  rows = column_masks(model.num_columns)
  errors = column_errors(model, variables, images, labels, np.concatenate(list(rows.values())),
                         max_batch=max_batch)
  c = model.num_columns
  alone, deepest, shallowest = (errors[i * c:(i + 1) * c].tolist() for i in range(3))
  return ColumnAnalysis(full=deepest[0], alone=alone, deepest_removed=deepest,
                        shallowest_removed=shallowest)
