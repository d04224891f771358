"""Several train steps per compiled call, and the data order drawn once for them: the same
training as one step per call, boundaries kept, and a resumed run equal to an uninterrupted one."""
import functools

import chex
import jax
import numpy as np
import pytest
import test_train
import tolerances

from resnet_jax import configs, metrics_io, optim, parallel, steps, train
from resnet_jax.models import get_model
from resnet_jax.train_state import create_train_state

NUM_EXAMPLES = 40  # batch 16: 2.5 batches per epoch, so calls straddle epochs


def _compiled(devices, per_device_bn, num_steps, unroll):
  """The single step, a `num_steps`-step call and its data order, a fresh state and the data."""
  config = configs.resolve_warmup(test_train.tiny_config())
  mesh = parallel.make_mesh(devices)
  model = get_model(config.model)
  tx = optim.make_optimizer(config)
  step_fn = functools.partial(steps.train_step, model=model, tx=tx,
                              learning_rate_fn=optim.learning_rate_schedule(config),
                              batch_size=config.batch_size, augment_pad=config.augment_pad,
                              augment_flip=config.augment_flip)
  kwargs = dict(batch_size=config.batch_size, per_device_bn=per_device_bn)
  single = parallel.compile_train_step(step_fn, mesh, **kwargs)
  multi = parallel.compile_train_steps(step_fn, mesh, num_steps=num_steps, unroll=unroll,
                                       **kwargs)
  order = parallel.compile_data_order(mesh, num_examples=NUM_EXAMPLES,
                                      batch_size=config.batch_size, num_batches=num_steps)
  repl = parallel.replicated(mesh)
  new_state = lambda: jax.device_put(
      create_train_state(model, tx, jax.random.key(0), (8, 8, 1)), repl)
  images = np.asarray(jax.random.normal(jax.random.key(1), (NUM_EXAMPLES, 8, 8, 1)))
  data = {"image": parallel.put_global(images, repl),
          "label": parallel.put_global(np.arange(NUM_EXAMPLES, dtype=np.int32) % 10, repl)}
  keys = jax.device_put((jax.random.key(2), jax.random.key(3)), repl)
  return single, multi, order, new_state, data, keys


def _k_steps_vs_single_steps(devices, per_device_bn, unroll, sorting=False, k=2, calls=2):
  """(state, metrics) after `calls` calls of k steps from one state, after as many single steps
  with the same orders, and (sorting) after as many single steps that sort the data themselves."""
  single, multi, draw_order, new_state, data, keys = _compiled(devices, per_device_bn, k, unroll)
  a, b, c = new_state(), new_state(), new_state() if sorting else None
  metrics_a, metrics_b, metrics_c = [], [], []
  for _ in range(calls):
    order = draw_order(keys[0], b.step)
    b, m = multi(b, data, *keys, order)
    metrics_b.append(m)
    for _ in range(k):
      a, m = single(a, data, *keys, order)
      metrics_a.append(m)
      if sorting:
        c, m = single(c, data, *keys)  # no order: the step sorts the training set itself
        metrics_c.append(m)
  stacked = lambda ms: ms and {key: np.stack([m[key] for m in ms]) for key in ms[0]}
  metrics_b = {key: np.concatenate([m[key] for m in metrics_b]) for key in metrics_b[0]}
  return (a, stacked(jax.device_get(metrics_a))), (b, metrics_b), (c, stacked(metrics_c))


def _assert_close(x, y):
  tolerances.assert_close(x, y, terms=test_train.TERMS)


def test_k_steps_per_call_are_k_single_steps():
  (a, metrics_a), (b, metrics_b), (c, metrics_c) = _k_steps_vs_single_steps(
      jax.devices()[:1], per_device_bn=False, unroll=True, sorting=True)
  assert int(b.step) == 4 and metrics_b["loss"].shape == (4,)
  # Not bitwise: XLA compiles the steps of a call as one program, which rounds a few values
  # differently (the running BN means differ in the last bit, also with an optimization_barrier
  # between the steps).
  _assert_close(a, b)
  _assert_close(metrics_a, metrics_b)
  # The order drawn once for several steps gives exactly the batches of the order drawn in
  # every step, and so exactly the same training.
  chex.assert_trees_all_equal(a, c)
  chex.assert_trees_all_equal(metrics_a, metrics_c)


