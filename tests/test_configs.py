"""Every experiment config builds, is locked, carries the promised fields and runs a step."""
import glob
import os

import pytest
from config_files import REPO, load

from resnet_jax import configs, runs, train

CONFIGS = sorted(glob.glob(os.path.join(REPO, "experiments", "configs", "*.py")))
REQUIRED = ("model", "dataset", "archive", "data_dir", "batch_size", "num_steps", "eval_every",
            "checkpoint_every", "seed")
SMALL_NETS = (("preact", "preact_resnet8"), ("wrn", "wrn10_1"), ("pyramidnet", "pyramidnet8_a8"))


def test_there_are_configs():
  assert len(CONFIGS) >= 3


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_fields_docstring_and_model(path):
  module = load(path)
  assert "python -m resnet_jax.train" in module.__doc__  # the command to run it
  config = module.get_config()
  for field in REQUIRED:
    assert field in config, field
  runs.build_model(config, 10)  # the default model name is valid
  config.lock()
  with pytest.raises(AttributeError):
    config.no_such_field = 1


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_runs_two_steps(path, tmp_path, request):
  """The smoke setting of each config: its own recipe, two steps on a small model and slice."""
  config = configs.smoke(load(path).get_config())
  # A small net of the config's family, so that its model options (WRN dropout) still apply.
  config.model = next((small for prefix, small in SMALL_NETS if config.model.startswith(prefix)),
                      "resnet8")
  if config.dataset in configs.STREAM_DATASETS:  # the fixture's photos, a tiny ImageNet net
    config.update(model="resnet18_imagenet", model_options="widths=(4, 8, 8, 8)",
                  data_dir=request.getfixturevalue("prepared_imagenet"), image_size=16,
                  scale_range=(18, 30), resize_size=18)
  if config.dataset in ("cifar10", "cifar100"):
    import tensorflow_datasets as tfds
    with tfds.testing.mock_data(num_examples=24):
      results = train.train_and_evaluate(config, str(tmp_path), progress=False)
  else:
    results = train.train_and_evaluate(config, str(tmp_path), progress=False)
  assert results["steps"] == 2 and 0.0 <= results["test_error"] <= 1.0
