"""Device-side data order and augmentation, meant to run inside the jitted train step.

All of it is a pure function of a PRNG key and the step, so a run is reproducible from its seed
and a resumed run sees exactly the batches it would have seen without the interruption. The order
of an epoch is a permutation (a sort of the training set): `batch_indices` draws it inside the
step, while `data_order` draws it once for many steps, and `order_indices` then only gathers.
"""
import jax
import jax.numpy as jnp


def draw_augmentation(rng: jax.Array, n: int, *, pad: int, flip: bool) -> dict[str, jax.Array]:
  """The random part of `pad_crop_flip` for n images: {"offset": [n, 2] crop offsets in
  [0, 2*pad]} and, with `flip`, {"mirror": [n, 1, 1, 1] bool}. Drawn per position in the batch,
  so that a slice of the draws augments that slice of the batch exactly as the whole would."""
  crop_rng, flip_rng = jax.random.split(rng)
  draws = {"offset": jax.random.randint(crop_rng, (n, 2), 0, 2 * pad + 1)}
  if flip:
    draws["mirror"] = jax.random.bernoulli(flip_rng, 0.5, (n, 1, 1, 1))
  return draws


def apply_augmentation(images: jax.Array, draws: dict[str, jax.Array], *, pad: int
                       ) -> jax.Array:
  """Crops [N, H, W, C] images padded by `pad` at draws["offset"] and mirrors draws["mirror"]."""
  _, height, width, channels = images.shape
  out = images
  if pad:
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

    def crop(image, offset):
      return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, channels))

    # vmap turns the per-image dynamic_slice into one gather: no Python loop, any batch size.
    out = jax.vmap(crop)(padded, draws["offset"])
  if "mirror" in draws:
    out = jnp.where(draws["mirror"], out[:, :, ::-1, :], out)
  return out


def pad_crop_flip(rng: jax.Array, images: jax.Array, *, pad: int = 4, flip: bool = True
                  ) -> jax.Array:
  """He et al. 2015's CIFAR augmentation: pad, random crop, random horizontal flip.

  The padding is zeros of the *normalised* images, i.e. the training mean (the mean image under
  "pixel_mean" normalisation) in pixel space, as in the paper's code where padding follows mean
  subtraction. Every image draws its own crop offset, uniform over the (2*pad+1)^2 positions, and
  its own flip with probability 1/2.

  Args:
    rng: PRNG key.
    images: [N, H, W, C] normalised images.
    pad: pixels of zeros added on each side before cropping back to H x W; 0 disables cropping.
    flip: whether to mirror each image left-right with probability 1/2.
  Returns:
    [N, H, W, C] augmented images; `images` itself when pad == 0 and not flip.
  """
  check_pad(pad)
  if not pad and not flip:
    return images
  draws = draw_augmentation(rng, images.shape[0], pad=pad, flip=flip)
  return apply_augmentation(images, draws, pad=pad)


def check_pad(pad: int) -> None:
  if pad < 0:
    raise ValueError(f"pad must be >= 0, got {pad}")


