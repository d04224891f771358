"""Multi-process runs: how `--distributed` joins this process to a job."""
import jax
import pytest

from resnet_jax import cli


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
