"""Multi-residual nets (Abdi & Nahavandi 2016): counts, names, and the path analyses with k
branches per block against brute force and hand-built nets.

Tiny nets (multires11: 3 blocks, widths scaled down) on 8x8 images, variables filled from numpy as
in test_analysis (no slow `init`); big presets counted through `jax.eval_shape`.
"""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tolerances
from scipy import special
from test_analysis import loss_grad_at_block_input, make_net, one_trace_only

from resnet_jax import analysis, configs, optim, steps
from resnet_jax.analysis import path_gradients
from resnet_jax.models import BlockControls, get_model, list_models
from resnet_jax.train_state import create_train_state

TINY = dict(widths=(2, 2, 4))


def count_params(model):
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("name,expected", [("multires200_k5", 10_187_354),
                                           ("multires398_k5", 20_388_314)])
def test_param_counts_match_the_official_code(name, expected):
  # masabdi/multi-resnet's README: 10.2M and 20.4M; these are its Torch model's exact counts.
  assert name in list_models()
  assert count_params(get_model(name)) == expected


def test_one_branch_is_the_authors_preact_bottleneck():
  assert count_params(get_model("multires29_k1")) == count_params(
      get_model("preact_bottleneck29", stride_in_3x3=False))


def test_widths_bring_k_1_2_4_to_similar_counts():
  counts = [count_params(get_model(f"multires29_k{k}", widths=w))
            for k, w in ((1, (16, 32, 64)), (2, (11, 23, 45)), (4, (8, 16, 32)))]
  assert max(counts) / min(counts) < 1.15, counts


def test_blocks_are_scanned_and_describe_their_branches():
  model = get_model("multires398_k5")
  assert model.num_blocks == 132 and model.branches_per_block == 5 and model.is_residual
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
  assert shapes["params"]["stage3"]["blocks"]["block"]["branch5"]["conv2"]["kernel"].shape == (
      43, 3, 3, 64, 64)
  assert get_model("resnet14").branches_per_block == 1
  assert get_model("preact_bottleneck20").branches_per_block == 1
  assert analysis.log2_num_paths(model) == pytest.approx(132 * np.log2(6))
  assert analysis.log2_num_paths(get_model("resnet110")) == 54
  assert analysis.log2_num_paths(get_model("plain20")) == 0


@pytest.mark.parametrize("name,overrides,pattern", [
    ("multires21_k2", {}, r"9n\+2"), ("multires20_k0", {}, "branches per unit, must be >= 1"),
    ("multires20", {}, r"multires\{9n\+2\}_k\{k\}"), ("multires20_k2", {"shortcut": "B"},
                                                      "takes no override.*'widths'"),
    ("multires20_k2", {"widths": (8, 16)}, "widths must be 3 integers"),
])
def test_bad_names_and_options_raise_with_valid_choices(name, overrides, pattern):
  with pytest.raises(ValueError, match=pattern):
    get_model(name, **overrides)


def test_path_counts_and_distribution_match_enumeration():
  for n, k in ((4, 3), (5, 2), (3, 1)):
    routes = np.array(list(itertools.product(range(k + 1), repeat=n)))
    lengths = np.count_nonzero(routes, axis=1)
    brute = np.bincount(lengths, minlength=n + 1).astype(np.float64)
    np.testing.assert_array_equal(analysis.path_counts(n, k), brute)
    np.testing.assert_allclose(analysis.path_length_distribution(n, k), brute / brute.sum(),
                               rtol=1e-12)
  counts = analysis.path_counts(132, 5)  # (1 + 5x)^132: finite, sums to 6^132
  np.testing.assert_allclose(counts.sum(), 6.0**132, rtol=1e-9)
  np.testing.assert_array_equal(analysis.path_counts(54, 1), special.comb(54, np.arange(55)))