@pytest.mark.parametrize("unroll", [True, False])
def test_k_steps_per_call_with_per_device_batch_norm(unroll):
  # Four devices, each normalising with its own shard's statistics (shard_map), chained by a
  # Python loop (a CPU's choice) or by lax.scan (other backends').
  (a, metrics_a), (b, metrics_b), _ = _k_steps_vs_single_steps(
      jax.devices(), per_device_bn=True, unroll=unroll)
  _assert_close(a, b)
  _assert_close(metrics_a, metrics_b)


def test_a_call_never_crosses_a_boundary():
  config = test_train.tiny_config(num_steps=23, log_every=5, eval_every=10, checkpoint_every=7,
                                  steps_per_call=3)
  boundaries = {s for s in range(1, 24) if s % 5 == 0 or s % 10 == 0 or s % 7 == 0} | {23}
  for start in range(23):
    step, calls = start, []
    while step < 23:
      calls.append(train._call_length(step, config))
      assert not boundaries & set(range(step + 1, step + calls[-1])), (step, calls[-1])
      step += calls[-1]
    assert step == 23 and set(calls) <= {1, 3}
  assert train._call_length(0, config) == 3 and train._call_length(3, config) == 1
  config.steps_per_call = 1
  assert {train._call_length(s, config) for s in range(23)} == {1}


class _Killed(BaseException):
  """Stops a run the way a kill would: nothing in the loop catches it."""


def _records(workdir):
  # images_per_s is a timing; every other number of a record must match.
  return [{k: v for k, v in r.items() if k != "images_per_s"}
          for r in metrics_io.read_metrics(str(workdir))]


def _loop_config(steps_per_call):
  # 64 images, batch 16, boundaries (log, eval, checkpoint) every 3 steps: with 2 steps per call
  # the calls run 2 steps and 1 to each boundary, and 1 to the end at 7.
  return test_train.tiny_config(num_steps=7, log_every=3, eval_every=3, checkpoint_every=3,
                                steps_per_call=steps_per_call)


def test_the_loop_with_k_steps_per_call_trains_and_logs_as_single_steps(tmp_path):
  single = train.train_and_evaluate(_loop_config(1), str(tmp_path / "single"), progress=False)
  multi = train.train_and_evaluate(_loop_config(2), str(tmp_path / "multi"), progress=False)
  assert single["steps"] == multi["steps"] == 7
  _assert_close(test_train._final_params(tmp_path / "single"),
                test_train._final_params(tmp_path / "multi"))
  records = _records(tmp_path / "multi")
  assert [r["step"] for r in records] == [3, 3, 6, 6, 7, 7]
  for a, b in zip(_records(tmp_path / "single"), records, strict=True):
    assert a.keys() == b.keys() and a["step"] == b["step"]
    _assert_close([a[k] for k in a], [b[k] for k in a])


@pytest.mark.slow
def test_a_killed_run_with_k_steps_per_call_resumes_exactly(tmp_path, monkeypatch):
  # The killed run dies at step 6, before its checkpoint there, and resumes from step 3.
  whole = train.train_and_evaluate(_loop_config(2), str(tmp_path / "whole"), progress=False)
  log = train._log

  def killed_at_6(run, step, record):
    if step == 6:
      raise _Killed
    log(run, step, record)
  monkeypatch.setattr(train, "_log", killed_at_6)
  with pytest.raises(_Killed):
    train.train_and_evaluate(_loop_config(2), str(tmp_path / "resumed"), progress=False)
  monkeypatch.setattr(train, "_log", log)
  resumed = train.train_and_evaluate(_loop_config(2), str(tmp_path / "resumed"), progress=False)
  assert resumed["resumed_from_step"] == 3 and resumed["steps"] == 7
  chex.assert_trees_all_equal(test_train._final_params(tmp_path / "whole"),
                              test_train._final_params(tmp_path / "resumed"))
  assert _records(tmp_path / "whole") == _records(tmp_path / "resumed")
  for key in ("test_error", "train_error", "best_val_step"):
    assert whole[key] == resumed[key]
