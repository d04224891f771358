"""Experiment configs (one per Makefile target), the runner, its summary and report."""
import glob
import os

import pytest
from config_files import REPO, load

from resnet_jax import configs, experiment, metrics_io
from resnet_jax.models import get_model

EXPERIMENTS = sorted(glob.glob(os.path.join(REPO, "experiments", "*.py")))
TARGETS = ("degradation", "shortcuts", "responses", "depth_1202", "preact", "lesion", "paths",
           "stochastic_depth", "effective_paths", "wide", "pyramid", "multi_residual",
           "densenet", "fractalnet", "ensemble_size")


def test_every_makefile_target_has_its_config():
  names = {os.path.basename(p)[:-3] for p in EXPERIMENTS}
  assert set(TARGETS) | {"demo"} <= names
  with open(os.path.join(REPO, "Makefile")) as f:
    makefile = f.read()
  for name in TARGETS:
    assert f"--config=experiments/{name}.py:$(DATASET)" in makefile


def test_make_alone_lists_every_target_with_a_line():
  import subprocess  # pylint: disable=g-import-not-at-top
  listing = subprocess.run(["make", "--no-print-directory"], cwd=REPO, capture_output=True,
                           text=True, check=True).stdout
  for target in ("demo", "test", "test-all", "lint", "bench") + TARGETS:
    line = next((row for row in listing.splitlines()
                 if row.split()[:1] == [target.replace("_", "-")]),
                None)
    assert line and len(line.split()) > 1, (target, listing)


@pytest.mark.parametrize("name", TARGETS)
@pytest.mark.parametrize("dataset", configs.RECIPE_DATASETS)
def test_experiment_configs_build_for_every_dataset(name, dataset):
  module = load(os.path.join(REPO, "experiments", f"{name}.py"))
  assert f"make {name.replace('_', '-')}" in module.__doc__
  config = module.get_config(dataset)
  assert config.train.dataset == dataset
  for spec in config.models:
    model, shortcut, options = configs.split_spec(spec)
    get_model(model, **({"shortcut": shortcut} if shortcut else {}),
              **configs.parse_model_options(options))
  assert module.get_config(f"{dataset},smoke").train.num_steps == 2


def test_bad_experiment_arg_names_the_datasets():
  with pytest.raises(ValueError, match="digits"):
    configs.parse_arg("mnist")
  assert configs.parse_arg("") == ("digits", False)
  assert configs.parse_arg("cifar10,smoke") == ("cifar10", True)


@pytest.mark.parametrize("warmup", ["auto", "error"])
def test_experiment_keeps_the_recipes_warmup(warmup):
  # The experiment must not decide warm-ups itself: a user's choice holds for every model, and
  # "auto" is left for the run to decide (He 2015's rule, configs.resolve_warmup).
  config = load(os.path.join(REPO, "experiments", "depth_1202.py")).get_config("digits")
  config.train.warmup = warmup
  for train_config in experiment.run_configs(config, seeds=2).values():
    assert train_config.warmup == warmup


def test_preact_experiment_warms_up_every_net_like_its_train_config():
  config = load(os.path.join(REPO, "experiments", "preact.py")).get_config("digits")
  for (_, spec), train_config in experiment.run_configs(config, seeds=1).items():
    assert configs.resolve_warmup(train_config).warmup == "steps", spec
  single = load(os.path.join(REPO, "experiments", "configs", "preact.py"))
  assert configs.resolve_warmup(single.get_config("preact_resnet164")).warmup == "steps"


def test_demo_smoke_runs_the_whole_pipeline(tmp_path):
  config = load(os.path.join(REPO, "experiments", "demo.py")).get_config("smoke")
  config.models = ("plain8", "resnet14")
  summary = experiment.run_experiment(config, str(tmp_path), seeds=2, progress=False)
  assert set(summary["models"]) == {"plain8", "resnet14"}
  r14 = summary["models"]["resnet14"]
  assert r14["test_error_at_best_val"]["n"] == 2
  assert "lesion_one_block_damage" in r14 and len(r14["effective_paths_exact"]) == 2
  assert "effective_paths_sampled" not in summary["models"]["plain8"]  # plain nets have no paths
  report = (tmp_path / "report.md").read_text()
  assert "| resnet14 |" in report and "effective paths" in report
  for figure in ("training_curves", "response_std", "lesion_single", "lesion_k_reorder",
                 "path_gradients"):
    assert (tmp_path / "figures" / f"{figure}.png").exists(), figure
    assert f"figures/{figure}.png" in report
  analysis = metrics_io.read_json(str(tmp_path / "seed1" / "resnet14" / "analysis.json"))
  assert len(analysis["lesion_single"]) == 6


