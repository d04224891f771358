"""The streamed input path: batches decoded and augmented by worker processes from a prepared
directory (`records`), for data sets that do not fit in memory (ImageNet).

What a step trains on is a pure function of (seed, step), as on the on-device path:
- the data order is the stream perm_0, perm_1, ... of the training records, perm_e drawn from
  (seed, e), and global batch t holds the stream's positions [t * B, (t + 1) * B) (a batch that
  straddles two epochs finishes one permutation and starts the next, as `augment.batch_indices`);
- every random draw of an example's augmentation comes from a generator seeded by
  (seed, epoch, record), never from a worker's or a process's history;
- each process decodes only its own rows of every global batch (`parallel.process_slice`), the
  batch is sliced, not the data set: grain's ShardByJaxProcess would split the records per host
  and so tie the batches to the host count.
So neither the number of worker processes nor the number of hosts changes the batch of step t,
and a resumed run needs no iterator state: its stream simply starts at its step.

Element i of this process's stream is row i % b of global batch i // b (b rows per process);
grain maps elements to worker processes and gives them back in order.
"""
import dataclasses
from typing import Any, Callable, Iterator

import grain
import numpy as np
from absl import flags

from resnet_jax.data import imagenet
from resnet_jax.data.records import RecordSource

# The streams of randomness drawn from a run's seed (SeedSequence entropy words).
_ORDER, _AUGMENT, _HOLD_OUT = 0, 1, 2
# The crop size of a streamed run whose config leaves image_size 0: ImageNet's.
DEFAULT_IMAGE_SIZE = 224
# Held-out validation images are drawn with this seed whatever the run's seed is (as the digits'
# test split), so that validation errors of runs of different seeds compare.
HOLD_OUT_SEED = 0


def epoch_permutation(seed: int, epoch: int, num_examples: int) -> np.ndarray:
  """perm_epoch of the data order: [num_examples] int64."""
  return np.random.default_rng([seed, _ORDER, epoch]).permutation(num_examples)


def example_rng(seed: int, epoch: int, record: int) -> np.random.Generator:
  """The generator of every random draw of `record`'s augmentation in `epoch`."""
  return np.random.default_rng([seed, _AUGMENT, epoch, record])


def hold_out(num_records: int, val_size: int) -> tuple[np.ndarray | None, np.ndarray]:
  """(training records, held-out validation records) of a training split: `val_size` records
  drawn at random with HOLD_OUT_SEED, both sorted; None for every record when val_size is 0."""
  if not 0 <= val_size < num_records:
    raise ValueError(f"val_size must lie in [0, {num_records}), got {val_size}")
  if val_size == 0:
    return None, np.zeros(0, np.int64)
  perm = np.random.default_rng([HOLD_OUT_SEED, _HOLD_OUT]).permutation(num_records)
  return np.sort(perm[val_size:]), np.sort(perm[:val_size])


def batch_records(seed: int, step: int, batch_size: int, num_examples: int,
                  rows: slice | None = None) -> tuple[np.ndarray, np.ndarray]:
  """(epochs, example indices) of the rows `rows` (default all) of global batch `step`: the data
  order of the module docstring, for tests and for reading it back."""
  rows = rows or slice(0, batch_size)
  positions = step * batch_size + np.arange(rows.start, rows.stop)
  epochs, within = np.divmod(positions, num_examples)
  index = np.empty(len(positions), np.int64)
  for epoch in np.unique(epochs):
    index[epochs == epoch] = epoch_permutation(seed, int(epoch), num_examples)[
        within[epochs == epoch]]
  return epochs, index


