"""The papers' optimizer and learning-rate schedule, from optax pieces."""
import flax
import jax
import ml_collections
import optax

WARMUPS = ("none", "steps", "error")


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Step schedule: `learning_rate`, times `lr_decay` at each boundary (fractions of num_steps).

  With warmup="steps" the first `warmup_steps` use `warmup_lr` (He 2015's ResNet-110: 0.01 for
  about 400 iterations). The "error" warm-up is not a function of the step alone; the train step
  applies it (see `warmup_factor`).
  """
  if config.warmup not in WARMUPS:
    raise ValueError(f"warmup must be one of {WARMUPS}, got {config.warmup!r}")
  boundaries = {int(round(f * config.num_steps)): config.lr_decay for f in config.lr_boundaries}
  base = optax.piecewise_constant_schedule(config.learning_rate, boundaries)
  if config.warmup != "steps":
    return base
  warm = optax.constant_schedule(config.warmup_lr)
  return optax.join_schedules([warm, lambda step: base(step + config.warmup_steps)],
                              [config.warmup_steps])


def warmup_factor(config: ml_collections.ConfigDict, warmed_up: jax.Array) -> jax.Array | float:
  """Factor on the update for the "error" warm-up: warmup_lr / learning_rate until warmed up.

  Scaling the update is scaling the rate: momentum accumulates raw gradients, as in Caffe and
  PyTorch, and the rate multiplies the accumulated direction.
  """
  if config.warmup != "error":
    return 1.0
  return jax.numpy.where(warmed_up, 1.0, config.warmup_lr / config.learning_rate)


def _decay_mask(params):
  """True for every parameter but BatchNorm's scale and bias."""
  flat = flax.traverse_util.flatten_dict(params)
  return flax.traverse_util.unflatten_dict(
      {k: not any(part.startswith("bn") or part.endswith("_bn") for part in k) for k in flat})


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """SGD with momentum (Nesterov optional) and weight decay added to the gradient.

  Weight decay `wd` is SGD's decay (gradient + wd * w), i.e. an L2 loss of wd/2 * |w|^2, applied
  to every parameter as in the papers' code unless `decay_batch_norm` is False.
  """
  mask = None if config.decay_batch_norm else _decay_mask
  return optax.chain(
      optax.add_decayed_weights(config.weight_decay, mask=mask),
      optax.sgd(learning_rate_schedule(config), momentum=config.momentum,
                nesterov=config.nesterov),
  )
