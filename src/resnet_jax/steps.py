"""Pure train and eval steps. Nothing here is jitted: `parallel.py` compiles them.

The train step does everything a step does on the device: it gathers its batch from the
device-resident training set (order fixed by (data_rng, step)), augments it (keys folded from
(aug_rng, step)), runs the model and updates the state. A batch is {"image": [B, H, W, C]
float32, "label": [B] int32}; eval batches also carry "mask": [B] float32 (0 for padding).
"""
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from resnet_jax import augment
from resnet_jax.train_state import TrainState

Batch = dict[str, jax.Array]

# Compute dtypes of `config.dtype`. "bfloat16" is mixed precision: the parameters are cast to
# bfloat16 for the forward and backward pass (so convolutions and matmuls run in bf16), while
# the parameters themselves, their gradients and update, the BatchNorm statistics (flax reduces in
# float32 and keeps its running averages in float32) and the loss stay float32.
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def check_compute_dtype(name: str) -> None:
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"dtype must be one of {tuple(COMPUTE_DTYPES)}, got {name!r}")


def _apply(model: nn.Module, variables: dict, images: jax.Array, compute_dtype: str, **kwargs):
  """model.apply with params and images cast to `compute_dtype`; logits come back float32."""
  dtype = COMPUTE_DTYPES[compute_dtype]
  if dtype != jnp.float32:
    variables = {**variables, "params": jax.tree.map(lambda p: p.astype(dtype),
                                                     variables["params"])}
    images = images.astype(dtype)
  out = model.apply(variables, images, **kwargs)
  logits, rest = (out[0], out[1:]) if isinstance(out, tuple) else (out, ())
  logits = logits.astype(jnp.float32)
  return (logits, *rest) if rest else logits


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """[B] per-example softmax cross-entropy."""
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def training_batch(data: Batch, data_rng: jax.Array, aug_rng: jax.Array, step: jax.Array, *,
                   batch_size: int, augment_pad: int, augment_flip: bool,
                   order: dict[str, jax.Array] | None = None,
                   axis_name: str | None = None) -> Batch:
  """Batch `step` of the training set `data` ({"image": [M, ...], "label": [M]}), augmented.

  The global batch of `batch_size` images and its crops and flips (drawn from
  fold_in(aug_rng, step), one per position) depend only on the step. Inside shard_map
  (axis_name set) each device gathers and augments its own slice of that global batch, so the
  images a step trains on are the same on any number of devices, per-device BN or not.
  `order` (`augment.data_order` of data_rng, drawn for this step) gives the same batch without
  sorting the training set; None draws the epoch's permutation here.
  """
  augment.check_pad(augment_pad)
  if order is None:
    index = augment.batch_indices(data_rng, step, data["image"].shape[0], batch_size)
  else:
    index = augment.order_indices(order, step, batch_size)
  draws = augment.draw_augmentation(jax.random.fold_in(aug_rng, step), batch_size,
                                    pad=augment_pad, flip=augment_flip)
  if axis_name is not None:
    local = batch_size // jax.lax.axis_size(axis_name)
    start = jax.lax.axis_index(axis_name) * local
    index, draws = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, local),
                                (index, draws))
  images = augment.apply_augmentation(data["image"][index], draws, pad=augment_pad)
  return {"image": images, "label": data["label"][index]}


def model_rngs(aug_rng: jax.Array, step: jax.Array,
               axis_name: str | None = None) -> dict[str, jax.Array]:
  """The model's randomness in training step `step`, as `apply`'s rngs.

  "minibatch": draws made once per mini-batch (stochastic depth's blocks, drop-path's columns),
  the same on every device. "dropout": per-example draws (dropout, per-sample drop-path); inside
  shard_map each device folds in its index, so the slices of a global batch differ as they would
  under jit. Both come from the step's augmentation key, split four ways where augmentation
  splits it two ways (`augment.draw_augmentation`), so they are independent of the crops and
  flips and a resumed run draws them again exactly.
  """
  _, _, minibatch, dropout = jax.random.split(jax.random.fold_in(aug_rng, step), 4)
  if axis_name is not None:
    dropout = jax.random.fold_in(dropout, jax.lax.axis_index(axis_name))
  return {"minibatch": minibatch, "dropout": dropout}


