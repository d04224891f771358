"""The conv with a backward pass of its own (canonical-form gradients, the kernel gradient summed
over slices of the batch), against `lax.conv`."""
import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tolerances

from resnet_jax.models import get_model, layers


@pytest.mark.parametrize("batch,chunks,strides,size,kernel,padding", [
    (48, 3, 1, 8, 3, ((1, 1), (1, 1))), (40, 8, 2, 8, 3, ((1, 1), (1, 1))),
    (8, 8, 1, 8, 3, ((1, 1), (1, 1))), (8, 8, 2, 9, 3, ((1, 1), (1, 1))),
    (8, 8, 2, 8, 1, ((0, 0), (0, 0))), (8, 8, 2, 9, 7, ((3, 3), (3, 3))), (8, 8, 2, 8, 3, "SAME"),
    (8, 8, 1, 8, 3, "VALID"),
    # Inputs (or, for the input gradient, outputs) smaller than the kernel: patches matmuls.
    (32, 2, 1, 2, 3, ((1, 1), (1, 1))), (8, 8, 2, 2, 3, ((1, 1), (1, 1))),
    (8, 8, 1, 1, 3, ((1, 1), (1, 1))), (8, 8, 2, 4, 3, ((1, 1), (1, 1))),
    (8, 8, 2, 3, 3, "SAME"), (8, 8, 1, 2, 3, ((2, 0), (0, 1)))])
