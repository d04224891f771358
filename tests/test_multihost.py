"""Several processes train as one: the multi-host command of docs/training.md, run as two CPU
processes.

Two `python -m resnet_jax.train --distributed` processes (one CPU device each, coordinator and
gloo collectives on this machine) share one workdir; both are SIGKILLed mid-run, the latest
checkpoint is damaged, and the same two commands set it aside together, resume from the one
before and end with the parameters of one process with two devices. Process 0 alone writes the
run's files. Every wait has a deadline, so a hung collective fails the test instead of hanging
it.
"""
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import pytest
import tolerances

from resnet_jax import checkpoint, cli, metrics_io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 240  # per launch; a run takes seconds, so this much means a hang
NUM_STEPS = 24
EVAL_EVERY = 12
# docs/training.md's multi-host command ("GPU, TPU VM, several hosts"), on a net small enough
# for CI.
COMMAND = ("-m", "resnet_jax.train", "--config=experiments/configs/digits.py:resnet8",
           "--config.image_size=8", "--config.limit=64", "--config.batch_size=16",
           f"--config.num_steps={NUM_STEPS}", "--config.log_every=1",
           f"--config.eval_every={EVAL_EVERY}", "--config.checkpoint_every=4")
# Loaded by every interpreter on PYTHONPATH: records this process's writes into the workdir, so
# that the test can tell which process wrote what (os.write itself raises no audit event); and
# makes setting a checkpoint aside slow, as on a busy shared disk, so that a process that does
# not wait for it would read the old list of steps.
WRITES_HOOK = """\
import os, sys, time
_log = os.environ.get("RESNET_JAX_TEST_WRITES")
if _log:
  _fd = os.open(_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
  _root = os.path.abspath(os.environ["RESNET_JAX_TEST_WORKDIR"]) + os.sep
  _writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

  def _hook(event, args):
    if event == "open":
      path, mode, flags = args
      if not (mode and set(mode) & set("wax+") or not mode and flags & _writing):
        return
    elif event in ("os.rename", "os.replace", "os.remove", "os.mkdir", "shutil.rmtree"):
      path = args[1] if event in ("os.rename", "os.replace") else args[0]
      if event == "os.rename" and os.fsdecode(path).endswith(".unreadable"):
        time.sleep(3)
    else:
      return
    if isinstance(path, (str, bytes, os.PathLike)):
      path = os.path.abspath(os.fsdecode(path))
      if path.startswith(_root):
        os.write(_fd, (event + " " + path[len(_root):] + "\\n").encode())

  sys.addaudithook(_hook)
"""


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(tmp_path, **variables) -> dict[str, str]:
  hook_dir = tmp_path / "hook"
  hook_dir.mkdir(exist_ok=True)
  (hook_dir / "sitecustomize.py").write_text(WRITES_HOOK)
  # No proxy: the coordinator's gRPC and gloo talk to 127.0.0.1 directly.
  env = {k: v for k, v in os.environ.items()
         if "_proxy" not in k.lower() and k != "XLA_FLAGS" and not k.startswith("JAX_")}
  paths = [os.path.join(REPO, "src"), str(hook_dir), env.get("PYTHONPATH", "")]
  env.update(PYTHONPATH=os.pathsep.join(p for p in paths if p), JAX_PLATFORMS="cpu", **variables)
  if "xla_backend_optimization_level=0" in os.environ.get("XLA_FLAGS", ""):
    env["XLA_FLAGS"] = "--xla_backend_optimization_level=0"  # the suite's compile level alone
  return env


def _process(num_processes: int, process_id: int, port: int) -> tuple[list[str], dict[str, str]]:
  """(extra flags, environment) of process `process_id` of `num_processes`, one CPU device each,
  coordinated on 127.0.0.1:`port`; for `num_processes=0`, a single process with two devices."""
  if not num_processes:
    return [], {"JAX_NUM_CPU_DEVICES": "2"}
  return ["--distributed"], {
      "JAX_NUM_CPU_DEVICES": "1", "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}",
      "JAX_NUM_PROCESSES": str(num_processes), "JAX_PROCESS_ID": str(process_id),
      # Bind the coordinator to loopback (JAX's default listens on every interface).
      "JAX_COORDINATOR_BIND_ADDRESS": f"127.0.0.1:{port}"}


