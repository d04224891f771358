"""The papers' schedule and optimizer, built from optax."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from resnet_jax import configs, optim


def config(**overrides):
  c = configs.base_config()
  c.update(overrides)
  return c


def test_step_schedule_divides_by_ten_at_32k_and_48k():
  lr = optim.learning_rate_schedule(config())
  for step, expected in [(0, 0.1), (31_999, 0.1), (32_000, 0.01), (47_999, 0.01),
                         (48_000, 0.001), (63_999, 0.001)]:
    np.testing.assert_allclose(lr(step), expected, rtol=1e-6)


def test_step_warmup_then_paper_schedule():
  lr = optim.learning_rate_schedule(config(warmup="steps"))
  np.testing.assert_allclose([lr(0), lr(399), lr(400), lr(32_000)], [0.01, 0.01, 0.1, 0.01],
                             rtol=1e-6)


def test_error_warmup_scales_updates_until_warmed_up():
  c = config(warmup="error")
  np.testing.assert_allclose(optim.warmup_factor(c, jnp.array(False)), 0.1, rtol=1e-6)
  np.testing.assert_allclose(optim.warmup_factor(c, jnp.array(True)), 1.0)
  assert optim.warmup_factor(config(), jnp.array(False)) == 1.0


def test_bad_warmup_raises():
  with pytest.raises(ValueError, match="'none', 'steps', 'error'"):
    optim.learning_rate_schedule(config(warmup="linear"))


def test_sgd_momentum_and_weight_decay_match_the_update_rule():
  c = config(learning_rate=0.1, weight_decay=0.5, momentum=0.9)
  tx = optim.make_optimizer(c)
  params = {"conv": {"kernel": jnp.array([1.0, -2.0])}, "bn1": {"scale": jnp.array([3.0])}}
  grads = jax.tree.map(jnp.ones_like, params)
  state = tx.init(params)
  velocity = jax.tree.map(jnp.zeros_like, params)
  for _ in range(3):
    updates, state = tx.update(grads, state, params)
    # Caffe/PyTorch SGD: v = m v + (g + wd w); w -= lr v.
    velocity = jax.tree.map(lambda v, g, w: 0.9 * v + g + 0.5 * w, velocity, grads, params)
    expected = jax.tree.map(lambda w, v: w - 0.1 * v, params, velocity)
    params = jax.tree.map(lambda w, u: w + u, params, updates)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), params, expected)


def test_batch_norm_mask_leaves_bn_undecayed():
  tx = optim.make_optimizer(config(decay_batch_norm=False, weight_decay=1.0, momentum=0.0))
  params = {"stage1": {"block1": {"conv1": {"kernel": jnp.ones(2)}, "bn1": {"scale": jnp.ones(2)}}},
            "stem_bn": {"bias": jnp.ones(2)}}
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  assert float(updates["stage1"]["block1"]["conv1"]["kernel"][0]) != 0.0
  assert float(updates["stage1"]["block1"]["bn1"]["scale"][0]) == 0.0
  assert float(updates["stem_bn"]["bias"][0]) == 0.0
