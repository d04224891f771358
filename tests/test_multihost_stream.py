"""Several hosts on the streamed path, for real: two CPU processes (one device each) read disjoint
rows of every global batch and end with the parameters of one process with two devices; a run
SIGKILLed mid-run and rerun with two decoding workers ends with exactly the uninterrupted
parameters, and one of one process resumed as two processes ends there too (the data order needs
no iterator state, so it survives a change of workers or hosts)."""
import os
import subprocess
import sys
import time

import chex
import pytest
from imagenet_fixture import make_prepared
from test_multihost import REPO, TIMEOUT_S, _env, _fail, _free_port, _kill, _process, _wait

from resnet_jax import checkpoint, metrics_io

pytestmark = pytest.mark.slow
NUM_STEPS = 12
KILL_AFTER = 4
# Loaded by every interpreter on PYTHONPATH: with RESNET_JAX_TEST_KILL_AFTER=N set, the process
# SIGKILLs itself at its first write to metrics.jsonl after orbax has renamed checkpoint N into
# place, i.e. mid-run with that checkpoint complete, whatever the machine's speed.
KILL_HOOK = """\
import os, signal, sys
_after = os.environ.get("RESNET_JAX_TEST_KILL_AFTER")
if _after:
  _seen = []

  def _hook(event, args):
    if event in ("os.rename", "os.replace") and os.fsdecode(args[1]).endswith(
        os.sep + "checkpoints" + os.sep + _after):
      _seen.append(True)
    elif event == "open" and _seen and os.fsdecode(args[0]).endswith("metrics.jsonl"):
      os.kill(os.getpid(), signal.SIGKILL)

  sys.addaudithook(_hook)
"""


def _command(data_dir):
  return ["-m", "resnet_jax.train", "--config=experiments/configs/imagenet.py:resnet18,smoke",
          f"--config.data_dir={data_dir}", "--config.model_options=widths=(4, 8, 8, 8)",
          "--config.image_size=16", "--config.scale_range=(18, 30)", "--config.resize_size=18",
          "--config.batch_size=8", f"--config.num_steps={NUM_STEPS}", "--config.log_every=1",
          "--config.eval_every=6", "--config.checkpoint_every=2", "--config.eval_batch_size=8"]


def _launch(tmp_path, data_dir, workdir, num_processes, port=0, kill_after=None, workers=1):
  hook_dir = tmp_path / "kill_hook"
  hook_dir.mkdir(exist_ok=True)
  (hook_dir / "sitecustomize.py").write_text(KILL_HOOK)
  launches = []
  for process_id in range(max(num_processes, 1)):
    extra, variables = _process(num_processes, process_id, port)
    if kill_after is not None:
      variables["RESNET_JAX_TEST_KILL_AFTER"] = str(kill_after)
    env = _env(tmp_path, **variables)
    env["PYTHONPATH"] = os.pathsep.join([str(hook_dir), env["PYTHONPATH"]])
    with open(tmp_path / f"log_{workdir.name}_{process_id}.txt", "ab") as log:
      launches.append(subprocess.Popen(
          [sys.executable, *_command(data_dir), f"--config.input_workers={workers}", *extra,
           f"--workdir={workdir}"], cwd=REPO,
          env=env, stdout=log, stderr=subprocess.STDOUT))
  return launches


def _saved(workdir):
  restored = checkpoint.restore_saved(checkpoint.manager(str(workdir)))
  assert int(restored["step"]) == NUM_STEPS
  return {"params": restored["params"], "batch_stats": restored["batch_stats"]}


def _kill_after_checkpoint(tmp_path, launches, deadline):
  try:
    while launches[0].poll() is None and time.time() < deadline:
      time.sleep(0.1)
  finally:
    _kill(launches)
  if launches[0].returncode != -9:
    _fail(tmp_path, f"the run was not killed mid-run (exit {launches[0].returncode})")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Workdirs: one process, two devices, uninterrupted ("one"); two processes ("two"); one
  process with two workers killed and rerun ("killed"); one process killed and rerun as two
  ("elastic")."""
  tmp_path = tmp_path_factory.mktemp("stream_runs")
  data_dir = make_prepared(str(tmp_path / "data"))
  deadline = time.time() + 4 * TIMEOUT_S
  dirs = {name: tmp_path / name for name in ("one", "two", "killed", "elastic")}
  _wait(tmp_path, _launch(tmp_path, data_dir, dirs["one"], 0), deadline)
  _wait(tmp_path, _launch(tmp_path, data_dir, dirs["two"], 2, _free_port()), deadline)
  for name, rerun in (("killed", dict(num_processes=0, workers=2)),
                      ("elastic", dict(num_processes=2, port=_free_port()))):
    _kill_after_checkpoint(tmp_path, _launch(tmp_path, data_dir, dirs[name], 0,
                                             kill_after=KILL_AFTER, workers=2), deadline)
    _wait(tmp_path, _launch(tmp_path, data_dir, dirs[name], **rerun), deadline)
  return dirs


def test_two_processes_end_as_one_process_with_two_devices(runs):
  chex.assert_trees_all_close(_saved(runs["two"]), _saved(runs["one"]), atol=1e-5, rtol=1e-4)
  results = metrics_io.read_json(str(runs["two"] / metrics_io.RESULTS_FILE))
  assert results["device_count"] == 2 and results["steps"] == NUM_STEPS


def test_a_run_killed_and_rerun_with_two_workers_ends_exactly_as_uninterrupted(runs):
  results = metrics_io.read_json(str(runs["killed"] / metrics_io.RESULTS_FILE))
  assert KILL_AFTER <= results["resumed_from_step"] < NUM_STEPS
  chex.assert_trees_all_equal(_saved(runs["killed"]), _saved(runs["one"]))


def test_a_run_killed_on_one_process_resumes_on_two(runs):
  results = metrics_io.read_json(str(runs["elastic"] / metrics_io.RESULTS_FILE))
  assert KILL_AFTER <= results["resumed_from_step"] < NUM_STEPS
  chex.assert_trees_all_close(_saved(runs["elastic"]), _saved(runs["one"]), atol=1e-5, rtol=1e-4)
  records = metrics_io.read_metrics(str(runs["elastic"]))
  assert [r["step"] for r in records if "loss" in r] == list(range(1, NUM_STEPS + 1))
