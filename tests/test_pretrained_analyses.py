"""The analyses of a converted ImageNet net (`python -m resnet_jax.analyze` on a directory that
`python -m resnet_jax.convert` wrote), on the offline fixture's photos (3 classes, 6 validation
and 18 training photos, cropped to 32 px).

The net is a ResNet-50 (16 bottleneck blocks, a projection shortcut in the first block of every
stage, 1000 classes) of random weights in torchvision's layout (`convert.random_state_dict`),
converted once for the module as a user converts torchvision's file.
"""
import os
import subprocess
import sys

import jax
import ml_collections
import numpy as np
import pytest

from resnet_jax import analysis, analyze, configs, convert, evaluate, metrics_io, plots, runs
from resnet_jax.errors import ConfigError, ConfigMismatchError

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
CROP = dict(image_size=32, resize_size=36)
BLOCKS = [f"stage{s}_block{i}" for s, n in enumerate((3, 4, 6, 3), 1) for i in range(1, n + 1)]


def settings(**overrides):
  s = configs.analysis_config()
  s.update(dict(num_images=6, path_images=4, samples_per_length=2, lesion_samples=2))
  s.update(overrides)
  return s


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  root = tmp_path_factory.mktemp("converted")
  weights = str(root / "resnet50.safetensors")
  convert.write_safetensors(convert.random_state_dict("resnet50_imagenet"), weights)
  convert.from_torch_file(weights, "resnet50_imagenet", str(root / "run"))
  return str(root / "run")


@pytest.fixture(scope="module")
def analysed(converted, prepared_imagenet):
  return analyze.analyze_run(converted, "all", settings(), progress=False,
                             data_dir=prepared_imagenet, **CROP)


def loaded(converted, prepared, splits=("test",)):
  """What analyze_run loaded: (config, dataset, model, variables)."""
  overrides = analyze.data_overrides(runs.read_config(converted), analyze.resolve_settings(
      settings()), data_dir=prepared, **CROP)
  return runs.load_run(converted, splits=splits, overrides=overrides)


def test_every_analysis_runs_on_a_converted_resnet50(analysed, converted, prepared_imagenet):
  result = analysed
  assert set(result["analyses"]) == {"response_std", "lesion", "paths"}
  assert result["skipped"] == {"columns": analyze.NOT_FRACTAL}
  assert result["num_blocks"] == 16 and result["block_names"] == BLOCKS
  assert result["num_classes"] == 1000 and result["log2_num_paths"] == 16
  assert result["data"] == {
      "dataset": "imagenet", "data_dir": prepared_imagenet, "classes": 3, "net_classes": 1000,
      "test_images": 6, "train_images": 6, "image_size": 32, "resize_size": 36,
      "order": "the first images of each split in data.prepared_arrays' fixed random order, "
               "centre-cropped"}
  # The downsampling blocks, marked in the lesion figure: the first of stages 2-4.
  assert plots.downsampling_blocks(result["block_names"]) == [4, 8, 14]
  # He's responses are those of the 3x3 layers: one per bottleneck (the 7x7 stem sows none).
  assert list(result["response_std"]) == [f"{b}_response1" for b in BLOCKS]
  assert all(np.isfinite(v) and v > 0 for v in result["response_std"].values())
  # The lesion numbers are those of the analyses on the images loaded.
  _, dataset, model, variables = loaded(converted, prepared_imagenet)
  np.testing.assert_array_equal(
      result["lesion_single"],
      analysis.lesion_single(model, variables, dataset.test_images, dataset.test_labels))
  assert result["lesion_k"]["ks"] == [0, 1, 2, 4, 8, 12, 16]
  assert result["lesion_reorder"]["swaps"] == [1, 2, 4, 8]
  # Paths over 16 blocks: lengths 0-16, the exact decomposition on 17 copies.
  assert result["paths_sampled"]["lengths"] == list(range(17))
  assert np.shape(result["paths_sampled"]["norms"]) == (17, 2)
  assert len(result["paths_exact"]["norm"]) == 17
  assert np.all(np.isfinite(result["paths_exact"]["norm"]))
  assert result["paths_protocol"]["split_images"] == 6  # max(num_images, path_images) loaded
  assert "this net has 16 blocks" in result["path_windows"][1]["rule"]
  # No training curves: a converted net has no metrics.
  assert sorted(os.path.basename(f) for f in result["figures"]) == [
      "lesion_k_reorder.png", "lesion_single.png", "path_gradients.png", "path_lengths.png",
      "response_std.png"]
  # Where the images are is no part of the run: its config is as convert wrote it.
  assert runs.read_config(converted).data_dir == ""
  saved = metrics_io.read_json(os.path.join(converted, analyze.ANALYSIS_FILE))
  assert saved["analyses"]["lesion"]["data"] == result["data"]


def _without_branch(variables, block: str) -> dict:
  """`variables` with block's last BN (bn3) scaled and shifted to zero: its branch adds 0."""
  stage, index = block.split("_")
  i = int(index[len("block"):])
  params = jax.tree.map(np.array, variables["params"])
  if i == 1:
    bn3 = params[stage]["block1"]["bn3"]
    bn3["scale"][:], bn3["bias"][:] = 0, 0
  else:  # a scanned block: row i - 2 of the stage's stacked blocks
    bn3 = params[stage]["blocks"]["block"]["bn3"]
    bn3["scale"][i - 2], bn3["bias"][i - 2] = 0, 0
  return {**variables, "params": params}


