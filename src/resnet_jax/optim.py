"""The papers' optimizer and learning-rate schedule, from optax pieces.

The functions here take a training config whose warm-up is already decided ("none", "steps" or
"error"; `configs.resolve_warmup` turns "auto" into one of them) and carry out that decision.
"""
from typing import NamedTuple

import flax
import ml_collections
import optax

WARMUPS = ("none", "steps", "error")


def _check_warmup(config: ml_collections.ConfigDict) -> None:
  if config.warmup not in WARMUPS:
    raise ValueError(f"warmup must be one of {WARMUPS} here, got {config.warmup!r} ('auto' is "
                     "decided per model by resnet_jax.configs.resolve_warmup)")


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Step schedule: `learning_rate`, times `lr_decay` at each boundary (fractions of num_steps).

  With warmup="steps" the first `warmup_steps` use `warmup_lr` (He 2015's ResNet-110: 0.01 for
  about 400 iterations). The "error" warm-up is not a function of the step alone; the train step
  applies it (see `error_warmup`).
  """
  _check_warmup(config)
  boundaries = {}
  for fraction in config.lr_boundaries:
    # Two fractions can round to the same step (short runs): both decays then apply there.
    step = int(round(fraction * config.num_steps))
    boundaries[step] = boundaries.get(step, 1.0) * config.lr_decay
  base = optax.piecewise_constant_schedule(config.learning_rate, boundaries)
  if config.warmup != "steps":
    return base
  warm = optax.constant_schedule(config.warmup_lr)
  return optax.join_schedules([warm, lambda step: base(step + config.warmup_steps)],
                              [config.warmup_steps])


class ErrorWarmup(NamedTuple):
  """The "error" warm-up as the values the train step takes.

  factor: multiplies the update (so the rate) until a training batch's error first falls below
    `until_error`; 1.0 when the config has no "error" warm-up. Scaling the update is scaling the
    rate: momentum accumulates raw gradients (PyTorch's convention; Caffe, He's framework,
    accumulates lr * gradient, which differs only while the rate changes), and the rate
    multiplies the accumulated direction.
  until_error: the training-error threshold that ends the warm-up.
  """
  factor: float
  until_error: float


def error_warmup(config: ml_collections.ConfigDict) -> ErrorWarmup:
  """He 2015's "warm up until the training error is below 80%", as step values."""
  _check_warmup(config)
  if config.warmup != "error":
    return ErrorWarmup(factor=1.0, until_error=config.warmup_error)
  return ErrorWarmup(factor=config.warmup_lr / config.learning_rate,
                     until_error=config.warmup_error)


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