def _launch(tmp_path, workdir, num_processes: int, port: int = 0) -> list[subprocess.Popen]:
  """The docs' command once per process (one CPU device each), coordinated on 127.0.0.1:`port`;
  or, for `num_processes=0`, a single process with two devices."""
  launches = []
  for process_id in range(max(num_processes, 1)):
    tag = f"{workdir.name}_{process_id}"
    extra, variables = _process(num_processes, process_id, port)
    variables["RESNET_JAX_TEST_WORKDIR"] = str(workdir)
    if num_processes:
      variables["RESNET_JAX_TEST_WRITES"] = str(tmp_path / f"writes_{tag}.txt")
    with open(tmp_path / f"log_{tag}.txt", "ab") as log:
      launches.append(subprocess.Popen(
          [sys.executable, *COMMAND, *extra, f"--workdir={workdir}"], cwd=REPO,
          env=_env(tmp_path, **variables), stdout=log, stderr=subprocess.STDOUT))
  return launches


def _fail(tmp_path, why: str) -> None:
  logs = "\n".join(f"--- {log.name}:\n{log.read_text()[-3000:]}"
                   for log in sorted(tmp_path.glob("log_*.txt")))
  pytest.fail(f"{why}:\n{logs}")


def _wait(tmp_path, launches: list[subprocess.Popen], deadline: float) -> None:
  """Waits for every process to succeed; kills them all on the first failure or the deadline."""
  try:
    while any(p.poll() is None for p in launches) and time.time() < deadline:
      if any(p.poll() for p in launches):
        break  # the others would wait for it in a collective
      time.sleep(0.1)
    if any(p.poll() for p in launches):
      _fail(tmp_path, "a process failed")
    if any(p.poll() is None for p in launches):
      _fail(tmp_path, "timed out")
  finally:
    _kill(launches)


def _kill(launches: list[subprocess.Popen]) -> None:
  for p in launches:
    if p.poll() is None:
      p.send_signal(signal.SIGKILL)
  for p in launches:
    p.wait()


def _kill_after_a_checkpoint(tmp_path, workdir, launches, deadline: float) -> int | None:
  """SIGKILLs every process once a checkpoint of step 8 or later is complete (orbax renames
  it to its bare step number); returns the latest complete checkpoint."""
  checkpoints = workdir / "checkpoints"
  try:
    while all(p.poll() is None for p in launches) and time.time() < deadline:
      done = [int(d) for d in (os.listdir(checkpoints) if checkpoints.exists() else [])
              if d.isdigit()]
      if done and max(done) >= 8:
        break
      time.sleep(0.02)
    if not all(p.poll() is None for p in launches):
      _fail(tmp_path, "a process ended before it could be killed")
  finally:
    _kill(launches)
  return checkpoint.manager(str(workdir)).latest_step()


