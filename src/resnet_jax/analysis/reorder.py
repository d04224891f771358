"""Reordering blocks at test time: Veit, Wilber & Belongie 2016, Fig. 5b.

Blocks 2..n of a stage have the same input and output shape, so any order of them is a network;
the error grows smoothly as the order moves away from the trained one (Kendall's tau). Every
order runs through one compiled function: `surgery.permute_stage_blocks` gathers the stacked
parameters of a stage with traced permutations, vmapped over the orders.
"""
import dataclasses
import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from resnet_jax.analysis import _common
from resnet_jax.analysis.lesion import _wrong, lesion_errors
from resnet_jax.models import surgery


def _reorder_wrong_impl(model, variables, images, labels, weights, perms):
  """[R] misclassified counts; perms maps stage number -> [R, blocks in stage - 1] orders."""

  def one(stage_perms):
    v = variables
    for stage, perm in stage_perms.items():
      v = surgery.permute_stage_blocks(v, stage, perm)
    return _wrong(model.apply(v, images, train=False), labels, weights)
  return jax.vmap(one)(perms)


# The jitted core (model static, orders traced); a module attribute, looked up at call time, so
# that tests can swap in a trace counter.
_reorder_wrong = jax.jit(_reorder_wrong_impl, static_argnums=0)


def kendall_tau(order: np.ndarray) -> np.ndarray:
  """Kendall's tau between each permutation [..., n] and the identity (no ties): in [-1, 1]."""
  order = np.asarray(order)
  n = order.shape[-1]
  if n < 2:
    return np.ones(order.shape[:-1])
  i, j = np.triu_indices(n, k=1)
  concordant = np.sum(order[..., j] > order[..., i], axis=-1)
  pairs = n * (n - 1) // 2
  return (2.0 * concordant - pairs) / pairs


@dataclasses.dataclass(frozen=True)
class LesionReorder:
  """Error vs random reorderings of interchangeable blocks (Veit et al. Fig. 5b).

  Attributes:
    swaps: [J] numbers of random pair swaps.
    orders: [J, samples, num_blocks] block run at each position (network order).
    tau: [J, samples] Kendall's tau of each order vs the identity, over all blocks.
    errors: [J, samples] error of each reordered network.
  """
  swaps: np.ndarray
  orders: np.ndarray
  tau: np.ndarray
  errors: np.ndarray


def _stage_spans(stage_sizes: Sequence[int]) -> list[tuple[int, int]]:
  """(network position of the stage's first block, blocks in the stage) for each stage."""
  starts = np.cumsum((0,) + tuple(stage_sizes[:-1]))
  return list(zip(starts.tolist(), stage_sizes))


def _swap_pairs(stage_sizes: Sequence[int]) -> np.ndarray:
  """[P, 2] network positions of the interchangeable pairs: blocks 2..n of one stage."""
  return np.array([(s + a, s + b) for s, c in _stage_spans(stage_sizes)
                   for a in range(1, c) for b in range(a + 1, c)], np.int64).reshape(-1, 2)


def _random_orders(key: jax.Array, pairs: np.ndarray, num_blocks: int, swaps: np.ndarray,
                   samples: int) -> np.ndarray:
  """Random walks on block orders: each step swaps one uniformly drawn pair.

  Args:
    key: JAX PRNG key for the swaps.
    pairs: [P, 2] positions that may swap; P >= 1 if any swaps[j] > 0.
    num_blocks: blocks in the network.
    swaps: [J] numbers of swaps, each >= 0.
    samples: orders per entry of swaps.
  Returns:
    [J, samples, num_blocks] int64: the block run at each network position.
  """
  orders = np.broadcast_to(np.arange(num_blocks), (swaps.size, samples, num_blocks)).copy()
  if swaps.max() > 0:
    picks = np.asarray(jax.random.randint(key, (swaps.size, samples, swaps.max()), 0, len(pairs)))
    for j, count in enumerate(swaps):
      for s in range(samples):
        for a, b in pairs[picks[j, s, :count]]:
          orders[j, s, [a, b]] = orders[j, s, [b, a]]
  return orders


