"""Reading and rearranging a model's per-block variables, without knowing the model's class.

The layout these functions rely on is owned by `stages.Stage`: stage `s` holds its first block
under `stage{s}/block1` and the rest stacked under `stage{s}/blocks/block` (leading axis = block
index - 2). An `stages.UnrolledStage` holds every block under `stage{s}/block{i}`; its blocks
differ in shape, so only the scanned ones can be permuted.
"""
import itertools
import re
from typing import Any, Mapping

import jax
import jax.numpy as jnp

_STAGE = re.compile(r"stage(\d+)")
_BLOCK = re.compile(r"block(\d+)")


def responses_in_order(intermediates: Mapping[str, Any]) -> list[tuple[str, jax.Array]]:
  """Flattens sown responses into (layer name, [N, H, W, C] array) pairs in network order.

  Args:
    intermediates: the "intermediates" collection of `model.apply(..., mutable=["intermediates"])`.
  Returns:
    [("stem", ...), ("stage1_block1_response1", ...), ...]: the stem (where it has a BN), then
    every block in order, each block's responses in branch order.
  """
  out = []
  if "response" in intermediates:
    out.append(("stem", intermediates["response"][0]))
  stages = sorted((k for k in intermediates if _STAGE.fullmatch(k)), key=lambda k: int(k[5:]))
  for stage in stages:
    tree = intermediates[stage]
    # Unrolled blocks (block1 of a scanned stage; every layer of a dense block), in order.
    unrolled = sorted((k for k in tree if _BLOCK.fullmatch(k)), key=lambda k: int(k[5:]))
    for block in unrolled:
      for r in sorted(tree[block]):
        out.append((f"{stage}_{block}_{r}", tree[block][r][0]))
    if "blocks" in tree:
      rest = tree["blocks"]["block"]
      count = next(iter(rest.values()))[0].shape[0]
      for i in range(count):
        for r in sorted(rest):
          out.append((f"{stage}_block{i + len(unrolled) + 1}_{r}", rest[r][0][i]))
  return out


def permute_stage_blocks(variables: Mapping[str, Any], stage: int, perm: jax.Array) -> dict:
  """Reorders the interchangeable (scanned) blocks of one stage.

  Args:
    variables: model variables ({"params", "batch_stats", ...}).
    stage: stage number, from 1.
    perm: [num_blocks_in_stage - 1] int permutation of blocks 2..n of that stage (index 0 is
      block 2). A traced array: one compiled function serves every permutation.
  Returns:
    New variables in which position i of the stage's scanned blocks runs old block perm[i].
  """
  key = f"stage{stage}"
  if "blocks" not in variables["params"].get(key, {}):
    raise ValueError(f"stage {stage} of this model has no interchangeable (scanned) blocks to "
                     "permute; models whose `reorderable` is False (DenseNets) cannot be reordered")
  new = {}
  for collection, tree in variables.items():
    tree = dict(tree)
    if key in tree and "blocks" in tree[key]:
      stage_tree = dict(tree[key])
      stage_tree["blocks"] = jax.tree.map(lambda a: jnp.take(a, perm, axis=0), stage_tree["blocks"])
      tree[key] = stage_tree
    new[collection] = tree
  return new


def downsampling_blocks(model) -> tuple[int, ...]:
  """Indices (from 0, in `model.block_names()` order) of the blocks that halve the resolution.

  Every network of this package strides by 2 at the entry of each stage after the first
  (`network.ResNet`), so these
  are the first blocks of stages 2, 3, ...: the blocks whose deletion Veit et al. 2016 found to
  hurt (their shortcut is not an identity).
  """
  return tuple(itertools.accumulate(model.stage_sizes[:-1]))
