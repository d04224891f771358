"""The streamed input path's data order: a function of (seed, step) alone, whatever the number of
worker processes or hosts, so that a resumed run needs no iterator state."""
import io

import numpy as np
import pytest
from PIL import Image

from resnet_jax.data import stream

SIZE = 16


class ListSource:
  """A record source of (label, JPEG bytes) in memory, as `records.Prepared.source` gives."""

  def __init__(self, count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    self.records = []
    for i in range(count):
      height, width = rng.integers(20, 40, size=2)
      pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
      buffer = io.BytesIO()
      Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
      self.records.append((i % 3, buffer.getvalue()))

  def __len__(self):
    return len(self.records)

  def __getitem__(self, i):
    return self.records[i]


@pytest.fixture(scope="module")
def source():
  return ListSource(21)


TRANSFORM = stream.TrainCrop("he2015", SIZE, (18, 30))


def _batches(source, *, rows, start, stop, batch_size=8, workers=0, seed=3, records=None):
  it = stream.train_batches(source, seed=seed, batch_size=batch_size, rows=rows, start_step=start,
                            num_steps=stop, transform=TRANSFORM, records=records, workers=workers)
  try:
    return list(it)
  finally:
    it.close()


def test_each_epoch_visits_every_example_once_across_batch_boundaries():
  num_examples, batch_size = 21, 8  # 21 % 8 != 0: batches straddle epochs
  epochs, index = zip(*(stream.batch_records(5, t, batch_size, num_examples) for t in range(21)))
  epochs, index = np.concatenate(epochs), np.concatenate(index)
  for epoch in range(8):
    assert sorted(index[epochs == epoch]) == list(range(num_examples))
  assert not np.array_equal(stream.epoch_permutation(5, 0, 21), stream.epoch_permutation(5, 1, 21))
  assert np.array_equal(stream.epoch_permutation(5, 2, 21), stream.epoch_permutation(5, 2, 21))


def test_batches_hold_the_records_of_the_data_order(source):
  batches = _batches(source, rows=slice(0, 8), start=0, stop=4)
  for step, batch in enumerate(batches):
    _, index = stream.batch_records(3, step, 8, len(source))
    np.testing.assert_array_equal(batch["label"], [source[int(i)][0] for i in index])
    assert batch["image"].shape == (8, SIZE, SIZE, 3) and batch["image"].dtype == np.uint8
    assert batch["offset"].shape == (8, 3) and batch["offset"].dtype == np.float32


def test_process_slices_of_a_batch_are_the_batch(source):
  whole = _batches(source, rows=slice(0, 8), start=0, stop=3)
  first = _batches(source, rows=slice(0, 4), start=0, stop=3)
  second = _batches(source, rows=slice(4, 8), start=0, stop=3)
  for w, a, b in zip(whole, first, second, strict=True):
    for key in w:
      np.testing.assert_array_equal(w[key], np.concatenate([a[key], b[key]]))


def test_a_stream_started_at_a_step_is_the_rest_of_the_stream(source):
  whole = _batches(source, rows=slice(0, 8), start=0, stop=5)
  resumed = _batches(source, rows=slice(0, 8), start=3, stop=5)
  for w, r in zip(whole[3:], resumed, strict=True):
    for key in w:
      np.testing.assert_array_equal(w[key], r[key])


def test_worker_processes_decode_the_same_batches(source):
  threads = _batches(source, rows=slice(0, 8), start=1, stop=4)
  workers = _batches(source, rows=slice(0, 8), start=1, stop=4, workers=2)
  for t, w in zip(threads, workers, strict=True):
    for key in t:
      np.testing.assert_array_equal(t[key], w[key])


def test_augmentation_depends_on_the_seed_and_the_epoch(source):
  a = _batches(source, rows=slice(0, 8), start=0, stop=1, seed=3)[0]
  b = _batches(source, rows=slice(0, 8), start=0, stop=1, seed=4)[0]
  assert not np.array_equal(a["image"], b["image"])
  # The same record in two epochs is augmented anew (its draws are seeded by the epoch).
  one = stream.example_rng(3, 0, 5).random(4)
  assert not np.allclose(one, stream.example_rng(3, 1, 5).random(4))
  np.testing.assert_array_equal(one, stream.example_rng(3, 0, 5).random(4))


def test_held_out_records_are_never_trained_on(source):
  train_records, val_records = stream.hold_out(len(source), 5)
  assert len(val_records) == 5 and not set(train_records) & set(val_records)
  assert sorted(np.concatenate([train_records, val_records])) == list(range(len(source)))
  labels = np.concatenate([b["label"] for b in
                           _batches(source, rows=slice(0, 8), start=0, stop=4,
                                    records=train_records)])
  _, index = stream.batch_records(3, 0, 8, len(train_records))
  np.testing.assert_array_equal(labels[:8], [source[int(train_records[i])][0] for i in index])
  with pytest.raises(ValueError, match="val_size"):
    stream.hold_out(len(source), len(source))


def test_eval_batches_cover_the_split_in_order_and_pad_the_last(source):
  transform = stream.EvalCrops(1, SIZE, 18)
  halves = []
  for rows in (slice(0, 4), slice(4, 8)):
    num_batches, it = stream.eval_batches(source, batch_size=8, rows=rows, transform=transform)
    halves.append(list(it))
    it.close()
  assert num_batches == 3 and len(halves[0]) == 3
  labels = np.concatenate([np.concatenate([a["label"], b["label"]]) for a, b in zip(*halves)])
  mask = np.concatenate([np.concatenate([a["mask"], b["mask"]]) for a, b in zip(*halves)])
  np.testing.assert_array_equal(mask, [1] * 21 + [0] * 3)
  np.testing.assert_array_equal(labels[:21], [label for label, _ in source.records])
  ten = stream.EvalCrops(10, SIZE, 18)
  _, it = stream.eval_batches(source, batch_size=4, rows=slice(0, 4), transform=ten)
  assert next(it)["image"].shape == (4, 10, SIZE, SIZE, 3)
  it.close()
