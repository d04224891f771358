"""DenseNet and DenseNet-BC (Huang et al. 2017): parameter counts of the paper's nets, structure,
the dense join under lesions and routes, the memory-efficient layers, options, one train step.

Big nets are counted through `jax.eval_shape`; everything that runs uses 8x8 images and nets of
two layers per dense block.
"""
import functools
import itertools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from resnet_jax import analysis, configs, optim, steps
from resnet_jax.models import densenet, get_model, layers, list_models
from resnet_jax.train_state import create_train_state

# Huang et al. 2017 Table 2 nets; counts of the authors' Torch code (liuzhuang13/DenseNet) with a
# 16-channel stem for the plain nets (2k for BC).
COUNTS = {
    ("densenet40_k12", 10): 1_019_722, ("densenet40_k12", 100): 1_060_132,
    ("densenet100_k12", 10): 6_979_642, ("densenet100_k24", 10): 27_249_082,
    ("densenet_bc100_k12", 10): 769_162, ("densenet_bc100_k12", 100): 800_032,
    ("densenet_bc250_k24", 10): 15_324_406, ("densenet_bc190_k40", 10): 25_624_430,
}


def count(model, image_size=32):
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, image_size,
                                                                    image_size, 3)))
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))


@pytest.mark.parametrize("name,num_classes", list(COUNTS))
def test_parameter_counts_of_the_paper(name, num_classes):
  assert count(get_model(name, num_classes=num_classes)) == COUNTS[name, num_classes]


def test_presets_listed_and_options_default_by_kind():
  assert {n for n, _ in COUNTS} <= set(list_models())
  assert not get_model("densenet40_k12").memory_efficient
  assert get_model("densenet_bc100_k12").memory_efficient
  assert not get_model("densenet_bc100_k12", memory_efficient=False).memory_efficient


def test_structure_stem_without_bn_and_transition_widths():
  model = get_model("densenet_bc100_k12")
  assert model.stage_sizes == (16, 16, 16) and model.stem_width == 24
  # 24 + 16 * 12 = 216 -> 108; 108 + 192 = 300 -> 150 (floor(theta * m), theta = 0.5).
  assert model.transition_widths() == (108, 150)
  assert get_model("densenet_bc28_k5").transition_widths() == (15, 17)  # 30 -> 15, 35 -> 17
  assert get_model("densenet40_k12").transition_widths() == (160, 304)  # theta = 1
  shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
  assert "stem_bn" not in shapes and shapes["stem_conv"]["kernel"].shape == (3, 3, 3, 24)
  assert shapes["transition1"]["conv"]["kernel"].shape == (1, 1, 216, 108)
  layer = shapes["stage2"]["block3"]
  assert layer["conv1"]["kernel"].shape == (1, 1, 108 + 2 * 12, 48)
  assert layer["conv2"]["kernel"].shape == (3, 3, 48, 12)
  assert shapes["final_bn"]["scale"].shape == (150 + 192,)
  assert model.num_blocks == 48 and model.block_names()[16] == "stage2_block1"
  assert densenet.num_paths(model) == 2 ** 48 == 2 ** analysis.log2_num_paths(model)


@pytest.mark.parametrize("name,message", [
    ("densenet41_k12", "3l\\+4"), ("densenet_bc42_k12", "6l\\+4"), ("densenet40_k0", "growth"),
    ("densenet40", "valid names"), ("densenet_bc_k12", "valid names")])
def test_bad_names_raise(name, message):
  with pytest.raises(ValueError, match=message):
    get_model(name)


@pytest.mark.parametrize("options,message", [
    ({"dropout": 1.0}, r"dropout must be a rate in \[0, 1\)"), ({"dropout": "0.2"}, "dropout"),
    ({"memory_efficient": 1}, "True, False or None"),
    ({"widths": (16, 32, 64)}, r"takes \['dropout', 'memory_efficient'"),
    ({"stochastic_depth": 0.5}, "residual blocks")])
def test_bad_options_raise(options, message):
  with pytest.raises(ValueError, match=message):
    get_model("densenet_bc16_k4", **options)


# ------------------------------------------------------------------------------- tiny nets

def tiny(name="densenet_bc16_k4", batch=4, **options):
  model = get_model(name, **options)
  images = jax.random.normal(jax.random.key(1), (batch, 8, 8, 3))
  variables = model.init(jax.random.key(0), images)
  # Non-trivial running statistics, so that eval-mode BN is not the identity.
  variables = {**variables, "batch_stats": jax.tree.map(
      lambda a: a + 0.3 * jax.random.uniform(jax.random.key(2), a.shape), variables["batch_stats"])}
  return model, variables, images, jnp.arange(batch) % 10


