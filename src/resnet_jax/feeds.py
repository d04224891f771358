"""Where the train loop's batches come from: one interface (`Feed`), two implementations.

- `DeviceFeed`: a data set held in memory (digits, Fashion-MNIST, CIFAR) is put on the devices
  once, and each compiled step gathers and augments its own batch there: no input pipeline, the
  fastest way for small data sets.
- `StreamFeed`: a prepared directory (ImageNet, `data.records`) streamed by worker processes that
  decode and augment each process's rows of every global batch (`data.stream`); the step receives
  the batch as one global array sharded over the mesh.

Both make the batch of step t a function of (seed, t) alone, so a killed run resumes exactly,
and the loop (`resnet_jax.train`) knows nothing else of them: `make_feed` picks one by the kind
of data the run opened.
"""
import functools
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np
import tqdm
from flax import linen as nn

from resnet_jax import data, optim, parallel, steps
from resnet_jax.data import imagenet, records, stream
from resnet_jax.train_state import TrainState

Metrics = dict[str, jax.Array]


class Feed(Protocol):
  """The train loop's data: it runs train steps on its batches and evaluates splits."""
  num_train_examples: int

  def train(self, state: TrainState, step: int, length: int) -> tuple[TrainState, Metrics]:
    """Runs the `length` steps step, ..., step + length - 1 (state.step == step). Metrics are
    scalars (one step) or [length] arrays, on the device."""

  def evaluate(self, state: TrainState, split: str, crops: int = 1,
               progress: bool = False) -> dict[str, float]:
    """{"error", "top5_error", "loss", "count"} of the model on a whole split ("val", "test",
    "train"), BN in eval mode, each image's prediction averaged over `crops` crops where the feed
    has crops (streamed images); a progress bar over the batches with `progress`."""

  def train_error(self, state: TrainState) -> float | None:
    """The error on the whole training split (no augmentation, BN in eval mode), the training
    error of He et al. 2015 Fig. 6; None where the split is too large to evaluate whole."""

  def close(self) -> None:
    """Releases worker processes and device buffers."""


def step_options(config: ml_collections.ConfigDict, model: nn.Module, tx) -> dict[str, Any]:
  """The keywords every train step binds: model, optimizer, schedule, warm-up, dtype."""
  warmup = optim.error_warmup(config)
  return dict(model=model, tx=tx, learning_rate_fn=optim.learning_rate_schedule(config),
              warmup_factor=warmup.factor, warmup_error=warmup.until_error,
              compute_dtype=config.dtype)


def device_step_fn(config: ml_collections.ConfigDict, model: nn.Module, tx):
  """steps.train_step with the run's model, optimizer, schedule and augmentation bound."""
  return functools.partial(steps.train_step, batch_size=config.batch_size,
                           augment_pad=config.augment_pad, augment_flip=config.augment_flip,
                           **step_options(config, model, tx))


class DeviceFeed:
  """A data set in memory: on the devices once, each step gathering its own batch there."""

  def __init__(self, config: ml_collections.ConfigDict, dataset: data.Dataset, model: nn.Module,
               tx, mesh: jax.sharding.Mesh, keys: tuple[jax.Array, jax.Array]):
    self.config, self.dataset, self.mesh = config, dataset, mesh
    self.num_train_examples = len(dataset.train_labels)
    per_call = config.steps_per_call
    step_fn = device_step_fn(config, model, tx)
    self.train_step = parallel.compile_train_step(step_fn, mesh, batch_size=config.batch_size,
                                                  per_device_bn=config.per_device_bn)
    self.train_steps = None if per_call == 1 else parallel.compile_train_steps(
        step_fn, mesh, batch_size=config.batch_size, num_steps=per_call,
        per_device_bn=config.per_device_bn)
    self.data_order = parallel.compile_data_order(
        mesh, num_examples=self.num_train_examples, batch_size=config.batch_size,
        num_batches=per_call)
    self.eval_step = parallel.compile_eval_step(
        functools.partial(steps.eval_step, model=model, compute_dtype=config.dtype), mesh)
    repl = parallel.replicated(mesh)
    self.train_data = {"image": parallel.put_global(dataset.train_images, repl),
                       "label": parallel.put_global(dataset.train_labels, repl)}
    self.keys = keys
    self._order_epoch, self._order = None, None

  def train(self, state: TrainState, step: int, length: int) -> tuple[TrainState, Metrics]:
    epoch = step * self.config.batch_size // self.num_train_examples
    if epoch != self._order_epoch:  # an order serves every call that starts in its first epoch
      self._order_epoch, self._order = epoch, self.data_order(self.keys[0], state.step)
    call = self.train_step if length == 1 else self.train_steps
    return call(state, self.train_data, *self.keys, self._order)

  def evaluate(self, state: TrainState, split: str, crops: int = 1,
               progress: bool = False) -> dict[str, float]:
    del crops  # images in memory have one view each
    return parallel.evaluate(self.eval_step, state, getattr(self.dataset, f"{split}_images"),
                             getattr(self.dataset, f"{split}_labels"), self.mesh,
                             self.config.eval_batch_size, progress)

  def train_error(self, state: TrainState) -> float:
    return self.evaluate(state, "train")["error"]

  def close(self) -> None:
    self.train_data = None


