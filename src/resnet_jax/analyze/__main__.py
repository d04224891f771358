"""`python -m resnet_jax.analyze --workdir=DIR [--analysis=...]`: analyse a trained or converted
run (a converted ImageNet net: `--data_dir=PREPARED --num_images=N`)."""
import os

from absl import flags

from resnet_jax import analyze, cli, configs
from resnet_jax.errors import ConfigError

_DEFAULTS = analyze.resolve_settings(configs.analysis_config())
_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.")
_ANALYSIS = flags.DEFINE_string("analysis", "all",
                                "response_std | lesion | paths | all (comma-separated).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", _DEFAULTS.num_images,
                                   "Test images for responses and lesions (0: all; a streamed "
                                   "data set needs a number).")
_PATH_IMAGES = flags.DEFINE_integer("path_images", _DEFAULTS.path_images,
                                    "Images per path-gradient batch.")
_PATH_SPLIT = flags.DEFINE_enum("path_split", _DEFAULTS.path_split, analyze.PATH_SPLITS,
                                "Split the path-gradient batches come from (Veit: train).")
_PATH_BATCH = flags.DEFINE_enum("path_batch", _DEFAULTS.path_batch, analyze.PATH_BATCHES,
                                "random: a fresh random batch per sampled path (Veit), the exact "
                                "decomposition on one; fixed: every path on the first images.")
_PATH_WINDOW = flags.DEFINE_list("path_window", [str(b) for b in _DEFAULTS.path_window],
                                 "Path lengths lo,hi whose share of the gradient is reported.")
_SAMPLES = flags.DEFINE_integer("samples_per_length", _DEFAULTS.samples_per_length,
                                "Sampled single paths per length (Veit: ~1000).")
_LESION_SAMPLES = flags.DEFINE_integer("lesion_samples", _DEFAULTS.lesion_samples,
                                       "Random subsets / orders per sweep point.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "Where the run's data are, if not where its "
                                "config says (a converted net's names none: a prepared ImageNet "
                                "directory).")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 0, "A streamed data set's crop side (0: the "
                                   "run's; 224 for a converted net).")
_RESIZE_SIZE = flags.DEFINE_integer("resize_size", 0, "A streamed data set's shorter side before "
                                    "the centre crop (0: the run's; 256 for a converted net).")
_MAX_BATCH = flags.DEFINE_integer("max_batch", _DEFAULTS.max_batch,
                                  "Images per pass, mask rows, routes and path copies counted "
                                  "(0: 512 at 32x32, as many pixels at larger sizes).")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  cli.start(argv)
  # Refused (errors.ConfigError, one line) before the checkpoint or any data is loaded.
  names = analyze.check_analyses(_ANALYSIS.value)
  try:
    window = tuple(int(b) for b in _PATH_WINDOW.value)
  except ValueError:
    raise ConfigError(f"--path_window must be two integers lo,hi, got {_PATH_WINDOW.value}"
                      ) from None
  settings = _DEFAULTS
  settings.update(dict(num_images=_NUM_IMAGES.value, path_images=_PATH_IMAGES.value,
                       path_split=_PATH_SPLIT.value, path_batch=_PATH_BATCH.value,
                       path_window=window, samples_per_length=_SAMPLES.value,
                       lesion_samples=_LESION_SAMPLES.value, max_batch=_MAX_BATCH.value))
  settings = analyze.resolve_settings(settings)
  result = analyze.analyze_run(_WORKDIR.value, names, settings, data_dir=_DATA_DIR.value,
                               image_size=_IMAGE_SIZE.value, resize_size=_RESIZE_SIZE.value)
  for name in names:
    if name in result["skipped"]:
      print(f"skipped {name}: {result['skipped'][name]}")
  done = [n for n in names if n not in result["skipped"]]
  print(f"wrote {', '.join(done) or 'no analysis'} (checkpoint step {result['checkpoint_step']}) "
        f"into {os.path.join(_WORKDIR.value, analyze.ANALYSIS_FILE)}, and "
        f"{len(result['figures'])} figures in {os.path.join(_WORKDIR.value, 'figures')}")


if __name__ == "__main__":
  cli.run(main)