def test_lesion_zeroes_the_new_channels_of_one_layer():
  model, variables, images, labels = tiny()
  n = model.num_blocks
  gates = np.ones((1, n), np.float32)
  gates[0, 1] = 0.0  # stage1_block2
  lesioned = analysis.lesion_logits(model, variables, images, gates)[0]

  # By hand: each part applied on its own variables; block2 of stage 1 adds zeros.
  def part(module, *path):
    sub = lambda tree: functools.reduce(lambda t, k: t.get(k, {}), path, tree)
    return functools.partial(module.apply, {c: sub(t) for c, t in variables.items()})

  layer = functools.partial(densenet.DenseLayer, growth=4, bottleneck=True)
  stem = part(layers.conv3x3(8), "stem_conv")
  features = (stem(images),)
  features = part(layer(), "stage1", "block1")(features, None, False)
  features = part(layer(), "stage1", "block2")(features, None, False)
  assert features[-1].shape == (4, 8, 8, 4) and np.abs(features[-1]).max() > 0
  features = (*features[:-1], jnp.zeros_like(features[-1]))
  for s, width in zip((1, 2), model.transition_widths()):
    features = part(densenet.Transition(width), f"transition{s}")(features, False)
    for b in (1, 2):
      features = part(layer(), f"stage{s + 1}", f"block{b}")(features, None, False)
  x = jax.nn.relu(part(layers.batch_norm(False, "final_bn"), "final_bn")(
      jnp.concatenate(features, -1)))
  by_hand = part(nn.Dense(10), "head")(jnp.mean(x, axis=(1, 2)))
  np.testing.assert_allclose(lesioned, by_hand, atol=1e-5)
  intact = analysis.lesion_logits(model, variables, images, np.ones((1, n), np.float32))[0]
  assert np.abs(intact - lesioned).max() > 1e-3
  errors = analysis.lesion_single(model, variables, images, labels)
  assert errors.shape == (n,)


def test_exact_path_gradients_through_dense_joins_match_every_route():
  model, variables, images, labels = tiny("densenet7_k4")
  n = model.num_blocks
  exact = analysis.exact_path_gradients(model, variables, images, labels)
  routes = np.array(list(itertools.product([0, 1], repeat=n)))
  per_route = analysis.single_path_gradients(model, variables, images, labels, routes)
  brute = np.stack([per_route[routes.sum(1) == k].sum(0) for k in range(n + 1)])
  np.testing.assert_allclose(exact.grads, brute, atol=1e-5 * np.abs(brute).max())
  shape = analysis.block_input_shape(model, variables, images)

  def loss(delta):
    logits = model.apply({**variables, "perturbations": {"block_input": delta}}, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  full = jax.grad(loss)(jnp.zeros(shape))
  np.testing.assert_allclose(exact.grads.sum(0), full, atol=1e-5 * np.abs(full).max())


def test_dense_layers_cannot_be_reordered():
  model, variables, images, labels = tiny()
  with pytest.raises(ValueError, match="no two blocks of this DenseNet can swap"):
    analysis.lesion_reorder(model, variables, images, labels, [1], 2, jax.random.key(0))


def test_responses_of_every_conv_in_network_order():
  model, variables, images, _ = tiny()
  stds = analysis.response_std(model, variables, images)
  names = list(stds)
  assert names[:4] == ["stage1_block1_response1", "stage1_block1_response2",
                       "stage1_block2_response1", "stage1_block2_response2"]
  assert len(names) == 2 * model.num_blocks


def test_memory_efficient_gradients_equal_the_plain_ones(name="densenet_bc16_k4"):
  naive = get_model(name, memory_efficient=False)
  efficient = get_model(name, memory_efficient=True)
  images = jax.random.normal(jax.random.key(1), (4, 8, 8, 3))
  variables = naive.init(jax.random.key(0), images)
  assert jax.tree.structure(variables) == jax.tree.structure(
      jax.eval_shape(efficient.init, jax.random.key(0), images))

  def loss(model, params):
    logits, state = model.apply({**variables, "params": params}, images, train=True,
                                mutable=["batch_stats"])
    return jnp.mean(jax.nn.log_softmax(logits)[:, 0]), state

  (a, stats_a), grads_a = jax.value_and_grad(functools.partial(loss, naive), has_aux=True)(
      variables["params"])
  (b, stats_b), grads_b = jax.value_and_grad(functools.partial(loss, efficient), has_aux=True)(
      variables["params"])
  np.testing.assert_allclose(a, b, rtol=1e-6)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), grads_a, grads_b)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, atol=1e-6), stats_a, stats_b)


@pytest.mark.slow  # a real train step; the dropout rng is covered by test_wide
def test_train_step_with_dropout():
  config = configs.base_config()
  config.update(dict(model="densenet_bc16_k4", batch_size=8, num_steps=4, warmup="none"))
  model = get_model(config.model, dropout=0.2)
  tx = optim.make_optimizer(config)
  step = jax.jit(functools.partial(
      steps.train_step, model=model, tx=tx, learning_rate_fn=optim.learning_rate_schedule(config),
      batch_size=8, augment_pad=1, augment_flip=False))
  state = create_train_state(model, tx, jax.random.key(0), (8, 8, 3))
  data = {"image": jax.random.normal(jax.random.key(1), (16, 8, 8, 3)),
          "label": jnp.arange(16, dtype=jnp.int32) % 10}
  new, metrics = step(state, data, jax.random.key(2), jax.random.key(3))
  assert np.isfinite(float(metrics["loss"])) and int(new.step) == 1
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), state.params, new.params)
  assert max(jax.tree.leaves(moved)) > 0
