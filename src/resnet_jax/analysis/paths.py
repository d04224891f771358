"""Residual nets as ensembles of paths: Veit, Wilber & Belongie 2016, Sec. 4 and Fig. 6.

A net of n residual blocks unrolls into 2^n paths; a path of length k goes through the residual
branch of k blocks and the shortcut of the others, so lengths are Binomial(n, 1/2). A block of k
parallel branches (Abdi & Nahavandi's multi-residual nets) offers k + 1 routes: (k + 1)^n paths,
C(n, j) k^j of them through j branches (generating function (1 + k x)^n), so the number of
branches taken is Binomial(n, k / (k + 1)). Every function here takes that k as `branches`
(default 1, the ordinary residual net).

This module holds the statistics of paths that need no network: how many paths have each length
(`path_counts`, `path_length_distribution`, Fig. 6a; `log2_num_paths`, the ensemble's size), the
shortest range of lengths that holds a given fraction of a gradient magnitude
(`effective_paths`), and the share that any given range holds (`window_share`). The gradients by
path length themselves are computed in `path_gradients`.

Veit et al. name 5-17 of 54 blocks as the lengths that "almost all" of the gradient comes from; no
fraction is stated. The shortest window holding 90% cannot reproduce such a range by construction
(under a curve like theirs it is about 6-15, and 5-17 holds ~97%): check a stated range with
`window_share`, and say which rule chose a window.
"""
from typing import Any

import numpy as np
from scipy import special, stats

from resnet_jax.analysis import _common
from resnet_jax.models import fractalnet
from resnet_jax.models.fractalnet import FractalNet


def path_counts(num_blocks: int, branches: int = 1) -> np.ndarray:
  """The number of paths of each length, C(n, j) k^j (C(n, j) for ordinary residual nets).

  Args:
    num_blocks: n.
    branches: k, the residual branches per block (1 for every net but the multi-residual ones).
  Returns:
    [num_blocks + 1] float64, entry j for length j. Entries beyond float64's range are inf: for
    k = 1 the first come at n = 1030 (C(1030, 515) ~ 2.8e308), so ResNet-1202's 600 blocks are
    finite.
  """
  num_blocks = _common.check_count(num_blocks, "num_blocks", minimum=0)
  branches = _common.check_count(branches, "branches")
  lengths = np.arange(num_blocks + 1)
  if branches == 1:
    return special.comb(num_blocks, lengths)
  # Both factors are >= 1, so the product overflows exactly where the count exceeds float64.
  with np.errstate(over="ignore"):
    return special.comb(num_blocks, lengths) * np.float64(branches) ** lengths


def path_length_distribution(num_blocks: int, branches: int = 1) -> np.ndarray:
  """Veit Fig. 6a: the fraction of the (k+1)^n paths that have each length, C(n, j) k^j /
  (k+1)^n, i.e. the number of branches taken (C(n, j) / 2^n for ordinary residual nets).

  The Binomial(n, k / (k + 1)) pmf, exact to rounding in float64 even where the counts overflow
  (relative error < 1e-12 at n = 54 and n = 1000 for k = 1).

  Returns:
    [num_blocks + 1] float64, entry j for length j; sums to 1.
  """
  num_blocks = _common.check_count(num_blocks, "num_blocks", minimum=0)
  branches = _common.check_count(branches, "branches")
  return stats.binom.pmf(np.arange(num_blocks + 1), num_blocks, branches / (branches + 1))


def log2_num_paths(model: Any) -> float:
  """log2 of the number of paths through a model's blocks: n log2(k + 1) for n blocks of k
  branches (n for a residual net of n blocks; 0 for a plain net, which has one path).

  The size of the implicit ensemble (Veit et al. 2016; Abdi & Nahavandi 2016 compare nets by
  it), finite where the count itself overflows float64. A FractalNet of C columns and B blocks
  has f(C)^B paths, f(1) = 1, f(C) = f(C-1)^2 + 1 (`models.fractalnet.num_paths`).
  """
  if isinstance(model, FractalNet):  # columns joined by means: the expansion rule's count
    return float(np.log2(fractalnet.num_paths(model.num_columns, model.num_blocks)))
  if not model.is_residual:
    return 0.0
  # A DenseNet counts here too: each dense layer's channels are kept or not on the way to the
  # output, 2^n paths for n layers (`models.densenet.num_paths`).
  return float(model.num_blocks * np.log2(_common.branches_per_block(model) + 1))


def _check_total(total_by_length: Any) -> np.ndarray:
  """[L] float64: a per-length magnitude, if 1-D, non-empty, finite, >= 0 and not all zero."""
  total = np.asarray(total_by_length, np.float64)
  if total.ndim != 1 or total.size == 0:
    raise ValueError(f"total_by_length must be a non-empty 1-D array, got shape {total.shape}")
  if not np.all(np.isfinite(total)) or np.any(total < 0):
    raise ValueError("total_by_length must be finite and non-negative")
  if total.sum() <= 0:
    raise ValueError("total_by_length sums to zero: no range holds a fraction of it")
  return total


def effective_paths(total_by_length: Any, fraction: float = 0.9) -> tuple[int, int]:
  """Veit's "effective paths": the shortest contiguous range of lengths holding `fraction` of the
  total gradient (e.g. T(k) of `sampled_path_gradients`, or ||G(k)|| of the exact method).

  Args:
    total_by_length: [L] non-negative magnitudes, entry k for length k.
    fraction: in (0, 1].
  Returns:
    (k_lo, k_hi), inclusive. Among ranges of the shortest width, the one holding the most
    magnitude, then the lowest k_lo.
  Raises:
    ValueError: not 1-D, empty, negative or non-finite entries, zero sum, fraction outside (0, 1].
  """
  total = _check_total(total_by_length)
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"fraction must lie in (0, 1], got {fraction}")
  mass = total.sum()
  cum = np.concatenate([[0.0], np.cumsum(total)])
  target = fraction * mass * (1.0 - 1e-12)  # rounding must not make fraction = 1 unreachable
  for width in range(1, total.size + 1):
    held = cum[width:] - cum[:-width]  # held[lo] = sum of total[lo : lo + width]
    if held.max() >= target:
      lo = int(np.argmax(held))
      return lo, lo + width - 1
  raise AssertionError("unreachable: the full range holds the whole total")


def window_share(total_by_length: Any, window: tuple[int, int]) -> float:
  """The share of a per-length total that lies in the window of lengths lo..hi (inclusive).

  Checks a stated range directly, e.g. Veit's effective paths of a 54-block net:
  `window_share(sampled.total, (5, 17))`. Lengths past the last entry have no paths and hold
  nothing, so a window may reach beyond n.

  Args:
    total_by_length: [L] non-negative magnitudes, entry k for length k (as in `effective_paths`).
    window: (lo, hi), integers with 0 <= lo <= hi.
  Returns:
    sum(total[lo:hi + 1]) / sum(total), in [0, 1].
  Raises:
    ValueError: a bad total (as in `effective_paths`) or window.
  """
  total = _check_total(total_by_length)
  bounds = tuple(window) if isinstance(window, (tuple, list)) else ()
  if len(bounds) != 2 or not all(isinstance(b, (int, np.integer)) for b in bounds) or \
      not 0 <= bounds[0] <= bounds[1]:
    raise ValueError(f"window must be two integers (lo, hi) with 0 <= lo <= hi, got {window!r}")
  lo, hi = (int(b) for b in bounds)
  return float(total[lo:hi + 1].sum() / total.sum())