def test_exact_path_gradients_match_brute_force_over_all_k_plus_1_routes():
  model, variables, images, labels = make_net("multires11_k2", **TINY)
  n, k = model.num_blocks, model.branches_per_block
  assert (n, k) == (3, 2)
  exact = analysis.exact_path_gradients(model, variables, images, labels)
  np.testing.assert_array_equal(exact.num_paths, [1, 6, 12, 8])
  routes = np.array(list(itertools.product(range(k + 1), repeat=n)))  # 27 routes
  per_route = analysis.single_path_gradients(model, variables, images, labels, routes)
  lengths = np.count_nonzero(routes, axis=1)
  brute = np.stack([per_route[lengths == j].sum(0) for j in range(n + 1)])
  # The longest sums: the 3x3 convs over 9 * 4 inputs (and the 27 routes summed).
  tolerances.assert_close(exact.grads, brute, terms=9 * 4)
  full = loss_grad_at_block_input(model, variables, images, labels)
  tolerances.assert_close(exact.grads.sum(0), full, terms=9 * 4)
  # Branch routes differ: a path through branch 1 of block 1 is not one through branch 2.
  assert not np.allclose(per_route[9], per_route[18])  # routes (1, 0, 0) and (2, 0, 0)


def test_sampled_path_gradients_pick_one_of_k_branches(monkeypatch):
  model, variables, images, labels = make_net("multires11_k2", **TINY)
  one_trace_only(monkeypatch, path_gradients, "_route_sq_norms")
  sampled = analysis.sampled_path_gradients(model, variables, images, labels,
                                            jax.random.key(3), samples_per_length=4)
  routes = sampled.routes.reshape(-1, 3)
  assert set(np.unique(routes)) <= {0, 1, 2} and 2 in routes
  np.testing.assert_array_equal(np.count_nonzero(sampled.routes, axis=-1),
                                np.repeat(np.arange(4)[:, None], 4, axis=1))
  grads = analysis.single_path_gradients(model, variables, images, labels, routes)
  tolerances.assert_positive_sums_close(
      sampled.norms.reshape(-1), np.linalg.norm(grads.reshape(len(routes), -1), axis=1),
      terms=grads[0].size)
  np.testing.assert_array_equal(sampled.num_paths, [1, 6, 12, 8])
  with pytest.raises(ValueError, match="0 \\(skip\\) and 1..2"):
    analysis.single_path_gradient(model, variables, images, labels, np.array([0, 3, 1]))


def _without_branch(variables, block, branch):
  """Variables with branch `branch` (from 1) of `block` (a block1 of some stage) zeroed out at its
  last conv: the net without that branch's contribution."""
  params = jax.tree.map(lambda a: a, variables["params"])
  stage = f"stage{block + 1}"
  kernel = params[stage]["block1"][f"branch{branch}"]["conv3"]["kernel"]
  params[stage]["block1"][f"branch{branch}"]["conv3"]["kernel"] = jnp.zeros_like(kernel)
  return {**variables, "params": params}


def test_deleting_one_branch_is_the_net_without_it():
  model, variables, images, labels = make_net("multires11_k2", batch=8, **TINY)
  apply = jax.jit(functools.partial(model.apply, train=False))
  n, k = model.num_blocks, 2
  errors = analysis.lesion_branches(model, variables, images, labels)
  assert errors.shape == (n, k)
  for b, j in itertools.product(range(n), range(k)):  # every stage has one block here
    gate = np.ones((k, n), np.float32)
    gate[j, b] = 0.0
    ones = jnp.ones((n,))
    gated = apply(variables, images,
                  controls=BlockControls(gate=ones, branch_grad=ones, skip_grad=ones,
                                         branch_gate=jnp.asarray(gate)))
    hand = apply(_without_branch(variables, b, j + 1), images)
    tolerances.assert_close(gated, hand, terms=9 * 4)
    wrong = np.mean(np.argmax(np.asarray(hand), -1) != np.asarray(labels))
    assert errors[b, j] == wrong
  # Deleting a whole block deletes all its branches.
  both = analysis.lesion_branch_errors(model, variables, images, labels,
                                       np.zeros((1, n, k)))
  np.testing.assert_array_equal(both, analysis.lesion_errors(model, variables, images, labels,
                                                             np.zeros((1, n))))


