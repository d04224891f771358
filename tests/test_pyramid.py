"""PyramidNets (Han et al. 2017): counts against the official code, widths, the unit's structure
(no ReLU after the addition, average-pool and zero-channel shortcut), the unrolled layout, names
and options, and the analyses and stochastic depth on a tiny net."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tolerances
from family_checks import branch_deleted, check_analyses, check_train_steps
from test_analysis import _bn, _conv, make_net
from test_models import count_params

from resnet_jax import analysis, analyze
from resnet_jax.models import get_model, list_models, surgery
from resnet_jax.models.pyramid import PyramidBlock, PyramidBottleneck, unit_widths

# ../shared/reference/descendants.md: computed from the official code; "floor" reproduces the
# README's rounded figures (1.7M, 3.8M, 26.0M).
PYRAMID_COUNTS = {
    ("pyramidnet110_a48", "round"): 1_772_706, ("pyramidnet110_a48", "floor"): 1_732_856,
    ("pyramidnet110_a84", "round"): 3_904_446, ("pyramidnet110_a84", "floor"): 3_855_054,
    ("pyramidnet110_a270", "round"): 28_485_477, ("pyramidnet_mul110_a8", "round"): 3_876_547,
    # The official multiplicative PyramidNet-110 (mulpyramidnet.lua: alpha = 4.75, widths
    # floor(x + 0.5)), the paper's 1.7M.
    ("pyramidnet_mul110_a4.75", "round"): 1_762_206,
    ("pyramidnet_bottleneck272_a200", "round"): 26_210_842,
    ("pyramidnet_bottleneck272_a200", "floor"): 26_046_428,
}


@pytest.mark.parametrize("name,rounding", sorted(PYRAMID_COUNTS))
def test_pyramid_param_counts_match_the_official_code(name, rounding):
  # 8x8 images: the count does not depend on the size, tracing the 54-90 units does.
  model = get_model(name, width_rounding=rounding)
  assert count_params(model, (1, 8, 8, 3)) == PYRAMID_COUNTS[name, rounding]


def test_widths_grow_by_alpha_over_all_units():
  additive = unit_widths(54, 48)
  assert additive[0] == 17 and additive[-1] == 64 and len(additive) == 54
  assert all(b - a in (0, 1, 2) for a, b in zip(additive, additive[1:]))
  assert unit_widths(54, 8, "multiplicative")[-1] == 128  # 16 alpha
  # floor(x + 0.5) vs floor(x): 16 + 48/54 = 16.89 -> 17 or 16.
  assert unit_widths(54, 48, rounding="floor")[0] == 16
  model = get_model("pyramidnet110_a48")
  assert model.unit_widths[0][:3] == (17, 18, 19) and model.widths[-1] == 64
  assert not model.reorderable and model.stem_features == 16
  assert {"pyramidnet110_a48", "pyramidnet_mul110_a4.75", "pyramidnet_mul110_a8",
          "pyramidnet_bottleneck272_a200"} <= set(list_models())
  # A fractional alpha: the last unit is 16 * 4.75 = 76 wide, as the official code's.
  assert unit_widths(54, 4.75, "multiplicative")[-1] == 76
  assert get_model("pyramidnet_mul110_a4.75").widths[-1] == 76
  assert get_model("pyramidnet8_a1.5").unit_widths == ((17,), (17,), (18,))  # 16.5, 17, 17.5


def test_unit_adds_an_average_pooled_zero_padded_input_and_no_relu():
  x = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
  out = branch_deleted(PyramidBlock(features=7, strides=2), x)
  assert out.shape == (2, 3, 3, 7)
  # Means of at most 4 values.
  tolerances.assert_close(out[:, 0, 0, :3], x[:, :2, :2].mean((1, 2)), terms=4)
  # An odd size pools the last row and column alone (ceil mode), as the strided conv covers it.
  tolerances.assert_close(out[:, 2, 2, :3], x[:, 4, 4], terms=4)
  np.testing.assert_array_equal(out[..., 3:], 0.0)
  assert np.any(out < 0)  # no ReLU after the addition
  out = branch_deleted(PyramidBottleneck(features=2), x)  # output 4 * 2 channels, no stride
  np.testing.assert_array_equal(out[..., :3], x)
  np.testing.assert_array_equal(out[..., 3:], 0.0)


def test_all_branches_deleted_is_the_stem_pooled_and_padded():
  model, variables, images, _ = make_net("pyramidnet8_a12")
  p, s = variables["params"], variables["batch_stats"]
  x = _bn(_conv(images, p["stem_conv"]["kernel"], 1, 1), p["stem_bn"], s["stem_bn"])  # no ReLU
  for stage, width in zip((1, 2, 3), (20, 24, 28)):
    if stage > 1:
      n, h, w, c = x.shape
      x = x.reshape(n, h // 2, 2, w // 2, 2, c).mean((2, 4))
    x = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, width - x.shape[-1])))
  x = jax.nn.relu(_bn(x, p["final_bn"], s["final_bn"]))
  hand = jnp.mean(x, axis=(1, 2)) @ p["head"]["kernel"] + p["head"]["bias"][None]
  logits = analysis.lesion_logits(model, variables, images, np.zeros((1, 3)))
  # The longest sums: the head's over 28 channels, the stem conv's over 9 * 3 inputs.
  tolerances.assert_close(logits[0], hand, terms=28)


def test_units_are_unrolled_one_name_each():
  model, variables, _, _ = make_net("pyramidnet14_a6")
  stage = variables["params"]["stage2"]
  assert sorted(stage) == ["block1", "block2"] and model.unit_widths == ((17, 18), (19, 20),
                                                                         (21, 22))
  assert stage["block2"]["conv2"]["kernel"].shape == (3, 3, 20, 20)


@pytest.mark.parametrize("name", ["pyramidnet8_a12", "pyramidnet_bottleneck11_a12"])
def test_analyses_on_a_tiny_pyramidnet(name):
  stds = check_analyses(name)
  per_block = 2 if name == "pyramidnet8_a12" else 1  # one response per 3x3 conv
  assert list(stds)[:2] == ["stem", "stage1_block1_response1"]
  assert len(stds) == 1 + 3 * per_block


def test_responses_of_unrolled_units_in_network_order():
  model, variables, images, _ = make_net("pyramidnet14_a6")
  _, state = jax.jit(lambda v, x: model.apply(v, x, mutable=["intermediates"]))(variables, images)
  names = [n for n, _ in surgery.responses_in_order(state["intermediates"])]
  assert names[:5] == ["stem", "stage1_block1_response1", "stage1_block1_response2",
                       "stage1_block2_response1", "stage1_block2_response2"]
  assert names[-1] == "stage3_block2_response2" and len(names) == 1 + 2 * 6


def test_reordering_refuses_and_analyze_skips_it():
  model, variables, images, labels = make_net("pyramidnet14_a6")
  with pytest.raises(ValueError, match="interchangeable.*PyramidNet"):
    analysis.lesion_reorder(model, variables, images, labels, [1], 2, jax.random.key(0))
  settings = analyze.resolve_settings(None)
  settings.lesion_samples = 2
  out = analyze.compute(model, variables, images, labels, "lesion", settings, progress=False)
  assert len(out["lesion_single"]) == 6 and "lesion_reorder" not in out


@pytest.mark.slow  # a real train step; SD itself: test_stochastic_depth
def test_stochastic_depth_trains():
  check_train_steps(get_model("pyramidnet8_a12", stochastic_depth=0.5))


@pytest.mark.parametrize("name,options,pattern", [
    ("pyramidnet9_a48", {}, r"6n\+2"), ("pyramidnet_bottleneck111_a48", {}, r"9n\+2"),
    ("pyramidnet110_a0", {}, "alpha"), ("pyramidnet110", {}, "valid names"),
    ("pyramidnet_mul110_a0.5", {}, "alpha"), ("pyramidnet_mul110_a4.", {}, "valid names"),
    ("pyramidnet110_a48", {"width_rounding": "ceil"}, "'round', 'floor'"),
    ("pyramidnet110_a48", {"widths": (8, 16, 32)}, r"takes \['width_rounding'"),
])
def test_bad_names_and_options_name_the_choices(name, options, pattern):
  with pytest.raises(ValueError, match=pattern):
    get_model(name, **options)