def test_a_deleted_bottleneck_is_the_net_without_its_branch(converted, prepared_imagenet):
  """Veit's deletion (the branch removed, the shortcut kept: an identity, or a projection in the
  first block of a stage) of one block, against the same net with that branch's output zeroed in
  its weights; the first block of two stages and a scanned block, one lesion pass for the three."""
  _, dataset, model, variables = loaded(converted, prepared_imagenet)
  images = dataset.test_images[:2]
  blocks = ["stage1_block1", "stage2_block1", "stage3_block4"]
  gates = np.ones((len(blocks), 16), np.float32)
  for row, block in enumerate(blocks):
    gates[row, BLOCKS.index(block)] = 0
  lesioned = analysis.lesion_logits(model, variables, images, gates)
  apply = jax.jit(lambda v: model.apply(v, images, train=False))
  intact = apply(variables)
  for row, block in enumerate(blocks):
    expected = apply(_without_branch(variables, block))
    np.testing.assert_allclose(lesioned[row], expected, rtol=1e-5,
                               atol=1e-5 * np.abs(expected).max(), err_msg=block)
    assert not np.allclose(lesioned[row], intact), block


def command(*args):
  env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
         "JAX_NUM_CPU_DEVICES": str(jax.device_count())}
  return subprocess.run([sys.executable, "-m", "resnet_jax.analyze", *args], env=env,
                        capture_output=True, text=True, timeout=300)


def test_the_command_is_told_where_the_images_are(converted, prepared_imagenet, tmp_path):
  done = command(f"--workdir={converted}", "--analysis=response_std", "--num_images=4")
  assert done.returncode != 0 and "give --data_dir=DIR" in done.stderr
  assert "Traceback" not in done.stderr
  done = command(f"--workdir={converted}", "--analysis=response_std",
                 f"--data_dir={prepared_imagenet}")
  assert done.returncode != 0 and "give --num_images" in done.stderr
  done = command(f"--workdir={converted}", "--analysis=response_std", "--num_images=5",
                 f"--data_dir={prepared_imagenet}", "--image_size=32", "--resize_size=36")
  assert done.returncode == 0, done.stderr
  assert "wrote response_std (checkpoint step 0)" in done.stdout
  assert "the data's 3 classes are read as the net's classes 0-2 of 1000" in done.stderr
  data = metrics_io.read_json(os.path.join(converted, analyze.ANALYSIS_FILE))["data"]
  assert (data["test_images"], data["image_size"], data["data_dir"]) == (5, 32, prepared_imagenet)


def _config(**fields):
  config = configs.base_config()
  config.update(fields)
  return config


def test_a_streamed_data_set_is_read_in_part_and_cropped_as_asked():
  streamed = _config(dataset="imagenet", data_dir="/data/imagenet")
  s = analyze.resolve_settings(settings(num_images=500, path_images=32))
  assert analyze.data_overrides(streamed, s) == {"limit": 500}
  s.num_images = 8
  assert analyze.data_overrides(streamed, s, data_dir="/elsewhere", image_size=64,
                                resize_size=73) == {
      "data_dir": "/elsewhere", "limit": 32, "image_size": 64, "resize_size": 73}
  with pytest.raises(ConfigError, match="smaller than the crop"):
    analyze.data_overrides(streamed, s, image_size=300)
  with pytest.raises(ConfigError, match="give --num_images"):
    analyze.data_overrides(streamed, analyze.resolve_settings(settings(num_images=0)))
  with pytest.raises(ConfigError, match="give --data_dir"):
    analyze.data_overrides(_config(dataset="imagenet"), s)
  # A data set held in memory: its run's size and images; only where they are may change.
  digits = _config(dataset="digits")
  assert analyze.data_overrides(digits, s, data_dir="/digits") == {"data_dir": "/digits"}
  with pytest.raises(ConfigError, match="analysed at the size its run trained on"):
    analyze.data_overrides(digits, s, image_size=16)


def test_the_budget_of_a_pass_follows_the_pixels():
  s = analyze.resolve_settings(settings())
  assert analyze.batch_budget(s, (32, 32)) == analyze.batch_budget(s, (8, 8)) == 512
  assert analyze.batch_budget(s, (224, 224)) == 10
  s.max_batch = 64
  assert analyze.batch_budget(s, (224, 224)) == 64
  with pytest.raises(ConfigError, match="max_batch"):
    analyze.resolve_settings(settings(max_batch=-1))


def test_a_converted_net_keeps_its_classes():
  converted_config = ml_collections.ConfigDict({"num_classes": 1000})
  assert runs.model_classes(converted_config, 3) == 1000
  assert runs.model_classes(_config(), 10) == 10  # a run trained here: its data's
  with pytest.raises(ConfigMismatchError, match="1001 classes and the net 1000"):
    runs.model_classes(converted_config, 1001)


def test_evaluate_reads_the_fixture_with_the_nets_1000_classes(converted, prepared_imagenet):
  config = configs.stream_data(configs.imagenet_recipe("resnet50", "modern"), "imagenet")
  config.update(data_dir=prepared_imagenet, eval_batch_size=8, input_workers=0, **CROP)
  result = evaluate.evaluate_checkpoint(config, converted, progress=False)
  assert result["images"] == 6 and 0 <= result["top1_error"] <= 1
  assert "every parameter and BN statistic" in result["weights"]
