"""`python -m resnet_jax.evaluate --config=FILE.py[:ARG] --checkpoint=DIR [--crops=1|10]`:
top-1 and top-5 error of a checkpoint, written as JSON."""
from absl import flags

from resnet_jax import cli, evaluate, metrics_io

_CONFIG = cli.define_config("experiments/configs/FILE.py[:ARG]: the model and the data.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A run's workdir or a converted directory.")
_CROPS = flags.DEFINE_integer("crops", 1, "1: the centre crop; 10: He 2015's ten crops.")
_SPLIT = flags.DEFINE_enum("split", "test", ("test", "val"),
                           "test: the data set's test split (ImageNet: its validation images).")
_STEP = flags.DEFINE_integer("step", None, "The checkpoint step (default: the latest).")
_OUT = flags.DEFINE_string("out", None,
                           "The JSON file (default: CHECKPOINT/eval_SPLIT_Kcrop.json).")
_DISTRIBUTED = cli.define_distributed()
flags.mark_flags_as_required(["config", "checkpoint"])


def main(argv):
  cli.start(argv, _DISTRIBUTED.value)
  result = evaluate.evaluate_checkpoint(_CONFIG.value, _CHECKPOINT.value, crops=_CROPS.value,
                                        split=_SPLIT.value, step=_STEP.value)
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    out = _OUT.value or evaluate.default_output(_CHECKPOINT.value, _SPLIT.value, _CROPS.value)
    metrics_io.write_json(out, result)
    print(f"{result['model']} on {result['images']} {result['dataset']} {result['split']} images, "
          f"{result['crops']} crop(s): top-1 error {100 * result['top1_error']:.2f} %, top-5 "
          f"error {100 * result['top5_error']:.2f} % -> {out}")


if __name__ == "__main__":
  cli.run(main)
