"""The 3x3 conv whose kernel gradient is summed over slices of the batch, against `lax.conv`."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tolerances

from resnet_jax.models import get_model, layers


@pytest.mark.parametrize("batch,chunks,strides", [(48, 3, 1), (40, 8, 2), (8, 8, 1)])
def test_values_and_gradients_match_lax_conv(batch, chunks, strides):
  # (40, 8): two slices of 20 (at least MIN_GRAD_SLICE each); (8, 8): too small to slice.
  x = jax.random.normal(jax.random.key(0), (batch, 8, 8, 4))
  k = jax.random.normal(jax.random.key(1), (3, 3, 4, 8))
  # Scaled so that the kernel gradient, a sum over every output position, is of order 1.
  g = jax.random.normal(jax.random.key(2), (batch, 8 // strides, 8 // strides, 8))
  g = g / jnp.sqrt(g.size / 8)
  args = ((strides, strides), ((1, 1), (1, 1)))
  dn = jax.lax.conv_dimension_numbers(x.shape, k.shape, ("NHWC", "HWIO", "NHWC"))

  def loss(conv, x, k):
    return jnp.sum(conv(x, k, *args, dimension_numbers=dn) * g)

  expected = jax.value_and_grad(loss, argnums=(1, 2))(jax.lax.conv_general_dilated, x, k)
  got = jax.jit(jax.value_and_grad(loss, argnums=(1, 2)), static_argnums=0)(
      layers.sliced_grad_conv(chunks), x, k)
  # The kernel gradient sums over the batch's positions (in slices, or at once); the input
  # gradient over the 9 * 8 outputs each input feeds.
  tolerances.assert_close(got[1], expected[1], terms=batch * 8 * 8)
  # The loss sums g.size products, of the size of conv * g (they cancel: the sum is small).
  products = jax.lax.conv_general_dilated(x, k, *args, dimension_numbers=dn) * g
  np.testing.assert_allclose(got[0], expected[0], atol=tolerances.atol(products, terms=g.size))


def test_model_option_keeps_parameters_and_gradients():
  images = jax.random.normal(jax.random.key(1), (32, 8, 8, 3))
  labels = jnp.arange(32) % 10
  plain, sliced = (get_model("resnet8", conv_grad_chunks=c) for c in (1, 2))
  variables = plain.init(jax.random.key(0), images[:1])
  chex.assert_trees_all_equal(sliced.init(jax.random.key(0), images[:1]), variables)

  def loss(model, params):
    logits, new = model.apply({**variables, "params": params}, images, train=True,
                              mutable=["batch_stats"])
    return jnp.mean(logits[jnp.arange(32), labels]), (logits, new)

  grad = jax.jit(jax.grad(loss, argnums=1, has_aux=True), static_argnums=0)
  # BN statistics and kernel gradients sum over the 32 * 8 * 8 positions of the batch.
  tolerances.assert_close(grad(sliced, variables["params"]), grad(plain, variables["params"]),
                          terms=32 * 8 * 8)


def test_option_default_and_checks():
  expected = 8 if jax.default_backend() == "cpu" else 1
  assert get_model("resnet8").conv_grad_chunks == expected
  assert get_model("wrn10_1", conv_grad_chunks=4).conv_grad_chunks == 4
  assert get_model("resnet8", conv_grad_chunks=2) == get_model("resnet8", conv_grad_chunks=2)
  with pytest.raises(ValueError, match="conv_grad_chunks must be an integer >= 1"):
    get_model("resnet8", conv_grad_chunks=0)
  with pytest.raises(ValueError, match="network.ResNet"):
    get_model("densenet40_k12", conv_grad_chunks=2)
