"""The floors of the package: no import cycle, and configs that load without the heavy floors."""
import glob
import json
import os
import subprocess
import sys

import grimp
import pytest
from config_files import REPO

CONFIG_FILES = sorted(glob.glob(os.path.join(REPO, "experiments", "*.py"))
                      + glob.glob(os.path.join(REPO, "experiments", "configs", "*.py")))
# What reading a config must not load: the runner and the libraries only training needs.
HEAVY = ("orbax", "matplotlib", "resnet_jax.train", "resnet_jax.experiment")


def test_no_import_cycle():
  graph = grimp.build_graph("resnet_jax")
  cycles = []
  for importer in sorted(graph.modules):
    for imported in sorted(graph.find_modules_directly_imported_by(importer)):
      back = graph.find_shortest_chain(importer=imported, imported=importer)
      if back:
        cycles.append(" -> ".join((importer,) + tuple(back)))
  assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_library_module_imports_an_entry_point():
  graph = grimp.build_graph("resnet_jax")
  entry_points = {m for m in graph.modules if m.endswith(".__main__")}
  assert entry_points >= {"resnet_jax.train.__main__", "resnet_jax.analyze.__main__",
                          "resnet_jax.experiment.__main__"}
  for module in entry_points:
    assert not graph.find_modules_that_directly_import(module), module


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: os.path.relpath(p, REPO))
def test_loading_a_config_loads_no_runner(path):
  # A fresh interpreter: this test process has long imported everything.
  script = ("import json, runpy, sys; runpy.run_path(sys.argv[1])['get_config']();"
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
  out = subprocess.run([sys.executable, "-c", script, path], capture_output=True, text=True,
                       check=True, cwd=REPO)
  assert json.loads(out.stdout.strip().splitlines()[-1]) == []
