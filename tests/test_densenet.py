"""DenseNet and DenseNet-BC (Huang et al. 2017): parameter counts of the paper's nets, structure,
the dense join under lesions and routes, the memory-efficient layers, options, one train step.

Big nets are counted through `jax.eval_shape`; everything that runs uses 8x8 images and nets of
two layers per dense block.
"""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tolerances

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
  # Trained-like BatchNorms: running means of both signs, variances off 1 and biases off 0, so
  # that eval-mode BN is not the identity and maps a zero channel to no zero after its ReLU.
  noise = lambda tree, size, seed: jax.tree.map(
      lambda a: a + size * jax.random.normal(jax.random.key(seed), a.shape), tree)
  stats = {**variables["batch_stats"]}
  stats = jax.tree_util.tree_map_with_path(
      lambda path, a: a + 0.3 * (jax.random.uniform(jax.random.key(2), a.shape)
                                 if path[-1].key == "var" else
                                 jax.random.normal(jax.random.key(3), a.shape)), stats)
  params = jax.tree_util.tree_map_with_path(
      lambda path, a: noise(a, 0.3, 4) if path[-1].key == "bias" else a, variables["params"])
  variables = {"params": params, "batch_stats": stats}
  return model, variables, images, jnp.arange(batch) % 10


def _by_hand(variables, images, deleted):
  """densenet_bc16_k4 in eval mode written out from its variables, without the dense layer
  `deleted` = (stage, layer), from 1: its channels reach no reader (the later layers of its block,
  the transition), whose first BN and conv lose those rows."""
  params, stats = variables["params"], variables["batch_stats"]
  get = lambda tree, *path: functools.reduce(lambda t, k: t[k], path, tree)

  def bn_relu(x, path, keep):
    p, s = get(params, *path), get(stats, *path)
    row = lambda a: a[keep].reshape(1, 1, 1, -1)
    return jax.nn.relu((x - row(s["mean"])) / jnp.sqrt(row(s["var"]) + layers.BN_EPSILON)
                       * row(p["scale"]) + row(p["bias"]))

  def conv(x, path, keep=slice(None)):
    return jax.lax.conv_general_dilated(x, get(params, *path, "kernel")[:, :, keep, :], (1, 1),
                                        "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))

  def read(maps, path, bn, conv_name):
    """BN-ReLU-conv of the maps that exist (None: deleted), on the rows of their channels."""
    offsets = np.cumsum([0] + [4 if m is None else m.shape[-1] for m in maps])  # k = 4
    keep = np.concatenate([np.arange(a, b) for m, a, b in zip(maps, offsets, offsets[1:])
                           if m is not None])
    x = jnp.concatenate([m for m in maps if m is not None], -1)
    return conv(bn_relu(x, (*path, bn), keep), (*path, conv_name), keep)

  maps = [conv(images, ("stem_conv",))]
  for s in (1, 2, 3):
    for b in (1, 2):
      path = (f"stage{s}", f"block{b}")
      y = read(maps, path, "bn1", "conv1")  # BC: 1x1 to 4k, then 3x3 to k
      y = conv(bn_relu(y, (*path, "bn2"), slice(None)), (*path, "conv2"))
      maps.append(None if (s, b) == deleted else y)
    if s < 3:
      y = read(maps, (f"transition{s}",), "bn", "conv")
      n, h, w, c = y.shape
      maps = [y.reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))]
  x = bn_relu(jnp.concatenate(maps, -1), ("final_bn",), slice(None)).mean((1, 2))
  return x @ params["head"]["kernel"] + params["head"]["bias"][None]


def test_a_lesion_deletes_the_layer_as_if_its_channels_were_sliced_out_of_every_reader():
  model, variables, images, labels = tiny()
  n = model.num_blocks
  gates = np.ones((1, n), np.float32)
  gates[0, 0] = 0.0  # stage1_block1, read by stage1_block2 and transition1
  lesioned = analysis.lesion_logits(model, variables, images, gates)[0]
  intact = analysis.lesion_logits(model, variables, images, np.ones((1, n), np.float32))[0]
  # The longest sums: the 3x3 convs over 4k = 16 channels.
  tolerances.assert_close(intact, _by_hand(variables, images, None), terms=9 * 16)
  tolerances.assert_close(lesioned, _by_hand(variables, images, (1, 1)), terms=9 * 16)
  assert not tolerances.close(lesioned, intact, terms=9 * 16)
  errors = analysis.lesion_single(model, variables, images, labels)
  assert errors.shape == (n,)


def test_exact_path_gradients_through_dense_joins_match_every_route():
  model, variables, images, labels = tiny("densenet7_k4")
  n = model.num_blocks
  exact = analysis.exact_path_gradients(model, variables, images, labels)
  routes = np.array(list(itertools.product([0, 1], repeat=n)))
  per_route = analysis.single_path_gradients(model, variables, images, labels, routes)
  brute = np.stack([per_route[routes.sum(1) == k].sum(0) for k in range(n + 1)])
  # The longest sums: the 3x3 convs over at most 24 channels, and the 2^3 routes.
  tolerances.assert_close(exact.grads, brute, terms=9 * 24)
  shape = analysis.block_input_shape(model, variables, images)

  def loss(delta):
    logits = model.apply({**variables, "perturbations": {"block_input": delta}}, images)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  full = jax.grad(loss)(jnp.zeros(shape))
  tolerances.assert_close(exact.grads.sum(0), full, terms=9 * 24)


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
  # Rematerialised or kept: the longest sums are the BN statistics and kernel gradients over the
  # 4 * 8 * 8 positions of the batch.
  tolerances.assert_close((a, grads_a, stats_a), (b, grads_b, stats_b), terms=4 * 8 * 8)


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
