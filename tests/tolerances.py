"""Float comparisons whose tolerance follows from the computation, not from one machine's print.

Two float32 programs that compute the same value in a different order (a conditional against a
mask, one device against two, a scan against its unrolled loop, a hand-built net against the
model) differ by rounding, and XLA's CPU kernels round differently on different processors
(vector width, fused multiply-adds, threads). Summing K terms errs by at most about K eps times
the size of the terms, and an element near zero that is the sum of large terms carries that
absolute error too; so the tolerance is absolute, eps * K * max|desired|, per array. K, `terms`,
is the number of terms of the longest sum behind an element (a BatchNorm's N*H*W positions, a
kernel gradient's N*H*W, a 3x3 conv's 9*C inputs). K eps is the worst case of one sequential
sum; XLA's pairwise and vectorised reductions err far less (a few eps in practice), which leaves
room for the handful of layers a value passes through in the tests' tiny nets.

Sums of non-negative terms (norms, standard deviations, counts of squares) cannot cancel: they
agree to eps * terms relative to themselves (`assert_positive_sums_close`).

Bit-exact comparisons stay where the same program runs on the same inputs (a resumed run, the
same compiled step twice, the same ops eagerly): those do not round differently.
"""
import jax
import numpy as np

EPS32 = float(np.finfo(np.float32).eps)


def atol(desired, terms: int) -> float:
  """eps32 * terms * max|desired|: the rounding of float32 sums of `terms` terms of that size."""
  return EPS32 * terms * float(np.max(np.abs(np.asarray(desired)), initial=0.0))


def close(actual, desired, *, terms: int) -> bool:
  """Whether `actual` equals `desired` to `atol(desired, terms)` (arrays, one pair)."""
  return bool(np.allclose(np.asarray(actual), np.asarray(desired), rtol=0,
                          atol=atol(desired, terms)))


def assert_close(actual, desired, *, terms: int, err_msg: str = "") -> None:
  """Every array of `actual` equals the one of `desired` to `atol(desired_array, terms)`.

  Args:
    actual, desired: arrays or pytrees of the same structure.
    terms: the number of terms of the longest float32 sum behind an element (see the module).
  """
  def check(a, d):
    np.testing.assert_allclose(np.asarray(a), np.asarray(d), rtol=0, atol=atol(d, terms),
                               err_msg=err_msg)
  jax.tree.map(check, actual, desired)


def assert_positive_sums_close(actual, desired, *, terms: int, err_msg: str = "") -> None:
  """Sums of `terms` non-negative terms each (norms, standard deviations) agree to eps * terms
  relative to each sum: with no cancellation, rounding errs relative to the sum itself."""
  np.testing.assert_allclose(np.asarray(actual), np.asarray(desired), rtol=EPS32 * terms, atol=0,
                             err_msg=err_msg)