class StreamFeed:
  """A prepared directory streamed by worker processes (see `data.stream`).

  The training stream starts at the step of the first `train` call (a resumed run starts it at
  its checkpoint's step) and runs to num_steps; each evaluation streams its split once.
  "test" is the prepared "val" split (ImageNet's validation images, the papers' test set); "val"
  is `config.val_size` training images held out of training (none by default).
  """

  def __init__(self, config: ml_collections.ConfigDict, prepared: records.Prepared,
               model: nn.Module, tx, mesh: jax.sharding.Mesh, aug_rng: jax.Array):
    self.config, self.prepared, self.mesh, self.aug_rng = config, prepared, mesh, aug_rng
    self.train_records, self.val_records = stream.hold_out(prepared.size("train"),
                                                           max(config.val_size, 0))
    self.num_train_examples = prepared.size("train") - len(self.val_records)
    self.image_size = config.image_size or stream.DEFAULT_IMAGE_SIZE
    self.transform = stream.TrainCrop(config.train_transform, self.image_size,
                                      tuple(config.scale_range))
    self.train_step = parallel.compile_train_step_on_batch(
        functools.partial(steps.train_step_on_batch, normalize=imagenet.normalize,
                          **step_options(config, model, tx)),
        mesh, per_device_bn=config.per_device_bn)
    self.eval_step = parallel.compile_eval_step(
        functools.partial(steps.eval_step, model=model, compute_dtype=config.dtype,
                          normalize=imagenet.normalize), mesh)
    self.rows = parallel.process_slice(config.batch_size, mesh)
    self._batches, self._next_step = None, None

  def _start(self, step: int) -> None:
    self.close()
    self._batches = stream.train_batches(
        self.prepared.source("train"), seed=self.config.seed, batch_size=self.config.batch_size,
        rows=self.rows, start_step=step, num_steps=self.config.num_steps,
        transform=self.transform, records=self.train_records, workers=self.config.input_workers)
    self._next_step = step

  def train(self, state: TrainState, step: int, length: int) -> tuple[TrainState, Metrics]:
    if self._next_step != step:
      self._start(step)
    every = []
    for _ in range(length):
      batch = parallel.put_batch(next(self._batches), self.mesh)
      state, metrics = self.train_step(state, batch, self.aug_rng)
      every.append(metrics)
    self._next_step = step + length
    return state, every[0] if length == 1 else jax.tree.map(lambda *m: np.stack(m),
                                                            *jax.device_get(every))

  def evaluate(self, state: TrainState, split: str, crops: int = 1,
               progress: bool = False) -> dict[str, float]:
    if split == "val":
      if not len(self.val_records):
        return {"error": float("nan"), "top5_error": float("nan"), "loss": float("nan"),
                "count": 0}
      source, which = self.prepared.source("train"), self.val_records
    elif split == "test":
      source, which = self.prepared.source("val"), None
    else:
      raise ValueError(f"a streamed data set evaluates 'val' or 'test', not {split!r}")
    batch_size = -(-self.config.eval_batch_size // self.mesh.size) * self.mesh.size
    transform = stream.EvalCrops(crops, self.image_size, self.config.resize_size)
    num_batches, batches = stream.eval_batches(
        source, batch_size=batch_size, rows=parallel.process_slice(batch_size, self.mesh),
        transform=transform, records=which, workers=self.config.input_workers)
    totals = None
    try:
      for local in tqdm.tqdm(batches, total=num_batches, desc=f"evaluate {split}", unit="batch",
                             disable=not progress or jax.process_index() != 0, leave=False):
        sums = self.eval_step(state, parallel.put_batch(local, self.mesh))
        totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
    finally:
      batches.close()
    return parallel.error_rates(jax.device_get(totals))

  def train_error(self, state: TrainState) -> None:
    del state  # a streamed training split is a pass of the data: its batches' error is logged
    return None

  def close(self) -> None:
    if self._batches is not None:
      self._batches.close()
    self._batches, self._next_step = None, None


def make_feed(config: ml_collections.ConfigDict, source: data.Dataset | records.Prepared,
              model: nn.Module, tx, mesh: jax.sharding.Mesh,
              keys: tuple[jax.Array, jax.Array]) -> Feed:
  """The feed of the data the run opened (`runs.open_data`)."""
  if isinstance(source, records.Prepared):
    return StreamFeed(config, source, model, tx, mesh, keys[1])
  return DeviceFeed(config, source, model, tx, mesh, keys)
