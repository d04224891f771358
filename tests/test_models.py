"""Model zoo: parameter counts against the papers, shapes, shortcuts, controls, bad input."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tolerances

from resnet_jax.models import BlockControls, get_model, layers, list_models, surgery

# ../shared/reference/papers.md §1.1, 1.2, 1.11: exact counts (conv weights without bias, BN
# gamma/beta, dense head), which the papers round to 0.27M ... 19.4M.
CIFAR_COUNTS = {
    "resnet20": 269_722, "resnet32": 464_154, "resnet44": 658_586, "resnet56": 853_018,
    "resnet110": 1_727_962, "resnet1202": 19_421_274, "preact_resnet164": 1_703_258,
}
IMAGENET_COUNTS = {
    "resnet18_imagenet": 11_689_512, "resnet34_imagenet": 21_797_672,
    "resnet50_imagenet": 25_557_032, "resnet101_imagenet": 44_549_160,
    "resnet152_imagenet": 60_192_808,
}


def count_params(model, image_shape=(1, 32, 32, 3)):
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros(image_shape)))
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"]))


def tiny_variables(model, shape=(2, 8, 8, 3)):
  images = jax.random.normal(jax.random.key(1), shape)
  return model.init(jax.random.key(0), images), images


@pytest.mark.parametrize("name,expected", sorted(CIFAR_COUNTS.items()))
def test_cifar_param_counts_match_papers(name, expected):
  assert count_params(get_model(name)) == expected


@pytest.mark.parametrize("name,expected", sorted(IMAGENET_COUNTS.items()))
def test_imagenet_param_counts_match_papers(name, expected):
  assert count_params(get_model(name, num_classes=1000), (1, 64, 64, 3)) == expected


def test_preact1001_differs_from_papers_rounded_figure():
  # He et al. 2016 quote 10.2M; exact counting with 1x1 projections at the three stage entries
  # gives 10,327,706 (third-party ports report 10.3M too). The gap is the paper's rounding or
  # counting, not an architecture difference we can name, so we pin our exact count.
  assert count_params(get_model("preact_resnet1001")) == 10_327_706


def test_plain_twin_has_exactly_the_resnet_parameters():
  init = lambda name: get_model(name).init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))
  plain, res = jax.eval_shape(lambda: init("plain20")), jax.eval_shape(lambda: init("resnet20"))
  chex.assert_trees_all_equal_shapes(plain["params"], res["params"])


def test_shortcut_options_add_projections():
  a, b, c = (count_params(get_model("resnet20", shortcut=s)) for s in "ABC")
  assert a == 269_722
  # B: 1x1 conv + BN at the two stage entries (16->32, 32->64).
  assert b == a + (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
  # C: a projection in every block: 3 at 16 channels, entries as B, 2 more at 32 and 64.
  assert c == b + 3 * (16 * 16 + 32) + 2 * (32 * 32 + 64) + 2 * (64 * 64 + 128)


def test_preact_names_mean_the_bottleneck_nets():
  # He et al. 2016 call the bottleneck nets of 164 and 1001 layers "ResNet-164/1001".
  assert get_model("preact_resnet164") == get_model("preact_bottleneck164")
  assert get_model("preact_resnet1001").num_blocks == 333


@pytest.mark.parametrize("name", ["resnet8", "plain8", "preact_resnet8", "preact_bottleneck11",
                                  "resnet14"])
def test_forward_shapes_train_and_eval(name):
  model = get_model(name, num_classes=7)
  variables, images = tiny_variables(model)
  logits = model.apply(variables, images, train=False)
  chex.assert_shape(logits, (2, 7))
  chex.assert_tree_all_finite(logits)
  logits, state = model.apply(variables, images, train=True, mutable=["batch_stats"])
  chex.assert_shape(logits, (2, 7))
  chex.assert_trees_all_equal_shapes(state["batch_stats"], variables["batch_stats"])
  # Training mode moves the running statistics (momentum 0.9, not Flax's slower 0.99 default).
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: jnp.abs(a - b).max(), state["batch_stats"],
                                       variables["batch_stats"]))
  assert max(moved) > 0


def test_apply_at_another_batch_size_than_init():
  model = get_model("resnet8")
  variables, _ = tiny_variables(model)
  chex.assert_shape(model.apply(variables, jnp.zeros((5, 12, 12, 3))), (5, 10))


def test_imagenet_forward_small():
  model = get_model("resnet18_imagenet", num_classes=5, widths=(8, 8, 8, 8))
  variables, images = tiny_variables(model, (1, 32, 32, 3))
  logits = model.apply(variables, images)
  chex.assert_shape(logits, (1, 5))
  chex.assert_tree_all_finite(logits)


def test_stride_in_3x3_moves_the_stride():
  images = jnp.zeros((1, 32, 32, 3))

  def stage2_block1(model):
    def run():
      variables = model.init(jax.random.key(0), images)
      return model.apply(variables, images, capture_intermediates=True,
                         mutable=["intermediates"])[1]["intermediates"]["stage2"]["block1"]
    return jax.eval_shape(run)  # shapes only: nothing to compile

  kwargs = dict(num_classes=5, widths=(8, 8, 8, 8))
  v1 = stage2_block1(get_model("resnet50_imagenet", **kwargs))
  v15 = stage2_block1(get_model("resnet50_imagenet", stride_in_3x3=True, **kwargs))
  # v1 halves the map in conv1 (1x1), v1.5 only in conv2 (3x3); the output is the same size.
  assert v1["conv1"]["__call__"][0].shape[1] == 4
  assert v15["conv1"]["__call__"][0].shape[1] == 8
  assert v15["conv2"]["__call__"][0].shape[1] == 4
  assert v1["__call__"][0].shape == v15["__call__"][0].shape


def test_option_a_shortcut_pads_zeros_and_subsamples():
  x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
  y = layers.pad_shortcut(x, 5, 2)
  chex.assert_shape(y, (2, 2, 2, 5))
  np.testing.assert_array_equal(y[..., :3], x[:, ::2, ::2, :])
  np.testing.assert_array_equal(y[..., 3:], 0)


def test_block_names_and_counts():
  model = get_model("resnet20")
  assert model.num_blocks == 9
  assert model.block_names()[:4] == ("stage1_block1", "stage1_block2", "stage1_block3",
                                     "stage2_block1")
  assert model.stage_sizes == (3, 3, 3)
  assert get_model("resnet34_imagenet").stage_sizes == (3, 4, 6, 3)
  assert get_model("resnet152_imagenet").num_blocks == 50


@pytest.mark.parametrize("name,shape", [("resnet8", (1, 8, 8, 3)),
                                        ("preact_bottleneck11", (1, 8, 8, 3)),
                                        ("resnet18_imagenet", (1, 32, 32, 3))])
def test_downsampling_blocks_are_where_the_resolution_halves(name, shape):
  model = get_model(name)
  variables, images = tiny_variables(model, shape)
  _, state = model.apply(variables, images, mutable=["intermediates"])
  height = {}  # block name -> height of its last recorded response
  for layer, y in surgery.responses_in_order(state["intermediates"]):
    height[layer.rsplit("_", 1)[0]] = y.shape[1]
  heights = [height[b] for b in model.block_names()]
  halved = tuple(i for i in range(1, len(heights)) if heights[i] == heights[i - 1] // 2)
  assert surgery.downsampling_blocks(model) == halved
  assert len(halved) == len(model.stage_sizes) - 1


def test_gate_zero_deletes_branch_and_default_controls_change_nothing():
  model = get_model("resnet20")
  variables, images = tiny_variables(model)
  plain_call = model.apply(variables, images)
  ones = BlockControls.default(model.num_blocks)
  np.testing.assert_array_equal(model.apply(variables, images, controls=ones), plain_call)
  gate = ones.gate.at[2].set(0.0)
  lesioned = model.apply(variables, images, controls=ones.replace(gate=gate))
  assert not np.allclose(lesioned, plain_call)
  # Deleting a branch is the same as zeroing its last BN's scale and bias (branch output 0).
  params = jax.tree.map(lambda a: a, variables["params"])
  bn2 = params["stage1"]["blocks"]["block"]["bn2"]
  bn2["scale"] = bn2["scale"].at[1].set(0.0)   # scanned index 1 = stage1_block3 = block 2
  bn2["bias"] = bn2["bias"].at[1].set(0.0)
  by_hand = model.apply({**variables, "params": params}, images)
  # Both add an exact zero to the shortcut: equal to the rounding of the largest logit.
  tolerances.assert_close(lesioned, by_hand, terms=1)


def test_route_controls_keep_forward_values():
  model = get_model("preact_resnet14")
  variables, images = tiny_variables(model)
  route = BlockControls.route(jnp.array([1, 0, 1, 0, 0, 1.0]))
  # Routes scale only cotangents: the forward ops are the same.
  tolerances.assert_close(model.apply(variables, images, controls=route),
                          model.apply(variables, images), terms=1)


def test_route_controls_cut_gradients():
  model = get_model("resnet14")
  variables, images = tiny_variables(model)

  def loss(params, controls):
    return model.apply({**variables, "params": params}, images, controls=controls).sum()

  def block_kernel_grads(grads):
    return [float(jnp.abs(g).max()) for path, g in jax.tree_util.tree_leaves_with_path(grads)
            if "stage" in jax.tree_util.keystr(path) and "kernel" in jax.tree_util.keystr(path)]

  # The all-skip route is the path of length 0: the gradient reaches the stem through the skips
  # alone, and none enters any residual branch.
  grads = jax.grad(loss)(variables["params"], BlockControls.route(jnp.zeros(6)))
  assert float(jnp.abs(grads["stem_conv"]["kernel"]).max()) > 0.0
  assert max(block_kernel_grads(grads)) == 0.0
  grads = jax.grad(loss)(variables["params"], BlockControls.default(6))
  assert min(block_kernel_grads(grads)) > 0.0


def test_controls_compile_once_for_different_gates():
  model = get_model("resnet14")
  variables, images = tiny_variables(model)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def forward(gate):
    controls = BlockControls.default(6).replace(gate=gate)
    return model.apply(variables, images, controls=controls)

  a = forward(jnp.ones(6))
  b = forward(jnp.array([1, 0, 1, 1, 0, 1.0]))
  assert not np.allclose(a, b)


def test_permute_stage_blocks_reorders_scanned_blocks():
  model = get_model("resnet20")
  variables, images = tiny_variables(model)
  identity = surgery.permute_stage_blocks(variables, 2, jnp.array([0, 1]))
  np.testing.assert_array_equal(model.apply(identity, images), model.apply(variables, images))
  swapped = surgery.permute_stage_blocks(variables, 2, jnp.array([1, 0]))
  kernel = variables["params"]["stage2"]["blocks"]["block"]["conv1"]["kernel"]
  np.testing.assert_array_equal(swapped["params"]["stage2"]["blocks"]["block"]["conv1"]["kernel"],
                                kernel[::-1])
  assert not np.allclose(model.apply(swapped, images), model.apply(variables, images))


def test_responses_in_layer_order():
  model = get_model("resnet20")
  variables, images = tiny_variables(model)
  _, state = model.apply(variables, images, mutable=["intermediates"])
  names = [n for n, _ in surgery.responses_in_order(state["intermediates"])]
  assert len(names) == 1 + 2 * 9  # stem + two 3x3 convs per block: 19 of ResNet-20's 3x3 convs
  assert names[:4] == ["stem", "stage1_block1_response1", "stage1_block1_response2",
                       "stage1_block2_response1"]
  assert names[-1] == "stage3_block3_response2"
  # The default call records nothing.
  assert "intermediates" not in model.init(jax.random.key(0), images)


def test_list_models_all_build():
  for name in list_models():
    assert get_model(name).num_blocks >= 1


@pytest.mark.parametrize("name,pattern", [
    ("resnet21", "6n\\+2"), ("resnet1", "6n\\+2"), ("preact_bottleneck21", "9n\\+2"),
    ("resnet", "valid names"), ("vgg16", "valid names"), ("resnet19_imagenet", "18, 34"),
    ("plain50_imagenet", "18, 34"),
])
def test_bad_names_raise_with_valid_choices(name, pattern):
  with pytest.raises(ValueError, match=pattern):
    get_model(name)


def test_bad_overrides_raise():
  with pytest.raises(ValueError, match="'A', 'B', 'C'"):
    get_model("resnet20", shortcut="D")
  with pytest.raises(ValueError, match="num_classes"):
    get_model("resnet20", num_classes=0)
  with pytest.raises(ValueError, match="shortcut"):
    get_model("plain20", shortcut="B")  # a plain net has no shortcut to choose
  with pytest.raises(ValueError, match="stride_in_3x3"):
    get_model("resnet20", stride_in_3x3=True)


@pytest.mark.parametrize("widths", [(16, 32), (16, 32, 64, 128), (0, 32, 64), (16.0, 32, 64)])
def test_widths_must_be_one_positive_integer_per_stage(widths):
  # A 2-stage width list used to build a 2-stage net that still reported 3 stages of blocks.
  with pytest.raises(ValueError, match="one per stage"):
    get_model("resnet8", widths=widths)


def test_models_describe_themselves_without_their_block_class():
  assert get_model("resnet20").is_residual and not get_model("plain20").is_residual
  assert get_model("preact_bottleneck11").is_residual
  assert not get_model("plain18_imagenet").is_residual
  assert get_model("resnet50_imagenet").stage_sizes == (3, 4, 6, 3)


def test_same_name_and_options_give_equal_models():
  # Analyses jit with the model as a static argument: equal models share one compilation.
  assert get_model("resnet20", shortcut="B") == get_model("resnet20", shortcut="B")
  assert hash(get_model("resnet20")) == hash(get_model("resnet20"))
  assert get_model("resnet20", shortcut="B") != get_model("resnet20")


def test_integer_images_are_refused():
  # int32 pixels would run (convolutions promote them) on a scale the nets never trained on.
  model = get_model("resnet8")
  variables, _ = tiny_variables(model)
  with pytest.raises(ValueError, match="floating point"):
    model.apply(variables, jnp.zeros((2, 8, 8, 3), jnp.int32))


def test_preact_bottleneck_can_stride_the_first_1x1_as_the_authors_code():
  images = jnp.zeros((1, 8, 8, 3))

  def stage2_block1(**options):
    model = get_model("preact_bottleneck11", **options)
    def run():
      variables = model.init(jax.random.key(0), images)
      return model.apply(variables, images, capture_intermediates=True,
                         mutable=["intermediates"])[1]["intermediates"]["stage2"]["block1"]
    return jax.eval_shape(run), count_params(model, images.shape)

  (default, n_default), (authors, n_authors) = stage2_block1(), stage2_block1(stride_in_3x3=False)
  assert default["conv1"]["__call__"][0].shape[1] == 8  # fb.resnet.torch: the 3x3 strides
  assert authors["conv1"]["__call__"][0].shape[1] == 4  # resnet-pre-act.lua: the first 1x1
  assert authors["__call__"][0].shape == default["__call__"][0].shape and n_default == n_authors


def test_bad_image_rank_raises():
  model = get_model("resnet8")
  with pytest.raises(ValueError, match="rank 4"):
    model.init(jax.random.key(0), jnp.zeros((8, 8, 3)))


def test_bad_control_length_raises():
  model = get_model("resnet8")
  variables, images = tiny_variables(model)
  with pytest.raises(ValueError, match="controls are for 5 blocks"):
    model.apply(variables, images, controls=BlockControls.default(5))


def test_loop_and_unrolled_stages_compute_the_same_function():
  # Deep stages run as a loop, shallow ones unrolled (stages.FULL_UNROLL_MAX); same parameters.
  unrolled = get_model("resnet20")
  looped = get_model("resnet20", scan_unroll=1)
  variables, images = tiny_variables(unrolled)
  # Two programs: the longest sums are the 3x3 convs over 9 * 64 inputs (kernel gradients sum
  # over 2 * 8 * 8 positions).
  tolerances.assert_close(looped.apply(variables, images), unrolled.apply(variables, images),
                          terms=9 * 64)
  grad = lambda m: jax.grad(lambda p: m.apply({**variables, "params": p}, images).sum())(
      variables["params"])
  tolerances.assert_close(grad(looped), grad(unrolled), terms=9 * 64)


def test_one_block_stages_run_without_a_loop():
  # ResNet-14 scans one block per stage: it runs under vmap, not as a one-trip loop (XLA's CPU
  # backend ran its train step 4.5x slower than ResNet-32's), and computes what the scan does.
  default, looped = get_model("resnet14"), get_model("resnet14", scan_unroll=1)
  variables, images = tiny_variables(default)
  assert "scan" not in str(jax.make_jaxpr(lambda v: default.apply(v, images))(variables))
  def train(model):
    def loss(params):
      logits, new = model.apply({**variables, "params": params}, images, train=True,
                                mutable=["batch_stats"])
      return logits.sum(), new
    return jax.grad(loss, has_aux=True)(variables["params"])
  # float32 sums in another order: the longest are the 3x3 convs over 9 * 64 inputs.
  tolerances.assert_close(train(default), train(looped), terms=9 * 64)
