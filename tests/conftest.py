"""Test-wide JAX settings: four fake CPU devices and strict numerics.

These must run before JAX creates its backend, hence at import time of the conftest.
"""
import os

os.environ.setdefault("XLA_FLAGS", "")
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_numpy_rank_promotion", "raise")

import pytest  # noqa: E402


@pytest.fixture
def key():
  return jax.random.key(0)
