"""Starting a run from another run's weights: a converted torchvision/timm net
(`python -m resnet_jax.convert`) or any run trained here.

`initial_variables` reads the other run's checkpoint and returns the variables a new run starts
from: every parameter and BatchNorm statistic of the checkpoint, but a fresh classifier where the
class count differs (fine-tuning an ImageNet net on another data set). Every model of the zoo ends
in a dense layer named `head`; that layer alone may differ, and only in its class count. Anything
else that differs is an error naming the parameter, since loading part of a net silently would
train from a mixture of weights.
"""
import os
from typing import Any

import jax
import numpy as np

from resnet_jax import checkpoint
from resnet_jax.errors import CheckpointMismatchError, NoRunError

HEAD = "head"
COLLECTIONS = ("params", "batch_stats")


def _flat(tree: Any) -> dict[str, Any]:
  return {"/".join(str(p.key) for p in path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def _listed(names: list[str], most: int = 4) -> str:
  shown = ", ".join(names[:most])
  return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _new_head(saved: dict[str, Any], like: dict[str, Any]) -> tuple[int, int] | None:
  """(saved classes, new classes) if the saved head differs from `like`'s in its class count
  alone (the last axis of its kernel and bias), else None."""
  names = [n for n in like if n.startswith(f"params/{HEAD}/")]
  if not names or sorted(names) != sorted(n for n in saved if n.startswith(f"params/{HEAD}/")):
    return None
  counts = set()
  for name in names:
    old, new = np.shape(saved[name]), np.shape(like[name])
    if len(old) != len(new) or old[:-1] != new[:-1]:
      return None
    counts.add((old[-1], new[-1]))
  if len(counts) != 1:
    return None
  old, new = counts.pop()
  return None if old == new else (old, new)


def _kind(leaf: Any) -> str:
  return f"{np.dtype(leaf.dtype).name}{list(np.shape(leaf))}"


def _placed(value: np.ndarray, like: Any) -> Any:
  """`value` where `like` is: on its sharding (also across processes), or a numpy array."""
  sharding = getattr(like, "sharding", None)
  if sharding is None:
    return value
  return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])


def initial_variables(directory: str, like: dict[str, Any], step: int | None = None, *,
                      new_head: bool = True) -> tuple[dict[str, Any], str]:
  """The variables a run starts from: the checkpoint of the run in `directory`, with a fresh head
  where the class count differs.

  Args:
    directory: a run directory: one that `python -m resnet_jax.convert` wrote, or any training
      run's workdir (its optimizer state and step are not read).
    like: the new run's freshly initialised variables, {"params", "batch_stats"}: they give the
      layout every saved variable must have, the head used where the class count differs, and
      where the arrays go (each returned array has the sharding of its `like` array; numpy where
      `like` holds numpy arrays).
    step: the checkpoint step; None: the latest.
    new_head: False treats a head of another class count as any other difference (what an
      evaluation of the checkpoint needs).
  Returns:
    (variables, note): {"params", "batch_stats"} in `like`'s layout and dtypes, and one line that
    says where they came from and whether the head is new, for the run to print.
  Raises:
    NoRunError: `directory` holds no checkpoint.
    CheckpointMismatchError: a variable of `like` is missing from the checkpoint, the checkpoint
      holds one `like` lacks, or one differs in shape or dtype (beyond the head's class count);
      the message names them.
  """
  if not os.path.isdir(os.path.join(directory, "checkpoints")):
    raise NoRunError(f"{directory} holds no checkpoint (no checkpoints/ directory): give a run "
                     "directory, or one that python -m resnet_jax.convert wrote")
  mngr = checkpoint.manager(directory)
  step = mngr.latest_step() if step is None else step
  restored = checkpoint.restore_saved(mngr, step)
  mngr.close()
  saved = _flat({c: restored.get(c, {}) for c in COLLECTIONS})
  wanted = _flat({c: like.get(c, {}) for c in COLLECTIONS})
  new_head = _new_head(saved, wanted) if new_head else None
  missing = sorted(set(wanted) - set(saved))
  extra = sorted(set(saved) - set(wanted))
  if missing or extra:
    what = [f"lacks {_listed(missing)}"] if missing else []
    what += [f"holds {_listed(extra)}, which the model does not"] if extra else []
    raise CheckpointMismatchError(f"the checkpoint of {directory} {' and '.join(what)}: it is "
                                  "not a checkpoint of this model")
  differ = [name for name, leaf in wanted.items()
            if not (new_head and name.startswith(f"params/{HEAD}/"))
            and (np.shape(saved[name]) != np.shape(leaf) or saved[name].dtype != leaf.dtype)]
  if differ:
    name = differ[0]
    more = f" (and {len(differ) - 1} more differ)" if len(differ) > 1 else ""
    raise CheckpointMismatchError(
        f"{name} is {_kind(saved[name])} in the checkpoint of {directory}, {_kind(wanted[name])} "
        f"in the model{more}")
  flat = {name: leaf if new_head and name.startswith(f"params/{HEAD}/")
          else _placed(np.asarray(saved[name]), leaf) for name, leaf in wanted.items()}
  variables: dict[str, Any] = {c: {} for c in COLLECTIONS}
  for name, value in flat.items():
    tree = variables
    *parents, last = name.split("/")
    for part in parents:
      tree = tree.setdefault(part, {})
    tree[last] = value
  source = f"{directory} (checkpoint step {step})"
  if new_head:
    note = (f"initial weights: {source}, every parameter and BN statistic but the {HEAD}, which "
            f"is new: {new_head[1]} classes instead of the checkpoint's {new_head[0]}")
  else:
    note = f"initial weights: {source}, every parameter and BN statistic"
  return variables, note