@dataclasses.dataclass(frozen=True)
class TrainCrop:
  """`imagenet.train_crop` with its settings bound (picklable: worker processes receive it)."""
  kind: str
  image_size: int
  scale_range: tuple[int, int]

  def __call__(self, jpeg: bytes, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    return imagenet.train_crop(jpeg, rng, kind=self.kind, image_size=self.image_size,
                               scale_range=self.scale_range)


@dataclasses.dataclass(frozen=True)
class EvalCrops:
  """`imagenet.eval_crops` with its settings bound: [crops, S, S, 3] uint8, or [S, S, 3] for one
  crop."""
  crops: int
  image_size: int
  resize_size: int

  def __call__(self, jpeg: bytes) -> np.ndarray:
    out = imagenet.eval_crops(jpeg, crops=self.crops, image_size=self.image_size,
                              resize_size=self.resize_size)
    return out[0] if self.crops == 1 else out

  def shape(self) -> tuple[int, ...]:
    square = (self.image_size, self.image_size, 3)
    return square if self.crops == 1 else (self.crops,) + square


class _Positions:
  """What element i of a process's stream is: (global batch, global row)."""

  def __init__(self, batch_size: int, rows: slice):
    self.batch_size, self.rows = batch_size, rows
    self.local = rows.stop - rows.start

  def __call__(self, i: int) -> tuple[int, int]:
    step, row = divmod(int(i), self.local)
    return step, self.rows.start + row


class _TrainExample:
  """Element i of a process's training stream: its record decoded and augmented, as
  {"image": [S, S, 3] uint8, "offset": [3] float32, "label": int32}."""

  def __init__(self, source: RecordSource, records: np.ndarray | None, seed: int,
               positions: _Positions, transform: Callable):
    self.source, self.records, self.seed = source, records, seed
    self.positions, self.transform = positions, transform
    self.num_examples = len(source) if records is None else len(records)
    self._permutations = {}

  def __getstate__(self):
    # Each process draws the permutations it needs (ImageNet's are 10 MB each).
    return {**self.__dict__, "_permutations": {}}

  def _permutation(self, epoch: int) -> np.ndarray:
    permutation = self._permutations.get(epoch)
    if permutation is None:  # (threads of one process may both draw it: the same array)
      permutation = epoch_permutation(self.seed, epoch, self.num_examples)
      for old in [e for e in list(self._permutations) if e < epoch - 1]:
        self._permutations.pop(old, None)  # a batch spans at most two epochs
      self._permutations[epoch] = permutation
    return permutation

  def __call__(self, i: int) -> dict[str, Any]:
    step, row = self.positions(i)
    epoch, within = divmod(step * self.positions.batch_size + row, self.num_examples)
    example = int(self._permutation(epoch)[within])
    record = example if self.records is None else int(self.records[example])
    label, jpeg = self.source[record]
    image, offset = self.transform(jpeg, example_rng(self.seed, epoch, record))
    return {"image": image, "offset": np.asarray(offset, np.float32), "label": np.int32(label)}


class _EvalExample:
  """Element i of a process's evaluation stream: {"image", "label", "mask"}, the padding past
  the split's end zeros with mask 0."""

  def __init__(self, source: RecordSource, records: np.ndarray | None, positions: _Positions,
               transform: EvalCrops):
    self.source, self.records, self.positions, self.transform = (source, records, positions,
                                                                 transform)
    self.size = len(source) if records is None else len(records)

  def __call__(self, i: int) -> dict[str, Any]:
    step, row = self.positions(i)
    position = step * self.positions.batch_size + row
    if position >= self.size:
      return {"image": np.zeros(self.transform.shape(), np.uint8), "label": np.int32(0),
              "mask": np.float32(0)}
    record = position if self.records is None else int(self.records[position])
    label, jpeg = self.source[record]
    return {"image": self.transform(jpeg), "label": np.int32(label), "mask": np.float32(1)}


def _iterate(elements: grain.MapDataset, rows: int, workers: int) -> grain.DatasetIterator:
  """Batches of `rows` elements, decoded by `workers` processes (0: threads of this process)."""
  dataset = elements.batch(rows, drop_remainder=True).to_iter_dataset(
      grain.ReadOptions(num_threads=0 if workers else 2, prefetch_buffer_size=2))
  if workers:
    # grain reads absl flags in mp_prefetch, which fails where no absl.app.run parsed them (tests,
    # notebooks): nothing of grain's is set by flag here, so mark them parsed as they are.
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()
    dataset = dataset.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers,
                                                              per_worker_buffer_size=2))
  return iter(dataset)


def train_batches(source: RecordSource, *, seed: int, batch_size: int, rows: slice,
                  start_step: int, num_steps: int, transform: Callable,
                  records: np.ndarray | None = None,
                  workers: int = 0) -> grain.DatasetIterator:
  """This process's rows of global batches start_step, ..., num_steps - 1 of the training
  stream.

  Args:
    source: the training split's records.
    seed: the run's data seed.
    batch_size: the global batch size B.
    rows: this process's rows of every global batch (`parallel.process_slice`).
    start_step, num_steps: the batches to produce.
    transform: transform(jpeg, rng) -> (uint8 image, [3] colour offset), e.g. `TrainCrop`.
    records: the records the stream draws from (a held-out split's complement); None: all.
    workers: decoding worker processes; 0 decodes in threads of this process.
  Returns:
    An iterator (close it) of {"image": [b, S, S, 3] uint8, "offset": [b, 3] float32,
    "label": [b] int32}, b = rows.stop - rows.start.
  """
  positions = _Positions(batch_size, rows)
  example = _TrainExample(source, records, seed, positions, transform)
  elements = grain.MapDataset.range(start_step * positions.local, num_steps * positions.local)
  return _iterate(elements.map(example), positions.local, workers)


def eval_batches(source: RecordSource, *, batch_size: int, rows: slice, transform: EvalCrops,
                 records: np.ndarray | None = None,
                 workers: int = 0) -> tuple[int, Iterator[dict[str, np.ndarray]]]:
  """(number of global batches, an iterator of this process's rows of each) over a whole split,
  in order, the last batch padded (mask 0).

  Returns batches {"image": [b, S, S, 3] (or [b, crops, S, S, 3]) uint8, "label": [b] int32,
  "mask": [b] float32}.
  """
  size = len(source) if records is None else len(records)
  num_batches = -(-size // batch_size)
  positions = _Positions(batch_size, rows)
  elements = grain.MapDataset.range(num_batches * positions.local).map(
      _EvalExample(source, records, positions, transform))
  return num_batches, _iterate(elements, positions.local, workers)