def test_branch_lesion_of_an_ordinary_resnet_is_the_block_lesion():
  model, variables, images, labels = make_net("resnet14")
  np.testing.assert_array_equal(analysis.lesion_branches(model, variables, images, labels)[:, 0],
                                analysis.lesion_single(model, variables, images, labels))
  with pytest.raises(ValueError, match="residual"):
    plain = make_net("plain14")
    analysis.lesion_branches(*plain)


def test_responses_name_each_branch():
  model, variables, _, _ = make_net("multires11_k2", **TINY)
  names = analysis.response_layer_names(model, variables, (8, 8, 3))
  assert names == [f"stage{s}_block1_response{j}" for s in (1, 2, 3) for j in (1, 2)]


@pytest.mark.slow  # a real train step; SD itself: test_stochastic_depth
def test_train_step_with_stochastic_depth():
  model = get_model("multires11_k2", stochastic_depth=0.5, **TINY)
  config = configs.base_config()
  config.update(dict(batch_size=8, num_steps=2, augment_pad=1, augment_flip=False, warmup="none"))
  tx = optim.make_optimizer(config)
  step = jax.jit(functools.partial(
      steps.train_step, model=model, tx=tx, learning_rate_fn=optim.learning_rate_schedule(config),
      batch_size=8, augment_pad=1, augment_flip=False))
  state = create_train_state(model, tx, jax.random.key(0), (8, 8, 1))
  data = {"image": jax.random.normal(jax.random.key(1), (16, 8, 8, 1)),
          "label": jnp.arange(16, dtype=jnp.int32) % 10}
  new, metrics = step(state, data, jax.random.key(2), jax.random.key(3))
  assert np.isfinite(float(metrics["loss"])) and int(new.step) == 1
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.params, new.params)
  assert any(jax.tree.leaves(moved))


def test_scanned_blocks_take_per_branch_controls():
  # multires20: two blocks per stage, the second scanned, its [k] controls a slice of [k, n].
  model, variables, images, labels = make_net("multires20_k2", **TINY)
  n = model.num_blocks
  exact = analysis.exact_path_gradients(model, variables, images, labels)
  full = loss_grad_at_block_input(model, variables, images, labels)
  tolerances.assert_close(exact.grads.sum(0), full, terms=9 * 4)
  # The paths through one branch: block b, branch j (12 of them), and the path through none.
  routes = np.zeros((2 * n + 1, n), np.int64)
  for i, (b, j) in enumerate(itertools.product(range(n), (1, 2))):
    routes[i + 1, b] = j
  per_route = analysis.single_path_gradients(model, variables, images, labels, routes)
  tolerances.assert_close(per_route[0], exact.grads[0], terms=9 * 4)
  tolerances.assert_close(per_route[1:].sum(0), exact.grads[1], terms=9 * 4)
  # Deleting branch 2 of stage 1's scanned block (block index 1) is zeroing its last conv.
  gate = np.ones((2, n), np.float32)
  gate[1, 1] = 0.0
  ones = jnp.ones((n,))
  apply = jax.jit(functools.partial(model.apply, train=False))
  gated = apply(variables, images, controls=BlockControls(
      gate=ones, branch_grad=ones, skip_grad=ones, branch_gate=jnp.asarray(gate)))
  params = jax.tree.map(lambda a: a, variables["params"])
  conv = params["stage1"]["blocks"]["block"]["branch2"]["conv3"]
  conv["kernel"] = jnp.asarray(conv["kernel"]).at[0].set(0.0)
  hand = apply({**variables, "params": params}, images)
  tolerances.assert_close(gated, hand, terms=9 * 4)
  assert not tolerances.close(gated, apply(variables, images), terms=9 * 4)