def train_step(state: TrainState, data: Batch, data_rng: jax.Array, aug_rng: jax.Array,
               order: dict[str, jax.Array] | None = None, *, model: nn.Module,
               tx: optax.GradientTransformation, learning_rate_fn: Callable[[jax.Array], Any],
               batch_size: int,
               augment_pad: int = 4, augment_flip: bool = True, warmup_factor: float = 1.0,
               warmup_error: float = 0.8, compute_dtype: str = "float32",
               axis_name: str | None = None,
               shard_batch: Callable[[Batch], Batch] = lambda batch: batch,
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on batch `state.step` of the training set.

  Args:
    state: the train state.
    data: the whole training set {"image": [M, H, W, C], "label": [M]}, on the device.
    data_rng, aug_rng: the run's data-order and augmentation keys; both are folded with
      state.step, so a resumed run draws exactly the batches of an uninterrupted one (and the
      model's own randomness, `model_rngs`).
    order: the data order drawn for this step (`augment.data_order`), so that the step only
      gathers its batch; None sorts the training set here (the same batch, slower).
    model, tx, learning_rate_fn: bound with functools.partial before compiling.
    batch_size: the global batch size.
    augment_pad, augment_flip: He 2015's pad-4 crop and flip.
    warmup_factor: factor on the update until a training batch's error first falls below
      `warmup_error` (the "error" warm-up: warmup_lr / learning_rate); 1.0 for no such warm-up.
    compute_dtype: a COMPUTE_DTYPES name: "bfloat16" runs the model in bf16, everything else
      (parameters, gradients, update, BN statistics, loss) in float32.
    axis_name: inside shard_map, the mesh axis to average gradients, statistics and metrics
      over; None under jit, where the batch is one global array.
    shard_batch: applied to the gathered batch; the compiler binds a sharding constraint here so
      that the batch, and with it the forward and backward pass, is split over the devices.
  Returns:
    (new state, metrics): loss, train_error, grad_norm and lr of this step.
  """
  batch = shard_batch(training_batch(data, data_rng, aug_rng, state.step, batch_size=batch_size,
                                     augment_pad=augment_pad, augment_flip=augment_flip,
                                     order=order, axis_name=axis_name))
  return update(state, batch, aug_rng, model=model, tx=tx, learning_rate_fn=learning_rate_fn,
                warmup_factor=warmup_factor, warmup_error=warmup_error,
                compute_dtype=compute_dtype, axis_name=axis_name)


def train_step_on_batch(state: TrainState, batch: Batch, aug_rng: jax.Array, *,
                        model: nn.Module, tx: optax.GradientTransformation,
                        learning_rate_fn: Callable[[jax.Array], Any],
                        normalize: Callable[[jax.Array, jax.Array], jax.Array],
                        warmup_factor: float = 1.0, warmup_error: float = 0.8,
                        compute_dtype: str = "float32", axis_name: str | None = None,
                        ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One SGD step on a batch the host has decoded and augmented (the streamed input path).

  Args:
    state: the train state.
    batch: {"image": [B, H, W, C] uint8, "offset": [B, C] float32 colour offsets (PCA lighting,
      or zeros), "label": [B] int32}: global arrays sharded over the mesh, or each device's
      slice inside shard_map.
    aug_rng: the run's augmentation key; only the model's own randomness (`model_rngs`) is drawn
      from it here, the crops and flips were drawn by the host.
    normalize: normalize(image, offset) -> float32 images, bound before compiling.
    The rest as in `train_step`.
  Returns:
    (new state, metrics) as `train_step`.
  """
  batch = {"image": normalize(batch["image"], batch["offset"]), "label": batch["label"]}
  return update(state, batch, aug_rng, model=model, tx=tx, learning_rate_fn=learning_rate_fn,
                warmup_factor=warmup_factor, warmup_error=warmup_error,
                compute_dtype=compute_dtype, axis_name=axis_name)


def update(state: TrainState, batch: Batch, aug_rng: jax.Array, *, model: nn.Module,
           tx: optax.GradientTransformation, learning_rate_fn: Callable[[jax.Array], Any],
           warmup_factor: float, warmup_error: float, compute_dtype: str,
           axis_name: str | None) -> tuple[TrainState, dict[str, jax.Array]]:
  """The SGD update of `state` on `batch` ({"image": [B, H, W, C] float32, "label": [B]}), what
  every train step ends in, whichever way its batch came."""
  params, batch_stats = state.params, state.batch_stats
  if axis_name is not None:
    # Inside shard_map each device differentiates the loss of its own shard and keeps its own
    # running BN statistics until the pmean below; said to shard_map's type system. Replicated
    # parameters would get gradients already summed over the devices (the transpose of their
    # implicit broadcast), which the pmean would leave N times the mean. And the statistics of a
    # block that runs (updated from the device's shard) and of one that stochastic depth skips
    # (`nn.cond`: passed through) must have the same type.
    params, batch_stats = jax.lax.pcast((params, batch_stats), axis_name, to="varying")

  def loss_fn(params):
    logits, new_vars = _apply(model, {"params": params, "batch_stats": batch_stats},
                              batch["image"], compute_dtype, train=True, mutable=["batch_stats"],
                              rngs=model_rngs(aug_rng, state.step, axis_name))
    loss = cross_entropy(logits, batch["label"]).mean()
    return loss, (logits, new_vars["batch_stats"])

  (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
  error = jnp.mean(jnp.argmax(logits, -1) != batch["label"])
  if axis_name is not None:
    grads, loss, error, batch_stats = jax.lax.pmean((grads, loss, error, batch_stats), axis_name)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  factor = jnp.where(state.warmed_up, 1.0, warmup_factor)
  updates = jax.tree.map(lambda u: u * factor, updates)
  metrics = {"loss": loss, "train_error": error, "grad_norm": optax.tree.norm(grads),
             "lr": learning_rate_fn(state.step) * factor}
  new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                            batch_stats=batch_stats, opt_state=opt_state,
                            warmed_up=state.warmed_up | (error < warmup_error))
  return new_state, metrics


def eval_step(state: TrainState, batch: Batch, *, model: nn.Module,
              compute_dtype: str = "float32",
              normalize: Callable[[jax.Array], jax.Array] | None = None) -> dict[str, jax.Array]:
  """Sums over the real (mask = 1) examples of a batch, BN with its running statistics, the model
  run in `compute_dtype` as in training.

  batch: {"image": [B, H, W, C], or [B, K, H, W, C] for K crops of each image (He 2015's 10-crop
  test), "label": [B], "mask": [B]}. With crops, an image's prediction is the mean of its crops'
  softmax scores. `normalize` maps stored images (uint8) to the model's input; None: the images
  are its input already.
  Returns:
    {"loss_sum", "error_sum" (top-1), "top5_error_sum", "count"}.
  """
  images = batch["image"] if normalize is None else normalize(batch["image"])
  crops = images.shape[1] if images.ndim == 5 else 0
  if crops:
    images = images.reshape((-1,) + images.shape[2:])
  logits = _apply(model, {"params": state.params, "batch_stats": state.batch_stats},
                  images, compute_dtype, train=False)
  if crops:
    probs = jax.nn.softmax(logits).reshape((-1, crops, logits.shape[-1])).mean(axis=1)
    log_probs = jnp.log(probs)
  else:
    log_probs = jax.nn.log_softmax(logits)
  labels, mask = batch["label"], batch["mask"]
  loss = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
  wrong = (jnp.argmax(log_probs, -1) != labels).astype(jnp.float32)
  # Top-5: wrong when five or more classes score higher than the label (ties count for it).
  label_score = jnp.take_along_axis(log_probs, labels[:, None], axis=-1)
  wrong5 = (jnp.sum(log_probs > label_score, axis=-1) >= 5).astype(jnp.float32)
  return {"loss_sum": jnp.sum(loss * mask), "error_sum": jnp.sum(wrong * mask),
          "top5_error_sum": jnp.sum(wrong5 * mask), "count": jnp.sum(mask)}