def test_values_and_gradients_match_lax_conv(batch, chunks, strides, size, kernel, padding):
  # (40, 8): two slices of 20 (at least MIN_GRAD_SLICE each); (8, 8): too small to slice. Odd
  # sizes, 1x1 and 7x7 kernels and string paddings check the padding of both gradients.
  x = jax.random.normal(jax.random.key(0), (batch, size, size, 4))
  k = jax.random.normal(jax.random.key(1), (kernel, kernel, 4, 8))
  out = jax.eval_shape(lambda x, k: jax.lax.conv_general_dilated(
      x, k, (strides, strides), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")), x, k).shape
  # Scaled so that the kernel gradient, a sum over every output position, is of order 1.
  g = jax.random.normal(jax.random.key(2), out)
  g = g / jnp.sqrt(g.size / 8)
  args = ((strides, strides), padding)
  dn = jax.lax.conv_dimension_numbers(x.shape, k.shape, ("NHWC", "HWIO", "NHWC"))

  def loss(conv, x, k):
    return jnp.sum(conv(x, k, *args, dimension_numbers=dn) * g)

  expected = jax.value_and_grad(loss, argnums=(1, 2))(jax.lax.conv_general_dilated, x, k)
  got = jax.jit(jax.value_and_grad(loss, argnums=(1, 2)), static_argnums=0)(
      layers.sliced_grad_conv(chunks), x, k)
  # The kernel gradient sums over the batch's positions (in slices, or at once); the input
  # gradient over the 9 * 8 outputs each input feeds.
  tolerances.assert_close(got[1], expected[1], terms=batch * size * size)
  # The loss sums g.size products, of the size of conv * g (they cancel: the sum is small).
  products = jax.lax.conv_general_dilated(x, k, *args, dimension_numbers=dn) * g
  np.testing.assert_allclose(got[0], expected[0], atol=tolerances.atol(products, terms=g.size))


@pytest.mark.parametrize("name,options", [
    # Its last stage on 2x2 maps (patches matmuls).
    ("resnet8", {}),
    # Three blocks on 8x8 images: the last block's convs see 2x2 maps (patches matmuls).
    ("fractalnet_c2", {"widths": (4, 8, 8), "drop_path": 0.0, "global_drop": 0.0}),
    # 3x3 and 1x1 convs, also under the memory-efficient layers' rematerialisation.
    ("densenet_bc16_k4", {}), ("densenet_bc16_k4", {"memory_efficient": True})])
def test_model_option_keeps_parameters_and_gradients(name, options):
  images = jax.random.normal(jax.random.key(1), (32, 8, 8, 3))
  plain, sliced = (get_model(name, conv_grad_chunks=c, **options) for c in (1, 2))
  variables = plain.init(jax.random.key(0), images[:1])
  chex.assert_trees_all_equal(sliced.init(jax.random.key(0), images[:1]), variables)

  def loss(model, params):
    logits, _ = model.apply({**variables, "params": params}, images, train=True,
                            mutable=["batch_stats"])
    return jnp.mean(logits[:, 0] * jnp.arange(32)), logits

  grad = jax.jit(jax.grad(loss, argnums=1, has_aux=True), static_argnums=0)
  (got, got_logits), (expected, expected_logits) = (grad(m, variables["params"])
                                                    for m in (sliced, plain))
  tolerances.assert_close(got_logits, expected_logits, terms=9 * 8)
  got, expected = flax.traverse_util.flatten_dict(got), flax.traverse_util.flatten_dict(expected)
  # A conv bias followed by BN has the gradient 0; both sides give rounding noise, of the size of
  # the rounding of the kernel gradients.
  noise = max(tolerances.atol(v, terms=32 * 8 * 8) for k, v in expected.items()
              if k[-1] == "kernel")
  for key in expected:
    if key[-1] == "bias" and key[-2].endswith("_conv"):
      assert np.max(np.abs(got[key])) <= noise and np.max(np.abs(expected[key])) <= noise, key
    else:
      tolerances.assert_close(got[key], expected[key], terms=32 * 8 * 8, err_msg=str(key))


def test_option_default_and_checks():
  expected = 8 if jax.default_backend() == "cpu" else 1
  assert get_model("resnet8").conv_grad_chunks == expected
  assert get_model("wrn10_1", conv_grad_chunks=4).conv_grad_chunks == 4
  assert get_model("resnet8", conv_grad_chunks=2) == get_model("resnet8", conv_grad_chunks=2)
  assert get_model("fractalnet_c2").conv_grad_chunks == expected
  with pytest.raises(ValueError, match="conv_grad_chunks must be an integer >= 1"):
    get_model("resnet8", conv_grad_chunks=0)
  assert get_model("densenet40_k12", conv_grad_chunks=2).conv_grad_chunks == 2


def test_gradients_inside_control_flow_are_canonical_convolutions():
  # XLA's CPU backend runs a convolution of permuted dimension numbers inside a conditional as a
  # naive loop ("wrapped_convolution"), tens of times slower (benchmarks/xla_cpu_traps.py); the
  # gradients of this conv are plain convolutions there too.
  x = jax.random.normal(jax.random.key(0), (32, 8, 8, 4))
  k = jax.random.normal(jax.random.key(1), (3, 3, 4, 8))
  dn = ("NHWC", "HWIO", "NHWC")
  g = jax.random.normal(jax.random.key(2), (32, 8, 8, 8)) / 64  # gradients of order 1

  def grads(conv):
    loss = lambda x, k: jnp.sum(conv(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn) * g)
    return jax.jit(lambda x, k, p: jax.lax.cond(p > 0, jax.grad(loss, argnums=(0, 1)),
                                                lambda x, k: (x, k), x, k))

  def hlo(conv):
    return grads(conv).lower(x, k, 1.0).compile().as_text()
  if "wrapped_convolution" not in hlo(jax.lax.conv_general_dilated):
    pytest.skip("this XLA runs jax's own convolution gradients in a conditional natively")
  assert "wrapped_convolution" not in hlo(layers.sliced_grad_conv(8))
  tolerances.assert_close(grads(layers.sliced_grad_conv(8))(x, k, 1.0),
                          grads(jax.lax.conv_general_dilated)(x, k, 1.0), terms=32 * 8 * 8)


def _conv_labels(conv, x, k, strides: int) -> set[str]:
  """The dim_labels of every convolution left in the compiled value and gradients of conv."""
  loss = lambda x, k: jnp.sum(jnp.sin(conv(x, k, (strides, strides), ((1, 1), (1, 1)),
                                           dimension_numbers=("NHWC", "HWIO", "NHWC"))))
  text = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, k).compile().as_text()
  return {line.split("dim_labels=")[1].split(",")[0] for line in text.splitlines()
          if " convolution(" in line}


@pytest.mark.parametrize("size,strides", [(2, 1), (1, 1), (4, 2), (3, 2)])
def test_inputs_smaller_than_the_kernel_compile_to_no_swapped_convolution(size, strides):
  # XLA rewrites a convolution whose input is smaller than its kernel with its operands swapped,
  # a form its CPU backend runs as a naive loop (benchmarks/xla_cpu_traps.py); forward and
  # backward (where (4, 2) and (3, 2) meet it), this conv leaves only canonical convolutions.
  x = jax.random.normal(jax.random.key(0), (16, size, size, 8))
  k = jax.random.normal(jax.random.key(1), (3, 3, 8, 8))
  if _conv_labels(jax.lax.conv_general_dilated, x, k, strides) <= {"b01f_01io->b01f"}:
    pytest.skip("this XLA does not swap the operands of convolutions of small inputs")
  assert _conv_labels(layers.sliced_grad_conv(2), x, k, strides) <= {"b01f_01io->b01f"}


def test_skipped_stochastic_depth_matches_the_plain_convolutions():
  # Stochastic depth skips dropped branches under `nn.cond`; with this conv inside the
  # conditional the outputs and gradients are those of the plain convolutions.
  images = jax.random.normal(jax.random.key(1), (32, 8, 8, 3))
  plain, canonical = (get_model("resnet14", widths=(4, 8, 8), stochastic_depth=0.5,
                                conv_grad_chunks=c) for c in (1, 2))
  variables = plain.init(jax.random.key(0), images[:1])

  def loss(model, params, key):
    logits, _ = model.apply({**variables, "params": params}, images, train=True,
                            mutable=["batch_stats"], rngs={"minibatch": key, "dropout": key})
    return jnp.mean(logits[:, 0] * jnp.arange(32)), logits

  grad = jax.jit(jax.grad(loss, argnums=1, has_aux=True), static_argnums=0)
  for seed in range(3):  # draws that drop different blocks
    tolerances.assert_close(grad(canonical, variables["params"], jax.random.key(seed)),
                            grad(plain, variables["params"], jax.random.key(seed)),
                            terms=32 * 8 * 8)


def test_gradients_under_shard_map_match_lax_conv():
  # Per-device BN runs the step under shard_map: each device differentiates its own shard.
  mesh = jax.make_mesh((2,), ("d",), devices=jax.devices()[:2])
  x = jax.random.normal(jax.random.key(0), (64, 8, 8, 4))
  k = jax.random.normal(jax.random.key(1), (3, 3, 4, 8)) / 6
  spec = jax.sharding.PartitionSpec

  def grads(conv):
    def per_device(x, k):  # as parallel.py: replicated in, each device takes its shard
      x, k = jax.lax.pcast((x, k), "d", to="varying")
      x = jax.lax.dynamic_slice_in_dim(x, jax.lax.axis_index("d") * 32, 32)
      loss = lambda x, k: jnp.mean(jnp.sin(conv(x, k, (1, 1), ((1, 1), (1, 1)),
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))))
      return jax.lax.pmean(jax.grad(loss, argnums=(0, 1))(x, k), "d")
    return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=spec(), out_specs=spec()))(x, k)
  tolerances.assert_close(grads(layers.sliced_grad_conv(8)),
                          grads(jax.lax.conv_general_dilated), terms=64 * 8 * 8)
