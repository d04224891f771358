"""The notebooks in notebooks/: stored clean, free of model code, and executable end to end.

Each notebook runs top to bottom in a fresh Jupyter kernel of this interpreter with
RESNET_JAX_NOTEBOOK_SMOKE=1, which shrinks its training runs and analyses to a few steps and
images (the notebooks' own `SMOKE` switch), so each takes a few minutes at most on a small CPU.
"""
import pathlib
import re
import sys

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

NOTEBOOK_DIR = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = ("01_degradation.ipynb", "02_layer_responses.ipynb", "03_lesion_ensembles.ipynb",
            "04_path_lengths.ipynb", "05_descendants.ipynb", "06_pretrained.ipynb")
# The data a notebook starts from: digits, which ship with scikit-learn; the pretrained ImageNet
# net's notebook reads ImageNet's offline fixture (photos that scikit-image ships) by default.
DEFAULT_DATA = {"06_pretrained.ipynb": 'IMAGENET_DIR = ""'}
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 600

notebook_params = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
# Their smoke runs train and analyse several nets each, or a ResNet-50 (about 55, 80 and 45 s on
# 2 cores, the longest of the suite): executed by `make test-all`; the default suite executes the
# other three (06's library calls are tested on their own in tests/test_pretrained_analyses.py).
SLOW_TO_EXECUTE = ("03_lesion_ensembles.ipynb", "05_descendants.ipynb", "06_pretrained.ipynb")
executed_params = pytest.mark.parametrize(
    "path", [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW_TO_EXECUTE else p
             for p in NOTEBOOKS], ids=lambda p: p.stem)


def read(path: pathlib.Path) -> nbformat.NotebookNode:
  nb = nbformat.read(path, as_version=4)
  nbformat.validate(nb)
  return nb


def code_source(nb: nbformat.NotebookNode) -> str:
  return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def test_expected_notebooks_exist():
  assert tuple(p.name for p in NOTEBOOKS) == EXPECTED


@notebook_params
def test_stored_without_outputs(path):
  """Outputs are stripped in git, so the stored notebooks never carry stale results."""
  nb = read(path)
  for i, cell in enumerate(nb.cells):
    if cell.cell_type == "code":
      assert cell.outputs == [], f"{path.name} cell {i} has stored outputs"
      assert cell.execution_count is None, f"{path.name} cell {i} has an execution count"
    assert "attachments" not in cell, f"{path.name} cell {i} has attachments"


@notebook_params
def test_no_model_code(path):
  """The notebooks import the library; models and analyses live in resnet_jax, not in them."""
  source = code_source(read(path))
  assert not re.search(r"flax\.linen|from\s+flax\s+import\s+linen|\bnn\.Module\b", source), (
      f"{path.name} imports flax.linen or defines a module")
  assert not re.search(r"^\s*class\s", source, re.MULTILINE), f"{path.name} defines a class"
  assert re.search(r"^from resnet_jax import ", source, re.MULTILINE)


@notebook_params
def test_colab_setup_and_parameters(path):
  """First code cell installs on Colab and shows the devices; a parameters cell has the switches."""
  code_cells = [c.source for c in read(path).cells if c.cell_type == "code"]
  setup = code_cells[0]
  assert '"google.colab" in sys.modules' in setup
  assert "RESNET_JAX_REPO" in setup and "%pip install" in setup
  assert "jax.devices()" in setup
  params = code_cells[1]
  assert DEFAULT_DATA.get(path.name, 'DATASET = "digits"') in params
  assert 'os.environ.get("RESNET_JAX_NOTEBOOK_SMOKE") == "1"' in params


def kernel_manager() -> AsyncKernelManager:
  """A "python3" kernel of this interpreter, whatever kernelspecs the user directories hold.

  ipykernel ships its spec into sys.prefix/share/jupyter/kernels with argv[0] = "python", which
  jupyter_client replaces by sys.executable; without that file jupyter_client falls back to
  ipykernel's native spec, which names sys.executable itself.
  """
  ksm = KernelSpecManager(kernel_dirs=[str(pathlib.Path(sys.prefix, "share", "jupyter",
                                                        "kernels"))])
  spec = ksm.get_kernel_spec("python3")
  assert spec.argv[0] in ("python", "python3", sys.executable), spec.argv
  return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=ksm)


@executed_params
def test_notebook_executes(path, tmp_path, monkeypatch):
  monkeypatch.setenv("RESNET_JAX_NOTEBOOK_SMOKE", "1")
  monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebooks' smoke runs land in tmp_path
  monkeypatch.delenv("RESNET_JAX_NOTEBOOK_RUNS", raising=False)
  nb = read(path)
  client = NotebookClient(nb, km=kernel_manager(), timeout=CELL_TIMEOUT_S, startup_timeout=120,
                          resources={"metadata": {"path": str(tmp_path)}})
  client.execute()
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  # Every notebook shows its figures as images.
  assert any("image/png" in o.get("data", {}) for o in outputs), f"{path.name} drew no figure"
