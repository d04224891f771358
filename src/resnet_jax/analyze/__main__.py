"""`python -m resnet_jax.analyze --workdir=DIR [--analysis=...]`: analyse a trained run."""
import os

from absl import flags

from resnet_jax import analyze, cli, configs
from resnet_jax.errors import ConfigError

_DEFAULTS = analyze.resolve_settings(configs.analysis_config())
_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.")
_ANALYSIS = flags.DEFINE_string("analysis", "all",
                                "response_std | lesion | paths | all (comma-separated).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", _DEFAULTS.num_images,
                                   "Test images for responses and lesions (0: all).")
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
                       lesion_samples=_LESION_SAMPLES.value))
  settings = analyze.resolve_settings(settings)
  result = analyze.analyze_run(_WORKDIR.value, names, settings)
  for name in names:
    if name in result["skipped"]:
      print(f"skipped {name}: {result['skipped'][name]}")
  done = [n for n in names if n not in result["skipped"]]
  print(f"wrote {', '.join(done) or 'no analysis'} (checkpoint step {result['checkpoint_step']}) "
        f"into {os.path.join(_WORKDIR.value, analyze.ANALYSIS_FILE)}, and "
        f"{len(result['figures'])} figures in {os.path.join(_WORKDIR.value, 'figures')}")


if __name__ == "__main__":
  cli.run(main)
