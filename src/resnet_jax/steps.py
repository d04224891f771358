"""Pure train and eval steps. Nothing here is jitted: `parallel.py` compiles them.

A batch is {"image": [B, H, W, C] float32, "label": [B] int32}; eval batches also carry
"mask": [B] float32 (0 for padding).
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from resnet_jax import augment
from resnet_jax.train_state import TrainState

Batch = dict[str, jax.Array]


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """[B] per-example softmax cross-entropy."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def select_batch(images: jax.Array, labels: jax.Array, data_rng: jax.Array, step: jax.Array,
                 batch_size: int) -> Batch:
  """Gathers batch `step` of the device-resident training set (order fixed by data_rng, step)."""
  index = augment.batch_indices(data_rng, step, images.shape[0], batch_size)
  return {"image": images[index], "label": labels[index]}


def train_step(state: TrainState, batch: Batch, rng: jax.Array, *, model: nn.Module,
               tx: optax.GradientTransformation, learning_rate_fn: Callable[[jax.Array], Any],
               augment_pad: int = 4, augment_flip: bool = True,
               warmup_factor_fn: Callable[[jax.Array], Any] = lambda warmed_up: 1.0,
               warmup_error: float = 0.8, grad_axis: str | None = None
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on `batch`, augmented on device with a key folded from (rng, state.step).

  Args:
    state: the train state.
    batch: {"image", "label"}, not yet augmented.
    rng: the run's augmentation key; the step's key is fold_in(rng, state.step), so a resumed run
      draws exactly the crops and flips of an uninterrupted one.
    model, tx, learning_rate_fn: bound with functools.partial before compiling.
    augment_pad, augment_flip: He 2015's pad-4 crop and flip.
    warmup_factor_fn: update factor as a function of state.warmed_up (the "error" warm-up).
    warmup_error: the training error below which an "error" warm-up ends.
    grad_axis: inside shard_map, the mesh axis to average gradients, statistics and metrics
      over; None under jit, where the batch is one global array.
  Returns:
    (new state, metrics): loss, error, grad_norm and lr of this step.
  """
  step_rng = jax.random.fold_in(rng, state.step)
  images = augment.pad_crop_flip(step_rng, batch["image"], pad=augment_pad, flip=augment_flip)

  def loss_fn(params):
    logits, new_vars = model.apply({"params": params, "batch_stats": state.batch_stats}, images,
                                   train=True, mutable=["batch_stats"])
    loss = cross_entropy(logits, batch["label"]).mean()
    return loss, (logits, new_vars["batch_stats"])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  error = jnp.mean(jnp.argmax(logits, -1) != batch["label"])
  if grad_axis is not None:
    grads, loss, error, batch_stats = jax.lax.pmean((grads, loss, error, batch_stats), grad_axis)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  factor = warmup_factor_fn(state.warmed_up)
  updates = jax.tree.map(lambda u: u * factor, updates)
  params = optax.apply_updates(state.params, updates)
  metrics = {"loss": loss, "train_error": error, "grad_norm": optax.tree.norm(grads),
             "lr": learning_rate_fn(state.step) * factor}
  new_state = state.replace(step=state.step + 1, params=params, batch_stats=batch_stats,
                            opt_state=opt_state,
                            warmed_up=state.warmed_up | (error < warmup_error))
  return new_state, metrics


def eval_step(state: TrainState, batch: Batch, *, model: nn.Module) -> dict[str, jax.Array]:
  """Sums over the real (mask = 1) examples of a batch, BN with its running statistics."""
  logits = model.apply({"params": state.params, "batch_stats": state.batch_stats}, batch["image"],
                       train=False)
  mask = batch["mask"]
  wrong = (jnp.argmax(logits, -1) != batch["label"]).astype(jnp.float32)
  return {"loss_sum": jnp.sum(cross_entropy(logits, batch["label"]) * mask),
          "error_sum": jnp.sum(wrong * mask), "count": jnp.sum(mask)}
