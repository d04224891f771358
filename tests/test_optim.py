"""The papers' schedule and optimizer, built from optax."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tolerances

from resnet_jax import configs, optim

# Rates are float32 products of a few decimals (0.1 x 0.1 x ...): a few roundings each.
FEW_ROUNDINGS = 8 * tolerances.EPS32


def config(**overrides):
  c = configs.base_config()
  c.update(overrides)
  return configs.resolve_warmup(c)


def test_step_schedule_divides_by_ten_at_32k_and_48k():
  lr = optim.learning_rate_schedule(config())
  for step, expected in [(0, 0.1), (31_999, 0.1), (32_000, 0.01), (47_999, 0.01),
                         (48_000, 0.001), (63_999, 0.001)]:
    np.testing.assert_allclose(lr(step), expected, rtol=FEW_ROUNDINGS)


def test_step_warmup_then_paper_schedule():
  lr = optim.learning_rate_schedule(config(warmup="steps"))
  np.testing.assert_allclose([lr(0), lr(399), lr(400), lr(32_000)], [0.01, 0.01, 0.1, 0.01],
                             rtol=FEW_ROUNDINGS)


def test_error_warmup_is_carried_as_values():
  warmup = optim.error_warmup(config(warmup="error"))
  np.testing.assert_allclose(warmup.factor, 0.1, rtol=FEW_ROUNDINGS)
  assert warmup.until_error == 0.8
  assert optim.error_warmup(config()).factor == 1.0
  assert optim.error_warmup(config(warmup="steps")).factor == 1.0


def test_bad_warmup_raises():
  with pytest.raises(ValueError, match="'auto', 'none', 'steps', 'error'"):
    config(warmup="linear")
  unresolved = configs.base_config()  # "auto" must be decided per model first
  with pytest.raises(ValueError, match="resolve_warmup"):
    optim.learning_rate_schedule(unresolved)


@pytest.mark.parametrize("model,expected", [("resnet110", "steps"), ("resnet1202", "steps"),
                                            ("plain110", "steps"), ("resnet56", "none"),
                                            ("preact_resnet110", "none")])
def test_auto_warmup_follows_he_2015(model, expected):
  assert config(model=model).warmup == expected
  # A value the user chose is never replaced.
  assert config(model=model, warmup="error").warmup == "error"


def test_boundaries_that_round_to_one_step_both_apply():
  # 0.5 * 3 and 0.75 * 3 both round to step 2: the rate must fall by 10 twice there, not once.
  lr = optim.learning_rate_schedule(config(num_steps=3))
  np.testing.assert_allclose([lr(0), lr(1), lr(2)], [0.1, 0.1, 0.001], rtol=FEW_ROUNDINGS)


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
    # Optax orders the same few float32 operations per step differently.
    tolerances.assert_close(params, expected, terms=16)


def test_batch_norm_mask_leaves_bn_undecayed():
  tx = optim.make_optimizer(config(decay_batch_norm=False, weight_decay=1.0, momentum=0.0))
  params = {"stage1": {"block1": {"conv1": {"kernel": jnp.ones(2)}, "bn1": {"scale": jnp.ones(2)}}},
            "stem_bn": {"bias": jnp.ones(2)}}
  zeros = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zeros, tx.init(params), params)
  assert float(updates["stage1"]["block1"]["conv1"]["kernel"][0]) != 0.0
  assert float(updates["stage1"]["block1"]["bn1"]["scale"][0]) == 0.0
  assert float(updates["stem_bn"]["bias"][0]) == 0.0