@pytest.mark.slow
@pytest.mark.parametrize("name", TARGETS)
def test_experiment_smoke_runs(name, tmp_path):
  config = load(os.path.join(REPO, "experiments", f"{name}.py")).get_config("digits,smoke")
  summary = experiment.run_experiment(config, str(tmp_path), progress=False)
  assert set(summary["models"]) == set(config.models)
  assert (tmp_path / "report.md").exists()


def test_concurrent_runs_train_side_by_side_and_summarize_like_one_experiment(tmp_path):
  from resnet_jax import concurrent_runs  # pylint: disable=g-import-not-at-top
  config = os.path.join(REPO, "experiments", "degradation.py") + ":digits,smoke"
  with pytest.raises(SystemExit):  # a model the experiment does not train is refused
    concurrent_runs.main([f"--config={config}", f"--workdir={tmp_path}", "--models=resnet8"])
  assert concurrent_runs.main([f"--config={config}", f"--workdir={tmp_path}",
                               "--models=resnet20,plain20", "--config.train.eval_every=1"]) == 0
  summary = metrics_io.read_json(str(tmp_path / "summary.json"))
  assert list(summary["models"]) == ["plain20", "resnet20"]  # the config's order
  for model in ("plain20", "resnet20"):
    results = metrics_io.read_json(str(tmp_path / "seed0" / model / "results.json"))
    assert results["steps"] == 2 and results["model"] == model
    assert summary["models"][model]["final_test_error"]["median"] == results["test_error"]
    assert (tmp_path / "logs" / f"{model}.log").exists()
  assert (tmp_path / "report.md").exists()


@pytest.mark.slow
def test_imagenet_18v34_reports_fig4_and_table2(tmp_path, prepared_imagenet):
  """He 2015's ImageNet experiment end to end on the fixture's photos (tiny widths): four runs
  streamed from the prepared directory, the 10-crop table beside the paper's, Fig. 4's curves."""
  module = load(os.path.join(REPO, "experiments", "imagenet_18v34.py"))
  assert "make imagenet-18v34" in module.__doc__
  with open(os.path.join(REPO, "Makefile")) as f:
    assert "--config=experiments/imagenet_18v34.py:$(IMAGENET_DATASET)" in f.read()
  config = module.get_config("imagenet_fixture,smoke")
  assert config.train.dataset == "imagenet" and config.train.eval_crops == 10
  assert config.models == ("plain18_imagenet", "plain34_imagenet", "resnet18_imagenet:A",
                           "resnet34_imagenet:A")
  # The 18-layer pair only (the 34-layer nets are the same code, twice the compile time); all
  # four run in the slow test of `make imagenet-18v34`.
  config.models = config.models[::2]
  config.train.update(data_dir=prepared_imagenet, model_options="widths=(4, 8, 8, 8)",
                      image_size=16, scale_range=(18, 30), resize_size=18)
  summary = experiment.run_experiment(config, str(tmp_path), progress=False)
  assert list(summary["models"]) == ["plain18_imagenet", "resnet18_imagenet:A"]
  report = (tmp_path / "report.md").read_text()
  assert "| resnet18_imagenet:A |" in report and "27.94 / –" in report
  assert summary["models"]["plain18_imagenet"]["test_error_10crop"]["n"] == 1
  assert (tmp_path / "figures" / "training_curves.png").exists()
  with pytest.raises(ValueError, match="DATA"):
    module.get_config("cifar10")


@pytest.mark.slow
def test_make_imagenet_18v34_on_the_fixture(tmp_path):
  """The Makefile target as a user types it: the fixture written and prepared under build/, the
  four nets trained for two steps at 32 px, the report."""
  import subprocess  # pylint: disable=g-import-not-at-top
  done = subprocess.run(["make", "--no-print-directory", "imagenet-18v34",
                         "DATASET=imagenet_fixture,smoke", f"WORKDIR={tmp_path}"], cwd=REPO,
                        capture_output=True, text=True, timeout=3600)
  assert done.returncode == 0, done.stderr[-3000:]
  report = (tmp_path / "imagenet_18v34" / "report.md").read_text()
  for model in ("plain18_imagenet", "plain34_imagenet", "resnet18_imagenet:A",
                "resnet34_imagenet:A"):
    assert f"| {model} |" in report


def test_densenet_lesions_on_the_cpu_data_sets_sample_500_test_images():
  # A lesion is a pass over the test images per deleted layer (48 for DenseNet-BC-100): on a CPU
  # the whole Fashion-MNIST test split with 20 sets per sweep point takes hours.
  module = load(os.path.join(REPO, "experiments", "densenet.py"))
  for dataset in ("digits", "fashion_mnist"):
    analysis = module.get_config(dataset).analysis
    assert (analysis.num_images, analysis.lesion_samples) == (500, 3), dataset
  assert module.get_config("cifar10").analysis.num_images == 0  # the whole split elsewhere
  assert module.get_config("fashion_mnist,smoke").analysis.num_images == 16
