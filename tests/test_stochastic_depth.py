"""Stochastic depth (Huang et al. 2016) and effective-path training (Veit et al. 2016 §5).

The paper's semantics by default: one draw per block per mini-batch, a dropped block's branch not
computed at all, no scaling at train time, each branch multiplied by p_l at test time.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_train
import tolerances

from resnet_jax import configs, optim, parallel, steps
from resnet_jax.models import BlockControls, get_model, layers
from resnet_jax.train_state import create_train_state

WIDTHS = (4, 8, 8)


def tiny(name="resnet8", **options):
  return get_model(name, widths=WIDTHS, **options)


def init(model, batch=4):
  images = jax.random.normal(jax.random.key(1), (batch, 8, 8, 3))
  return model.init(jax.random.key(0), images), images


def train_apply(model, variables, images, key):
  return model.apply(variables, images, train=True, mutable=["batch_stats"],
                     rngs={"minibatch": key, "dropout": key})


def block_stats(batch_stats):
  """Per block (network order) the flattened BN statistics of resnet8 (one block per stage)."""
  return [np.concatenate([np.ravel(a) for a in jax.tree.leaves(batch_stats[f"stage{s}"])])
          for s in (1, 2, 3)]


def test_survival_decays_linearly_to_p_L():
  # p_l = 1 - l/L (1 - p_L) over all L blocks, l = 1..L: the last block survives with p_L.
  model = get_model("resnet110", stochastic_depth=0.5)
  p = np.asarray(model.survival())
  np.testing.assert_allclose(p, 1 - np.arange(1, 55) / 54 * 0.5, rtol=4 * tolerances.EPS32)
  assert get_model("sd_resnet110") == model
  assert get_model("resnet110").survival() is None


def test_eval_equals_the_same_net_with_lesion_gates_at_p_l():
  sd = tiny(stochastic_depth=0.5)
  variables, images = init(sd)
  p = sd.survival()
  ones = jnp.ones(3)
  gated = tiny().apply(variables, images,
                       controls=BlockControls(gate=p, branch_grad=ones, skip_grad=ones))
  np.testing.assert_array_equal(sd.apply(variables, images), gated)
  # Lesions still act on an SD net: gate 0 deletes the branch whatever p_l is.
  gate = jnp.array([1.0, 0.0, 1.0])
  lesioned = sd.apply(variables, images, controls=BlockControls(
      gate=gate, branch_grad=jnp.ones(3), skip_grad=jnp.ones(3)))
  np.testing.assert_array_equal(lesioned, tiny().apply(variables, images, controls=BlockControls(
      gate=gate * p, branch_grad=jnp.ones(3), skip_grad=jnp.ones(3))))


@pytest.mark.parametrize("seed", range(2))
def test_a_dropped_block_is_not_computed_and_is_not_scaled(seed):
  sd = tiny(stochastic_depth=0.5)
  variables, images = init(sd)
  key = jax.random.key(seed)
  logits, new = jax.jit(functools.partial(train_apply, sd))(variables, images, key)
  # A computed block updates its BN statistics; a dropped one leaves them as they were.
  updated = [not np.array_equal(a, b) for a, b in zip(block_stats(new["batch_stats"]),
                                                        block_stats(variables["batch_stats"]))]
  kept = np.asarray(updated, np.float32)
  # Forward: exactly the constant-depth net with the dropped branches' gates at 0, kept ones at 1
  # (no 1/p scaling at train time).
  expected, _ = tiny().apply(variables, images, train=True, mutable=["batch_stats"],
                             controls=BlockControls(gate=jnp.asarray(kept), branch_grad=jnp.ones(3),
                                                    skip_grad=jnp.ones(3)))
  # A conditional against a gate: BN statistics over the 4 * 8 * 8 positions of the batch.
  tolerances.assert_close(logits, expected, terms=4 * 8 * 8)
  # Backward: no gradient reaches a dropped branch's parameters.
  grads = jax.grad(lambda p: train_apply(sd, {**variables, "params": p}, images, key)[0].sum())(
      variables["params"])
  for s, k in zip((1, 2, 3), kept):
    norm = sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads[f"stage{s}"]))
    assert (norm > 0) == bool(k), (s, k, norm)


def test_draws_vary_by_mini_batch_and_follow_the_survival_rate():
  sd = tiny(stochastic_depth=0.5)
  variables, images = init(sd)
  apply = jax.jit(functools.partial(train_apply, sd))
  counts = np.zeros(3)
  trials = 60
  for i in range(trials):
    _, new = apply(variables, images, jax.random.key(i))
    counts += [not np.array_equal(a, b) for a, b in zip(block_stats(new["batch_stats"]),
                                                       block_stats(variables["batch_stats"]))]
  rates = counts / trials
  expected = np.asarray(sd.survival())  # 5/6, 2/3, 1/2
  assert np.all(np.abs(rates - expected) < 0.2), (rates, expected)
  assert 0 < counts[2] < trials


def test_active_blocks_runs_exactly_k_blocks_per_mini_batch_and_scales_k_over_n_at_test():
  model = tiny(active_blocks=2)
  variables, images = init(model)
  apply = jax.jit(functools.partial(train_apply, model))
  for i in range(8):
    _, new = apply(variables, images, jax.random.key(i))
    changed = [not np.array_equal(a, b) for a, b in zip(block_stats(new["batch_stats"]),
                                                        block_stats(variables["batch_stats"]))]
    assert sum(changed) == 2
  gated = tiny().apply(variables, images, controls=BlockControls(
      gate=jnp.full(3, 2 / 3), branch_grad=jnp.ones(3), skip_grad=jnp.ones(3)))
  tolerances.assert_close(model.apply(variables, images), gated, terms=1)  # the same ops


@pytest.mark.parametrize("name,options,shared", [
    # The network's first unit reads its pre-activation in the shortcut; the others add option A.
    ("preact_resnet8", dict(widths=WIDTHS), (True, False, False)),
    # Stages 2 and 3 widen: 1x1 projections of the pre-activated input.
    ("wrn10_1", {}, (False, True, True)),
])
def test_a_dropped_preactivation_unit_runs_its_bn_relu_only_where_the_shortcut_reads_it(
    name, options, shared):
  model = get_model(name, active_blocks=1, **options)  # two of the three units dropped
  variables, images = init(model)
  apply = jax.jit(functools.partial(train_apply, model))
  for i in range(4):
    _, new = apply(variables, images, jax.random.key(i))
    for s, reads_pre in zip((1, 2, 3), shared):
      before, after = (stats[f"stage{s}"]["block1"]
                       for stats in (variables["batch_stats"], new["batch_stats"]))
      kept = not np.array_equal(before["bn2"]["mean"], after["bn2"]["mean"])  # in every branch
      assert (not np.array_equal(before["bn1"]["mean"], after["bn1"]["mean"])) == (
          kept or reads_pre), (i, s, kept)


class _OnesBranch(nn.Module):
  """A residual unit whose branch is all ones: its output shows the drop mask directly."""

  @nn.compact
  def __call__(self, x, ctrl, train):
    return layers.residual_unit(self, lambda m, x: jnp.ones_like(x), x, jnp.zeros_like(x), ctrl,
                                train)


def test_sample_mode_drops_per_example_with_inverse_scaling():
  ctrl = BlockControls.default(1).at(0).replace(sample_survival=jnp.float32(0.25))
  out = _OnesBranch().apply({}, jnp.zeros((4000, 1, 1, 1)), ctrl, True,
                            rngs={"dropout": jax.random.key(0)})
  values = np.unique(np.asarray(out))
  np.testing.assert_allclose(values, [0.0, 4.0])  # dropped, or kept and scaled by 1/p
  assert abs(float(out.mean()) - 1.0) < 0.1  # unbiased: E[mask / p] = 1
  model = tiny(stochastic_depth=0.5, drop_mode="sample")
  variables, images = init(model)
  # No scaling at test time (it was applied in training), unlike the paper's batch mode.
  np.testing.assert_array_equal(model.apply(variables, images), tiny().apply(variables, images))
  # With p = 1 every example keeps every branch: the constant-depth net.
  full = tiny(stochastic_depth=1.0, drop_mode="sample")
  tolerances.assert_close(train_apply(full, variables, images, jax.random.key(0))[0],
                          train_apply(tiny(), variables, images, jax.random.key(0))[0],
                          terms=1)  # the same ops and a product by 1


def test_train_step_draws_from_the_step_so_it_is_deterministic_and_changes_per_step():
  config = configs.base_config()
  config.update(dict(batch_size=8, augment_pad=1, augment_flip=False, warmup="none"))
  model = tiny(stochastic_depth=0.5)
  tx = optim.make_optimizer(config)
  step = jax.jit(functools.partial(
      steps.train_step, model=model, tx=tx,
      learning_rate_fn=optim.learning_rate_schedule(config), batch_size=8, augment_pad=1,
      augment_flip=False))
  state = create_train_state(model, tx, jax.random.key(0), (8, 8, 3))
  data = {"image": jax.random.normal(jax.random.key(1), (32, 8, 8, 3)),
          "label": jnp.arange(32, dtype=jnp.int32) % 10}
  keys = (jax.random.key(2), jax.random.key(3))
  a, _ = step(state, data, *keys)
  b, _ = step(state, data, *keys)
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
  rngs = [steps.model_rngs(keys[1], jnp.int32(s)) for s in (0, 1)]
  assert not np.array_equal(jax.random.key_data(rngs[0]["minibatch"]),
                            jax.random.key_data(rngs[1]["minibatch"]))


@pytest.mark.parametrize("options,match", [
    (dict(stochastic_depth=0.0), r"\(0, 1\]"),
    (dict(stochastic_depth=1.5), r"\(0, 1\]"),
    (dict(stochastic_depth=0.5, drop_mode="row"), "batch"),
    (dict(active_blocks=0), r"\[1, 3\]"),
    (dict(active_blocks=2, stochastic_depth=0.5), "excludes"),
])
def test_bad_options_name_the_valid_ones(options, match):
  with pytest.raises(ValueError, match=match):
    tiny(**options)


def test_stochastic_depth_needs_a_residual_net():
  with pytest.raises(ValueError, match="residual"):
    get_model("plain20", stochastic_depth=0.5)
  with pytest.raises(ValueError, match="stochastic_depth"):
    get_model("resnet20", stochastic_dept=0.5)


def test_masked_drops_give_the_skipped_outputs_and_gradients():
  # skip_dropped=False computes a dropped branch and multiplies it by 0 (for XLA:CPU, where a
  # conditional slows convolution gradients): same draws, outputs and gradients.
  skipped, masked = tiny(stochastic_depth=0.5), tiny(stochastic_depth=0.5, skip_dropped=False)
  variables, images = init(skipped)
  def loss(model, params, key):
    return train_apply(model, {**variables, "params": params}, images, key)[0].sum()

  # Two programs (a conditional, a mask) that round differently: the longest sums are the BN
  # statistics and kernel gradients over the 4*8*8 positions of the batch.
  for seed in range(2):
    key = jax.random.key(seed)
    tolerances.assert_close(train_apply(masked, variables, images, key)[0],
                            train_apply(skipped, variables, images, key)[0], terms=4 * 8 * 8)
    tolerances.assert_close(jax.grad(functools.partial(loss, masked))(variables["params"], key),
                            jax.grad(functools.partial(loss, skipped))(variables["params"], key),
                            terms=4 * 8 * 8)


# Every drop option of the network x per-device BN x skip_dropped, two train steps on two
# devices. The batch's two 4-image halves are the same images, so that each device's BatchNorm
# statistics (per_device_bn) are the global batch's: every run then trains exactly as on one
# device, except the per-example draws of drop_mode="sample" under per_device_bn, which each
# device makes from its own stream (`steps.model_rngs`).
DROP_OPTIONS = {"stochastic_depth": dict(stochastic_depth=0.5),
                "active_blocks": dict(active_blocks=2),
                "sample": dict(stochastic_depth=0.5, drop_mode="sample")}
_PROGRAMS = {}  # lowered program text -> compiled step: equal programs compile once


@functools.cache
def _recipe():
  """The optimizer, the step's keywords and the initial state, shared by every drop option (their
  parameters are the same)."""
  config = configs.resolve_warmup(test_train.tiny_config(batch_size=8, augment_pad=0))
  tx = optim.make_optimizer(config)
  keywords = dict(tx=tx, learning_rate_fn=optim.learning_rate_schedule(config), batch_size=8,
                  augment_pad=0, augment_flip=False)
  # On the host: the compiled steps donate the state they are given.
  return keywords, jax.device_get(create_train_state(tiny(), tx, jax.random.key(0), (8, 8, 1)))


@functools.cache
def _two_steps(drop, skip_dropped, devices, per_device_bn):
  """(losses, params, batch_stats) after two train steps of tiny resnet8 on batch 8."""
  keywords, state = _recipe()
  model = tiny(**DROP_OPTIONS[drop], skip_dropped=skip_dropped)
  mesh = parallel.make_mesh(jax.devices()[:devices])
  step = parallel.compile_train_step(functools.partial(steps.train_step, model=model, **keywords),
                                     mesh, batch_size=8, per_device_bn=per_device_bn)
  repl = parallel.replicated(mesh)
  half = np.asarray(jax.random.normal(jax.random.key(1), (4, 8, 8, 1)))
  data = {"image": np.concatenate([half, half]), "label": np.arange(8, dtype=np.int32)}
  # The data order of both steps: the 8 examples in order, so the halves stay the same images.
  order = {"epoch": np.int32(0), "perms": np.tile(np.arange(8, dtype=np.int32), (2, 1))}
  state, args = jax.device_put((state, (data, jax.random.key(2), jax.random.key(3), order)), repl)
  lowered = step.lower(state, *args)
  # skip_dropped does nothing in "sample" mode: those programs are the same and compile once.
  # Compiled without XLA's expensive passes, for time; every run here is compiled alike.
  text = lowered.as_text()
  if text not in _PROGRAMS:
    _PROGRAMS[text] = lowered.compile(compiler_options={"xla_backend_optimization_level": 0})
  losses = []
  for _ in range(2):
    state, metrics = _PROGRAMS[text](state, *args)
    losses.append(metrics["loss"])
  return jax.device_get((losses, state.params, state.batch_stats))


@pytest.mark.parametrize("skip_dropped", [True, False])
@pytest.mark.parametrize("per_device_bn", [False, True])
@pytest.mark.parametrize("drop", list(DROP_OPTIONS))
def test_every_drop_option_trains_on_two_devices_as_on_one(drop, per_device_bn, skip_dropped):
  two = _two_steps(drop, skip_dropped, 2, per_device_bn)
  assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(two))
  if drop == "sample" and per_device_bn:
    return  # each device draws its own examples' drops: no one-device twin
  # One device against two: the longest sums are BN statistics and kernel gradients over the
  # 8*8*8 positions of the batch (on two devices, two halves and their mean).
  tolerances.assert_close(two, _two_steps(drop, skip_dropped, 1, False), terms=8 * 8 * 8)
  if drop != "sample":
    # The draws did drop a block: skipping it left its BN statistics as they were, computing it
    # and multiplying it by 0 did not.
    skipped, masked = (jax.tree.leaves(_two_steps(drop, skip, 1, False)[2])
                       for skip in (True, False))
    assert not all(tolerances.close(a, b, terms=8 * 8 * 8) for a, b in zip(skipped, masked))
