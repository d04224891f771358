"""Workdirs a person can trust: failed starts, moved data, corrupt files, concurrent runs."""
import glob
import gzip
import os
import shutil
import signal
import subprocess
import sys
import time

import chex
import pytest
from test_train import REPO, tiny_config

from resnet_jax import checkpoint, data, errors, metrics_io, runs, train

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def _final_params(workdir):
  return checkpoint.restore_saved(checkpoint.manager(str(workdir)))["params"]


def test_a_failed_start_leaves_the_workdir_free(tmp_path, monkeypatch):
  bad_configs = [(dict(batch_size=0), "batch_size"), (dict(model="resnet21"), "resnet21"),
                 (dict(dataset="mnist"), "dataset"), (dict(num_steps=0), "num_steps"),
                 (dict(batch_size=18), "multiple of the 4 devices")]
  with monkeypatch.context() as patch:  # refused before any data is read, let alone compiled
    patch.setattr(runs, "load_data", lambda *_: pytest.fail("loaded data for a bad config"))
    for bad, match in bad_configs:
      with pytest.raises(errors.ConfigError, match=match):
        train.train_and_evaluate(tiny_config(**bad), str(tmp_path), progress=False)
      assert not os.listdir(tmp_path)
  results = train.train_and_evaluate(tiny_config(num_steps=2), str(tmp_path), progress=False)
  assert results["steps"] == 2


def test_missing_data_leaves_the_workdir_free(tmp_path):
  config = tiny_config(dataset="fashion_mnist", data_dir=str(tmp_path / "nowhere"))
  with pytest.raises(data.DataUnavailableError):
    train.train_and_evaluate(config, str(tmp_path / "run"), progress=False)
  assert not os.path.exists(tmp_path / "run" / metrics_io.CONFIG_FILE)


def _copy_fashion_mnist(target, change_a_label=False):
  os.makedirs(target)
  for path in glob.glob(os.path.join(FASHION_MNIST, "*.gz")):
    out = os.path.join(target, os.path.basename(path))
    if change_a_label and "train-labels" in path:
      with gzip.open(path) as f:
        raw = bytearray(f.read())
      raw[8] = (raw[8] + 1) % 10  # the first training label
      with gzip.open(out, "wb") as f:
        f.write(bytes(raw))
    else:
      shutil.copy(path, out)


@pytest.mark.skipif(not os.path.isdir(FASHION_MNIST), reason="needs dataset-fashion-mnist")
def test_moved_data_resumes_but_other_data_is_refused(tmp_path):
  _copy_fashion_mnist(tmp_path / "a")
  config = lambda where: tiny_config(dataset="fashion_mnist", data_dir=str(tmp_path / where),
                                     num_steps=2, val_size=32, image_size=0)
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(config("a"), workdir, progress=False)
  os.rename(tmp_path / "a", tmp_path / "b")
  os.remove(os.path.join(workdir, metrics_io.RESULTS_FILE))  # as if killed before the end
  results = train.train_and_evaluate(config("b"), workdir, progress=False)
  assert results["resumed_from_step"] == 2
  _copy_fashion_mnist(tmp_path / "c", change_a_label=True)
  os.remove(os.path.join(workdir, metrics_io.RESULTS_FILE))
  with pytest.raises(errors.ConfigMismatchError, match="differ from the data"):
    train.train_and_evaluate(config("c"), workdir, progress=False)


def _truncate_a_data_file(step_dir):
  files = [f for f in glob.glob(os.path.join(step_dir, "**"), recursive=True)
           if os.path.isfile(f)]
  with open(max(files, key=os.path.getsize), "r+b") as f:
    f.truncate(10)


def _scramble_metadata(step_dir):
  with open(os.path.join(step_dir, "default", "_METADATA"), "wb") as f:
    f.write(os.urandom(256))


CHECKPOINTED = tiny_config(num_steps=8, checkpoint_every=2, eval_every=4)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("whole")
  train.train_and_evaluate(CHECKPOINTED, str(workdir), progress=False)
  return _final_params(workdir)


@pytest.mark.parametrize("corrupt", [_truncate_a_data_file, _scramble_metadata])
def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(corrupt, uninterrupted,
                                                                  tmp_path):
  config = CHECKPOINTED
  workdir = tmp_path / "broken"
  train.train_and_evaluate(config, str(workdir), progress=False)
  os.remove(workdir / metrics_io.RESULTS_FILE)  # as if killed right after saving step 8
  corrupt(str(workdir / "checkpoints" / "8"))
  results = train.train_and_evaluate(config, str(workdir), progress=False)
  assert results["resumed_from_step"] == 6
  assert (workdir / "checkpoints" / "8.unreadable").is_dir()  # kept, not deleted
  chex.assert_trees_all_equal(uninterrupted, _final_params(workdir))


@pytest.mark.parametrize("name", [metrics_io.RESULTS_FILE, metrics_io.CONFIG_FILE])
def test_garbage_json_names_the_file(name, tmp_path):
  train.train_and_evaluate(tiny_config(num_steps=2), str(tmp_path), progress=False)
  with open(tmp_path / name, "wb") as f:
    f.write(b"\x94\xff not json")
  with pytest.raises(errors.CorruptFileError, match=name):
    train.train_and_evaluate(tiny_config(num_steps=2), str(tmp_path), progress=False)


