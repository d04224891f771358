"""Device-side augmentation and data order."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from resnet_jax.augment import (
  batch_indices,
  data_order,
  epochs_spanned,
  order_indices,
  pad_crop_flip,
)


def _images(n=256, size=8, channels=2, seed=0):
  # Strictly positive and all distinct, so a crop is identified by its content and zero padding
  # cannot be mistaken for image pixels.
  return jnp.asarray(np.random.default_rng(seed).random((n, size, size, channels)) + 1.0,
                     jnp.float32)


def _find_crops(images, out, pad):
  """For each image, every (offset_y, offset_x, flipped) whose window of the padded image is out."""
  images, out = np.asarray(images), np.asarray(out)
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  size = images.shape[1]
  # [N, oy, ox, C, H, W] -> [N, oy, ox, H, W, C]: every size x size window of the padded images.
  windows = sliding_window_view(padded, (size, size), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
  matches = []
  for i in range(len(images)):
    found = [(oy, ox, flipped) for flipped, target in ((False, out[i]), (True, out[i, :, ::-1]))
             for oy, ox in zip(*np.nonzero((windows[i] == target).all(axis=(2, 3, 4))),
                               strict=True)]
    matches.append(found)
  return matches


def test_shape_dtype_and_jit(key):
  images = _images()
  out = jax.jit(pad_crop_flip)(key, images)
  assert out.shape == images.shape and out.dtype == images.dtype
  np.testing.assert_array_equal(out, pad_crop_flip(key, images))


def test_identity_without_pad_and_flip(key):
  images = _images()
  np.testing.assert_array_equal(pad_crop_flip(key, images, pad=0, flip=False), images)


def test_flip_mirrors_about_half_the_images(key):
  images = _images(n=512)
  out = np.asarray(pad_crop_flip(key, images, pad=0, flip=True))
  same = (out == np.asarray(images)).all(axis=(1, 2, 3))
  mirrored = (out == np.asarray(images)[:, :, ::-1]).all(axis=(1, 2, 3))
  assert np.all(same ^ mirrored)  # each image is exactly itself or exactly its mirror image
  assert 200 < mirrored.sum() < 312  # Binomial(512, 1/2): more than 5 sigma from 256 otherwise


@pytest.mark.parametrize("flip", [False, True])
def test_crops_stay_within_the_padded_image(key, flip):
  pad = 2
  images = _images()
  out = pad_crop_flip(key, images, pad=pad, flip=flip)
  matches = _find_crops(images, out, pad)
  assert all(len(m) == 1 for m in matches), [m for m in matches if len(m) != 1][:3]
  offsets = {m[0][:2] for m in matches}
  # All (2*pad+1)^2 offsets, extremes included, and nothing else: uniform over the padded image.
  assert offsets == {(oy, ox) for oy in range(2 * pad + 1) for ox in range(2 * pad + 1)}
  flipped = [m[0][2] for m in matches]
  assert any(flipped) == flip and not all(flipped)


def test_zero_padding_is_zero_in_normalised_space(key):
  images = _images(n=64)
  out = np.asarray(pad_crop_flip(key, images, pad=4, flip=False))
  # Images are >= 1, so every value that is not from the image is padding, and padding is 0.
  assert set(np.unique(out[out < 1])) <= {0.0}
  assert (out == 0).any()


def test_each_image_draws_its_own_augmentation(key):
  same = jnp.broadcast_to(_images(n=1), (64, 8, 8, 2))
  out = np.asarray(pad_crop_flip(key, same))
  assert len({o.tobytes() for o in out}) > 20
  # No image's result depends on another image's pixels.
  images = _images(n=16)
  changed = images.at[0].set(5.0)
  np.testing.assert_array_equal(pad_crop_flip(key, images)[1:], pad_crop_flip(key, changed)[1:])


def test_depends_on_key(key):
  images = _images()
  a = pad_crop_flip(key, images)
  np.testing.assert_array_equal(a, pad_crop_flip(key, images))
  assert not np.array_equal(a, pad_crop_flip(jax.random.key(1), images))


def test_negative_pad_rejected(key):
  with pytest.raises(ValueError, match="pad"):
    pad_crop_flip(key, _images(n=2), pad=-1)


# ----------------------------------------------------------------------------- batch_indices

def test_every_example_once_per_epoch(key):
  n, bs = 12, 4
  batches = [batch_indices(key, jnp.int32(step), n, bs) for step in range(9)]
  epochs = [np.concatenate(batches[e * 3:e * 3 + 3]) for e in range(3)]
  for order in epochs:
    np.testing.assert_array_equal(np.sort(order), np.arange(n))
  assert not np.array_equal(epochs[0], epochs[1]) and not np.array_equal(epochs[1], epochs[2])


def test_straddling_batches_keep_every_epoch_complete(key):
  n, bs = 10, 4  # 10 % 4 != 0: batches 2 and 4 straddle epoch boundaries
  stream = np.concatenate([batch_indices(key, jnp.int32(s), n, bs) for s in range(10)])
  for e in range(4):
    np.testing.assert_array_equal(np.sort(stream[e * n:(e + 1) * n]), np.arange(n))


def test_deterministic_jittable_int32(key):
  fn = jax.jit(batch_indices, static_argnums=(2, 3))
  for step in (0, 7, 123):
    eager = batch_indices(key, step, 50, 16)
    traced = fn(key, jnp.int32(step), 50, 16)
    assert traced.shape == (16,) and traced.dtype == jnp.int32
    np.testing.assert_array_equal(eager, traced)
    np.testing.assert_array_equal(eager, batch_indices(key, step, 50, 16))
  assert not np.array_equal(batch_indices(key, 0, 50, 16),
                            batch_indices(jax.random.key(1), 0, 50, 16))


def test_batch_larger_than_data_rejected(key):
  with pytest.raises(ValueError, match="batch_size"):
    batch_indices(key, 0, 8, 9)


# ------------------------------------------------------------------ data_order, order_indices

@pytest.mark.parametrize("n, bs, num_batches", [(12, 4, 1), (10, 4, 1), (10, 4, 3), (10, 3, 8)])
def test_an_order_drawn_once_gives_the_batches_of_batch_indices(key, n, bs, num_batches):
  # (10, 4, 3): batches straddle epochs; (10, 3, 8): one order serves 24 positions of 3 epochs.
  draw = jax.jit(lambda start: data_order(key, start, num_examples=n, batch_size=bs,
                                          num_batches=num_batches))
  gather = jax.jit(jax.vmap(lambda order, step: order_indices(order, step, bs), (None, 0)))
  reference = jax.jit(jax.vmap(lambda step: batch_indices(key, step, n, bs)))
  for start in range(7):
    order = draw(jnp.int32(start))
    assert order["perms"].shape == (epochs_spanned(num_batches, bs, n), n)
    batches = jnp.arange(start, start + num_batches, dtype=jnp.int32)
    np.testing.assert_array_equal(gather(order, batches), reference(batches))


def test_epochs_spanned_is_the_most_any_run_of_batches_touches():
  for n, bs, num_batches in [(10, 4, 1), (10, 4, 3), (10, 3, 8), (12, 4, 3), (5, 5, 2)]:
    most = max((s * bs + num_batches * bs - 1) // n - s * bs // n + 1 for s in range(3 * n))
    assert epochs_spanned(num_batches, bs, n) >= most