def batch_indices(seed_rng: jax.Array, step: jax.Array, num_examples: int, batch_size: int
                  ) -> jax.Array:
  """Indices of the examples in batch `step`, a function of (seed_rng, step) only.

  The data order is the endless stream perm_0, perm_1, perm_2, ... where perm_e is a permutation
  of range(num_examples) drawn from fold_in(seed_rng, e), and batch `step` is the stream's
  positions [step * batch_size, (step + 1) * batch_size). So every example appears exactly once in
  each epoch's worth of positions even when num_examples % batch_size != 0: a batch that straddles
  an epoch boundary finishes perm_e and takes its remainder from the start of perm_{e+1}, and no
  example is dropped or repeated. The epoch of batch `step` is step * batch_size // num_examples.

  Args:
    seed_rng: PRNG key of the data order.
    step: scalar int, may be traced. Positions are int32, so step * batch_size < 2**31.
    num_examples: static size of the training set.
    batch_size: static, 1 <= batch_size <= num_examples, so a batch spans at most two epochs.
  Returns:
    [batch_size] int32 indices into the training set.
  """
  if not 1 <= batch_size <= num_examples:
    raise ValueError(f"batch_size must lie in [1, num_examples={num_examples}], got {batch_size}")
  start = jnp.asarray(step, jnp.int32) * batch_size
  epoch = start // num_examples
  positions = start + jnp.arange(batch_size, dtype=jnp.int32)
  within = positions % num_examples
  this_epoch = epoch_permutation(seed_rng, epoch, num_examples)

  def straddling():
    next_epoch = epoch_permutation(seed_rng, epoch + 1, num_examples)
    return jnp.where(positions // num_examples == epoch, this_epoch[within], next_epoch[within])

  # A permutation is a sort (about 20 ms for 50k examples on a CPU): draw the next epoch's only
  # for the one batch per epoch that needs it.
  straddles = (start + batch_size - 1) // num_examples != epoch
  index = jax.lax.cond(straddles, straddling, lambda: this_epoch[within])
  return index.astype(jnp.int32)


def epoch_permutation(seed_rng: jax.Array, epoch: jax.Array, num_examples: int) -> jax.Array:
  """perm_epoch of the data order (see `batch_indices`): [num_examples] int32."""
  return jax.random.permutation(jax.random.fold_in(seed_rng, epoch), num_examples
                                ).astype(jnp.int32)


def epochs_spanned(num_batches: int, batch_size: int, num_examples: int) -> int:
  """The most epochs that `num_batches` consecutive batches can draw from."""
  return (num_batches * batch_size - 1) // num_examples + 2


def data_order(seed_rng: jax.Array, step: jax.Array, *, num_examples: int, batch_size: int,
               num_batches: int) -> dict[str, jax.Array]:
  """The permutations that batches step, ..., step + num_batches - 1 draw from.

  Drawn once and handed to the steps (`order_indices`), so that a step gathers its batch without
  sorting the training set; the loop draws it again when the epoch changes. Like the data order
  itself, it is a function of (seed_rng, step) only.

  Args:
    seed_rng: PRNG key of the data order.
    step: scalar int, may be traced: the first batch.
    num_examples, batch_size: static, as in `batch_indices`.
    num_batches: static, how many consecutive batches the order must serve.
  Returns:
    {"epoch": scalar int32, the epoch of batch `step`; "perms": [E, num_examples] int32, the
    permutations of epochs epoch, ..., epoch + E - 1, E = epochs_spanned(num_batches, ...)}.
  """
  if not 1 <= batch_size <= num_examples:
    raise ValueError(f"batch_size must lie in [1, num_examples={num_examples}], got {batch_size}")
  epoch = jnp.asarray(step, jnp.int32) * batch_size // num_examples
  epochs = epoch + jnp.arange(epochs_spanned(num_batches, batch_size, num_examples),
                              dtype=jnp.int32)
  perms = jax.vmap(lambda e: epoch_permutation(seed_rng, e, num_examples))(epochs)
  return {"epoch": epoch, "perms": perms}


def order_indices(order: dict[str, jax.Array], step: jax.Array, batch_size: int) -> jax.Array:
  """Indices of the examples in batch `step`, gathered from `order` (`data_order`): equal to
  `batch_indices(seed_rng, step, ...)` for every batch the order was drawn for.

  Args:
    order: {"epoch": scalar int32, "perms": [E, M] int32} of the same batch_size.
    step: scalar int, may be traced.
    batch_size: static.
  Returns:
    [batch_size] int32 indices into the training set. (For a batch outside the order's epochs
    the gather clamps: the loop draws a new order before that can happen.)
  """
  num_examples = order["perms"].shape[1]
  positions = jnp.asarray(step, jnp.int32) * batch_size + jnp.arange(batch_size, dtype=jnp.int32)
  return order["perms"][positions // num_examples - order["epoch"], positions % num_examples]
