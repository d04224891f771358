"""Test-wide JAX settings: four fake CPU devices, strict numerics, and a compilation cache.

These must run before JAX creates its backend, hence at import time of the conftest.
"""
import os

# The tests' nets are tiny and run a few steps: compiling them is most of their time, and LLVM's
# optimisation of the CPU code (the backend's level 2 by default) pays only over long runs. Level
# 0 halves test_models.py (101 -> 50 s on 2 cores); the programs compute the same functions.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                             + " --xla_backend_optimization_level=0").strip()
# XLA's compiled programs persist across the tests (and the processes some of them start, and
# pytest-xdist's workers): most tests compile the same few small nets, and compiling, not
# running, is most of their time. A cached program is the one a fresh compile would give.
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_REPO, "build", "jax-test-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 4)
jax.config.update("jax_numpy_rank_promotion", "raise")

import pytest  # noqa: E402


@pytest.fixture
def key():
  return jax.random.key(0)


@pytest.fixture(scope="session")
def prepared_imagenet(tmp_path_factory):
  """A prepared directory of 3 classes x (6 training, 2 validation) real photos."""
  from imagenet_fixture import make_prepared  # pylint: disable=g-import-not-at-top
  return make_prepared(str(tmp_path_factory.mktemp("imagenet_fixture")))


# The files that hold the suite's longest tests (`make test --durations` on a fresh clone,
# 2026-12-03), most first. pytest-xdist (`--dist loadfile`) hands whole files to its workers in
# collection order, so a long file collected last runs alone on one worker while the other
# waits; collected first, the short files fill in around them (longest-first scheduling).
LONGEST_FILES = ("test_experiments.py", "test_pretrained_analyses.py", "test_runs.py",
                 "test_multihost.py", "test_train.py", "test_seeds.py", "test_imagenet_train.py",
                 "test_analyze.py", "test_notebooks.py", "test_configs.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(LONGEST_FILES)}
  # A stable sort: every file's tests keep their order, the other files theirs.
  items.sort(key=lambda item: rank.get(item.path.name, len(LONGEST_FILES)))