def _stage_perms(orders: np.ndarray, stage_sizes: Sequence[int]) -> dict[int, jax.Array]:
  """The orders as permutations of each stage's scanned blocks (blocks 2..n).

  Args:
    orders: [R, num_blocks] block run at each position; blocks stay in their stage and the first
      block of each stage stays first.
    stage_sizes: blocks per stage.
  Returns:
    {stage number from 1: [R, blocks in stage - 1] int32} for stages of >= 2 blocks; positions
    start+1.. of a stage hold its old blocks start+1+perm.
  """
  return {s + 1: jnp.asarray(orders[:, st + 1:st + c] - st - 1, jnp.int32)
          for s, (st, c) in enumerate(_stage_spans(stage_sizes)) if c > 1}


def _reorder_errors(model, variables, images, labels, perms, max_batch) -> np.ndarray:
  """[R] error fractions of the network with its stages permuted by each row of perms."""
  variables, images, labels, max_batch = _common.check_batch(model, variables, images, labels,
                                                             max_batch)
  identity = jax.tree.map(lambda p: jnp.arange(p.shape[1], dtype=jnp.int32), perms)
  fn = functools.partial(_reorder_wrong, model, variables)
  wrong = _common.run_chunked(fn, perms, identity, images, labels, max_batch, True)
  return wrong.astype(np.float64) / images.shape[0]


def lesion_reorder(model: Any, variables: Mapping[str, Any], images: Any, labels: Any,
                   swaps: Sequence[int], samples: int, key: jax.Array, *,
                   max_batch: int = _common.DEFAULT_MAX_BATCH) -> LesionReorder:
  """Swaps `swaps[j]` random pairs of interchangeable blocks, `samples` times for each j.

  Interchangeable ("compatible") blocks are blocks 2..n of one stage (same input and output
  shape); each swap picks one such pair uniformly among all of them, so later swaps may undo
  earlier ones, as in a random walk on orders. The first block of each stage stays in place; tau
  is computed over the whole network order. All orders run through one compiled function
  (`surgery.permute_stage_blocks` with traced permutations, vmapped).

  Args:
    swaps: numbers of random pair swaps, each >= 0.
    samples: random orders per entry of swaps.
    key: JAX PRNG key for the swaps.
    (model, variables, images, labels, max_batch as in `lesion_errors`.)
  Returns:
    LesionReorder with orders [len(swaps), samples, num_blocks], their Kendall tau and errors.
  Raises:
    ValueError: a model whose blocks are not `reorderable` (a PyramidNet's units widen within a
      stage, a DenseNet's layers each read every earlier layer's channels), negative swaps,
      samples < 1, or swaps > 0 on a net without two interchangeable blocks in any stage.
  """
  _common.check_block_network(model)
  if not model.reorderable:
    raise ValueError(f"reordering needs interchangeable blocks (blocks 2..n of a stage of one "
                     f"shape); no two blocks of this {type(model).__name__} can swap (a "
                     "PyramidNet's units widen within each stage, a DenseNet's layers each read "
                     "every earlier layer's channels); lesion_single and lesion_k apply")
  samples = _common.check_count(samples, "samples")
  swaps = _common.check_counts(swaps, "swaps")
  pairs = _swap_pairs(model.stage_sizes)
  if swaps.max() > 0 and len(pairs) == 0:
    raise ValueError("this model has no two interchangeable blocks to swap (stages of <= 2 "
                     "blocks)")
  orders = _random_orders(key, pairs, model.num_blocks, swaps, samples)
  flat = orders.reshape(-1, model.num_blocks)
  perms = _stage_perms(flat, model.stage_sizes)
  if perms:
    errors = _reorder_errors(model, variables, images, labels, perms, max_batch)
  else:  # one block per stage: nothing can move, every order is the identity
    errors = lesion_errors(model, variables, images, labels,
                           np.ones_like(flat, np.float32), max_batch=max_batch)
  errors = errors.reshape(swaps.size, samples)
  return LesionReorder(swaps=swaps, orders=orders, tau=kendall_tau(orders), errors=errors)