def test_rereporting_a_finished_run_writes_nothing(tmp_path):
  # A finished run in a read-only place (another user's, or a mounted archive) can be reported.
  train.train_and_evaluate(tiny_config(num_steps=2), str(tmp_path), progress=False)
  before = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(tmp_path / "**"), recursive=True)}
  train.train_and_evaluate(tiny_config(num_steps=2, log_every=1), str(tmp_path), progress=False)
  after = {p: os.stat(p).st_mtime_ns for p in glob.glob(str(tmp_path / "**"), recursive=True)}
  assert after == before


@pytest.mark.parametrize("checkpoint_every,kept", [(3, "checkpoint of step 3 is kept"),
                                                   (100, "no checkpoint was saved")])
def test_non_finite_says_what_is_kept(checkpoint_every, kept, tmp_path):
  bad = tiny_config(num_steps=12, warmup="steps", warmup_steps=3, warmup_lr=0.01,
                    learning_rate=1e30, log_every=1, checkpoint_every=checkpoint_every)
  with pytest.raises(errors.NonFiniteError, match=kept):
    train.train_and_evaluate(bad, str(tmp_path), progress=False)


def _command(workdir, *extra):
  return [sys.executable, "-m", "resnet_jax.train",
          "--config=experiments/configs/digits.py:resnet8", f"--workdir={workdir}",
          "--config.image_size=8", "--config.batch_size=16", "--config.limit=64",
          "--config.val_size=16", "--config.log_every=1", *extra]


def _run(command, timeout=120):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True,
                        timeout=timeout)


def _assert_one_plain_error(result, expected):
  """Exit status 1 and, after any progress bar, an "error: " line (and at most one more)."""
  assert result.returncode == 1, result.stderr[-2000:]
  assert "Traceback" not in result.stderr, result.stderr[-2000:]
  assert result.stderr.count("error: ") == 1, result.stderr[-2000:]
  message = result.stderr[result.stderr.index("error: "):]
  assert len(message.strip().splitlines()) <= 2, message
  assert expected in message, message


def test_a_second_run_in_the_same_workdir_is_refused_at_once(tmp_path):
  env = {**os.environ, "JAX_PLATFORMS": "cpu"}
  first = subprocess.Popen(_command(tmp_path, "--config.num_steps=100000"), cwd=REPO, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    deadline = time.time() + 120
    while not glob.glob(str(tmp_path / ".lock*.pid")) and time.time() < deadline:
      time.sleep(0.1)
    start = time.time()
    second = _run(_command(tmp_path, "--config.num_steps=100000"))
    # Refused at once, not after the first run's 100,000 steps: 1.5 s on an idle 2-core CPU,
    # Python and JAX start-up included; the bound leaves room for a machine busy with other tests.
    assert time.time() - start < 60
    _assert_one_plain_error(second, f"process {first.pid}")
    # An analysis of the run is refused too: it would read a run in the middle of its steps and
    # write analysis.json and figures/ beside it.
    while not (tmp_path / "config.json").exists() and time.time() < deadline:
      time.sleep(0.1)
    analysis = _run([sys.executable, "-m", "resnet_jax.analyze", f"--workdir={tmp_path}"])
    _assert_one_plain_error(analysis, f"process {first.pid}")
    assert not (tmp_path / "analysis.json").exists()
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()


def test_a_dead_holders_lock_is_taken_over(tmp_path):
  holder = subprocess.Popen(
      [sys.executable, "-c", "import sys, time; from resnet_jax import runs\n"
       "with runs.lock(sys.argv[1]):\n  print('held', flush=True); time.sleep(600)",
       str(tmp_path)], stdout=subprocess.PIPE, text=True)
  assert holder.stdout.readline().strip() == "held"
  with pytest.raises(errors.WorkdirLockedError, match=str(holder.pid)):
    with runs.lock(str(tmp_path)):
      pass
  holder.send_signal(signal.SIGKILL)
  holder.wait()
  with runs.lock(str(tmp_path)):  # the kernel released the dead process's lock
    pass


def test_command_line_errors_are_one_plain_line(tmp_path):
  cases = [
      (_command(tmp_path / "a", "--config.batch_size=0"), "--config.batch_size"),
      (_command(tmp_path / "a", "--config.model=resnet21"), "6n+2"),
      (_command(tmp_path / "a", "--config.num_stepz=5"), 'Did you mean "num_steps"'),
      (_command(tmp_path / "a", "--config.dataset=fashion_mnist",
                f"--config.data_dir={tmp_path}/nowhere"), "Fashion-MNIST"),
      (_command(tmp_path / "a", "--config.learning_rate=1e30", "--config.num_steps=20"),
       "non-finite"),
      ([sys.executable, "-m", "resnet_jax.analyze", f"--workdir={tmp_path}/empty"],
       "holds no run"),
      ([sys.executable, "-m", "resnet_jax.experiment",
        "--config=experiments/degradation.py:mnist", f"--workdir={tmp_path}/e"], "DATASET"),
      ([sys.executable, "-m", "resnet_jax.train", "--config=experiments/configs/nope.py",
        f"--workdir={tmp_path}/c"], "experiments/configs/nope.py: [Errno 2] No such file"),
  ]
  done = [_run(command) for command, _ in cases]
  for result, (_, expected) in zip(done, cases):
    _assert_one_plain_error(result, expected)
  # A workdir of another config, after a first run there.
  assert _run(_command(tmp_path / "b", "--config.num_steps=2")).returncode == 0
  _assert_one_plain_error(_run(_command(tmp_path / "b", "--config.num_steps=3")),
                          "another config")
  assert "\\n" not in done[2].stderr  # the suggestion is shown, not its escape
