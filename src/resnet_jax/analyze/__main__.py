"""`python -m resnet_jax.analyze --workdir=DIR [--analysis=...]`: analyse a trained run."""
import os

from absl import flags

from resnet_jax import analyze, cli, configs

_DEFAULTS = configs.analysis_config()
_WORKDIR = flags.DEFINE_string("workdir", None, "A training run's workdir.")
_ANALYSIS = flags.DEFINE_string("analysis", "all",
                                "response_std | lesion | paths | all (comma-separated).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", _DEFAULTS.num_images,
                                   "Test images for responses and lesions (0: all).")
_PATH_IMAGES = flags.DEFINE_integer("path_images", _DEFAULTS.path_images,
                                    "Test images for the path gradients.")
_SAMPLES = flags.DEFINE_integer("samples_per_length", _DEFAULTS.samples_per_length,
                                "Sampled single paths per length (Veit: ~1000).")
_LESION_SAMPLES = flags.DEFINE_integer("lesion_samples", _DEFAULTS.lesion_samples,
                                       "Random subsets / orders per sweep point.")
flags.mark_flags_as_required(["workdir"])


def main(argv):
  cli.start(argv)
  names = analyze.ANALYSES if _ANALYSIS.value == "all" else tuple(_ANALYSIS.value.split(","))
  settings = configs.analysis_config()
  settings.update(dict(num_images=_NUM_IMAGES.value, path_images=_PATH_IMAGES.value,
                       samples_per_length=_SAMPLES.value, lesion_samples=_LESION_SAMPLES.value))
  result = analyze.analyze_run(_WORKDIR.value, names, settings)
  print(f"wrote {os.path.join(_WORKDIR.value, analyze.ANALYSIS_FILE)} and "
        f"{len(result['figures'])} figures in {os.path.join(_WORKDIR.value, 'figures')}")


if __name__ == "__main__":
  cli.run(main)