def _saved(workdir) -> dict:
  restored = checkpoint.restore_saved(checkpoint.manager(str(workdir)))
  assert int(restored["step"]) == NUM_STEPS
  return {"params": restored["params"], "batch_stats": restored["batch_stats"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """Two processes killed mid-run and rerun with the same commands, in `two_processes`; one
  process with two devices, uninterrupted, in `two_devices`.

  The latest checkpoint of the killed run is damaged (its metadata overwritten, which every
  process reads) before the rerun.

  Returns:
    (the directory of both, the damaged step, the step the rerun resumed from).
  """
  tmp_path = tmp_path_factory.mktemp("runs")
  deadline, port = time.time() + TIMEOUT_S, _free_port()
  workdir = tmp_path / "two_processes"
  single = _launch(tmp_path, tmp_path / "two_devices", 0)
  try:
    killed_at = _kill_after_a_checkpoint(tmp_path, workdir, _launch(tmp_path, workdir, 2, port),
                                         deadline)
    assert killed_at is not None and 8 <= killed_at < NUM_STEPS
    previous = max(s for s in checkpoint.manager(str(workdir)).all_steps() if s < killed_at)
    (workdir / "checkpoints" / str(killed_at) / "default" / "_METADATA").write_bytes(
        os.urandom(256))
    # The very same commands, port included: the killed coordinator's port is free again.
    _wait(tmp_path, _launch(tmp_path, workdir, 2, port), deadline + TIMEOUT_S)
    _wait(tmp_path, single, deadline + TIMEOUT_S)
  finally:
    _kill(single)
  return tmp_path, killed_at, previous


def test_two_processes_killed_and_rerun_end_as_one_process_with_two_devices(runs):
  tmp_path, damaged, previous = runs
  two_processes, two_devices = tmp_path / "two_processes", tmp_path / "two_devices"
  # The longest sums: BN statistics and kernel gradients over the batch's 16 * 8 * 8 positions.
  tolerances.assert_close(_saved(two_processes), _saved(two_devices), terms=16 * 8 * 8)
  results = metrics_io.read_json(str(two_processes / metrics_io.RESULTS_FILE))
  assert results["device_count"] == 2 and results["steps"] == NUM_STEPS
  # Both processes set the damaged checkpoint aside and resumed from the one before.
  assert results["resumed_from_step"] == previous
  assert (two_processes / "checkpoints" / f"{damaged}{checkpoint.UNREADABLE_SUFFIX}").is_dir()


def test_each_step_is_logged_once(runs):
  records = metrics_io.read_metrics(str(runs[0] / "two_processes"))
  assert [r["step"] for r in records if "loss" in r] == list(range(1, NUM_STEPS + 1))
  assert [r["step"] for r in records if "test_error" in r] == [EVAL_EVERY, NUM_STEPS]


def test_only_process_0_writes_the_run_files(runs):
  def lines(process_id):
    return (runs[0] / f"writes_two_processes_{process_id}.txt").read_text().splitlines()

  def written(process_id):
    return {line.split(" ", 1)[1].split(os.sep)[0] for line in lines(process_id)}

  # The damaged checkpoint is renamed by process 0 alone.
  aside = os.path.join("checkpoints", f"{runs[1]}{checkpoint.UNREADABLE_SUFFIX}")
  assert f"os.rename {aside}" in lines(0)
  assert not any(checkpoint.UNREADABLE_SUFFIX in line for line in lines(1))

  files = {metrics_io.CONFIG_FILE, metrics_io.RESULTS_FILE, metrics_io.METRICS_FILE,
           "tensorboard"}
  assert files <= written(0)
  # Orbax coordinates the processes' checkpoint writes itself, and each process holds its own
  # lock on the workdir; everything else is process 0's.
  assert written(1) <= {"checkpoints", ".lock.process1.lock", ".lock.process1.pid"}


@pytest.fixture
def initialize(monkeypatch):
  """jax.distributed.initialize replaced by one that records its arguments and, like JAX's off a
  cluster, refuses missing ones."""
  calls = []

  def fake(coordinator_address=None, num_processes=None, process_id=None):
    calls.append((coordinator_address, num_processes, process_id))
    if num_processes is None:
      raise ValueError("Number of processes must be defined.")

  monkeypatch.setattr(jax.distributed, "initialize", fake)
  for name in cli.DISTRIBUTED_ENV:
    monkeypatch.delenv(name, raising=False)
  return calls


def test_initialize_passes_the_three_variables_explicitly(initialize, monkeypatch):
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  monkeypatch.setenv("JAX_PROCESS_ID", "1")
  cli.initialize_distributed()
  assert initialize == [("127.0.0.1:1234", 2, 1)]


def test_initialize_leaves_unset_variables_to_the_platform(initialize):
  with pytest.raises(ValueError, match="JAX_COORDINATOR_ADDRESS and JAX_NUM_PROCESSES and "
                                       "JAX_PROCESS_ID not set"):
    cli.initialize_distributed()
  assert initialize == [(None, None, None)]  # as on a TPU VM or under SLURM


def test_initialize_names_the_variables_missing(initialize, monkeypatch):
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234")
  with pytest.raises(ValueError, match="JAX_NUM_PROCESSES and JAX_PROCESS_ID not set"):
    cli.initialize_distributed()
  monkeypatch.setenv("JAX_NUM_PROCESSES", "two")
  with pytest.raises(ValueError, match="must be integers, not 'two' and None"):
    cli.initialize_distributed()


def test_initialize_gives_cpu_processes_gloo_collectives(initialize, monkeypatch):
  monkeypatch.setenv("JAX_NUM_PROCESSES", "1")
  monkeypatch.setenv("JAX_PROCESS_ID", "0")
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1234")
  before = jax.config.jax_cpu_collectives_implementation
  try:
    jax.config.update("jax_cpu_collectives_implementation", None)
    cli.initialize_distributed()
    assert jax.config.jax_cpu_collectives_implementation == "gloo"
  finally:
    jax.config.update("jax_cpu_collectives_implementation", before)
