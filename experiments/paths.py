r"""Path lengths and effective paths (Veit et al. 2016, Fig. 6).

  make paths DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/paths.py:digits --workdir=runs/paths

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Training uses the data set's recipe
(`resnet_jax.configs.recipe`); override it as --config.train.FIELD=VALUE.

Expected (Veit et al. 2016, 54-block ResNet-110 on CIFAR-10): path lengths Binomial(54, 1/2)
(95% between 19 and 35 blocks); gradient per path falls exponentially with length; the total
gradient comes almost entirely from paths of 5-17 blocks (0.45% of all paths).
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import experiment_config, parse_arg


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  return experiment_config(
      "paths",
      ("resnet110",),
      dataset=dataset, smoke=smoke,
      analyses=("paths",),
      title="Path lengths and effective paths (Veit et al. 2016, Fig. 6)")
