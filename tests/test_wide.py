"""Wide ResNets (Zagoruyko & Komodakis 2016): counts against the official code, the block's
structure, dropout, names and options, and the analyses and stochastic depth on a tiny net."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tolerances
from family_checks import branch_deleted, check_analyses, check_train_steps
from test_analysis import _bn, _conv, forward, make_net
from test_models import count_params

from resnet_jax import analysis
from resnet_jax.models import get_model, list_models
from resnet_jax.models.wide import WideBlock

# ../shared/reference/descendants.md: computed from the official code (no conv biases), which
# reproduces its log's 8,949,210 for WRN-40-4.
WRN_COUNTS = {
    ("wrn40_1", 10): 563_930, ("wrn40_2", 10): 2_243_546, ("wrn40_4", 10): 8_949_210,
    ("wrn16_8", 10): 10_961_370, ("wrn22_8", 10): 17_158_106, ("wrn28_10", 10): 36_479_194,
    ("wrn28_10", 100): 36_536_884, ("wrn28_12", 10): 52_517_850,
}


@pytest.mark.parametrize("name,classes", sorted(WRN_COUNTS))
def test_wrn_param_counts_match_the_official_code(name, classes):
  assert count_params(get_model(name, num_classes=classes)) == WRN_COUNTS[name, classes]


def test_wrn_layout():
  model = get_model("wrn28_10")
  assert model.stage_sizes == (4, 4, 4) and model.widths == (160, 320, 640)
  assert model.stem_features == 16 and model.reorderable
  assert {"wrn16_8", "wrn28_10", "wrn40_4"} <= set(list_models())


def test_projection_takes_the_pre_activated_input_where_the_width_changes():
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
  # All variables ones: BN (eval) is (x - 1) / sqrt(1 + eps) + 1, the 1x1 projection sums the
  # channels.
  pre = jax.nn.relu((x - 1) / np.sqrt(1 + 1e-5) + 1)
  out = branch_deleted(WideBlock(features=5, strides=2), x)
  expected = jnp.broadcast_to(pre[:, ::2, ::2].sum(-1, keepdims=True), (2, 2, 2, 5))
  # BN's few roundings in another order, then a sum of 3 channels.
  tolerances.assert_close(out, expected, terms=8)
  # Same width: the identity of the raw input (negative values kept).
  np.testing.assert_array_equal(branch_deleted(WideBlock(features=3), x), x)


def test_dropout_sits_between_the_two_convolutions():
  block = WideBlock(features=4, dropout=0.5)
  x = jax.random.normal(jax.random.key(0), (2, 4, 4, 4))
  shapes = jax.eval_shape(lambda: block.init(jax.random.key(0), x, None, False))
  variables = jax.tree.map(lambda s: jnp.ones(s.shape, s.dtype), shapes)

  def responses(seed):
    _, state = block.apply(variables, x, None, True, rngs={"dropout": jax.random.key(seed)},
                           mutable=["batch_stats", "intermediates"])
    return state["intermediates"]["response1"][0], state["intermediates"]["response2"][0]
  (a1, a2), (b1, b2) = responses(1), responses(2)
  np.testing.assert_array_equal(a1, b1)  # before the dropout: the BN after conv1
  assert not np.allclose(a2, b2)  # after it: conv2's output
  # At test time (no rngs at all) dropout is off.
  block.apply(variables, x, None, False)


def test_dropout_acts_only_in_training():
  model, variables, images, _ = make_net("wrn10_1", dropout=0.3)

  @functools.partial(jax.jit, static_argnums=1)
  def train_logits(key, rate):
    return get_model("wrn10_1", dropout=rate).apply(variables, images, train=True,
                                                    rngs={"dropout": key},
                                                    mutable=["batch_stats"])[0]
  assert not np.allclose(train_logits(jax.random.key(1), 0.3), train_logits(jax.random.key(2),
                                                                            0.3))
  np.testing.assert_array_equal(train_logits(jax.random.key(1), 0.0),
                                train_logits(jax.random.key(2), 0.0))
  no_dropout = get_model("wrn10_1")
  tolerances.assert_close(forward(model, variables, images),  # the same ops
                          forward(no_dropout, variables, images), terms=1)


def test_all_branches_deleted_is_the_chain_of_projections():
  # wrn10_2: one block per stage, each widens, so each keeps a 1x1 projection of BN-ReLU(x).
  model, variables, images, _ = make_net("wrn10_2")
  p, s = variables["params"], variables["batch_stats"]
  x = _conv(images, p["stem_conv"]["kernel"], 1, 1)
  for stage in (1, 2, 3):
    bp, bs = p[f"stage{stage}"]["block1"], s[f"stage{stage}"]["block1"]
    pre = jax.nn.relu(_bn(x, bp["bn1"], bs["bn1"]))
    x = _conv(pre, bp["conv_proj"]["kernel"], 1 if stage == 1 else 2, 0)
  x = jax.nn.relu(_bn(x, p["final_bn"], s["final_bn"]))
  hand = jnp.mean(x, axis=(1, 2)) @ p["head"]["kernel"] + p["head"]["bias"][None]
  logits = analysis.lesion_logits(model, variables, images, np.zeros((1, 3)))
  # The longest sums: the head's over 128 channels, the 1x1 projections' over at most 64.
  tolerances.assert_close(logits[0], hand, terms=128)


def test_analyses_on_a_tiny_wrn():
  stds = check_analyses("wrn10_1", dropout=0.3)
  # No BN after the stem conv (pre-activation): two responses per block, none for the stem.
  assert list(stds)[:3] == ["stage1_block1_response1", "stage1_block1_response2",
                            "stage2_block1_response1"] and len(stds) == 6


def test_stochastic_depth_and_dropout_train():
  check_train_steps(get_model("wrn10_1", dropout=0.3, stochastic_depth=0.5))


@pytest.mark.parametrize("name,options,pattern", [
    ("wrn15_4", {}, r"6n\+4"), ("wrn28_0", {}, "k must be >= 1"), ("wrn28", {}, "valid names"),
    ("wrn16_4", {"dropout": 1.0}, r"\[0, 1\)"), ("wrn16_4", {"dropout": "0.3"}, "dropout"),
    ("wrn16_4", {"shortcut": "B"}, r"takes \['dropout', 'scan_unroll'"),
])
def test_bad_names_and_options_name_the_choices(name, options, pattern):
  with pytest.raises(ValueError, match=pattern):
    get_model(name, **options)
