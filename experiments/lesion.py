r"""Lesion study: deleting and reordering blocks (Veit et al. 2016, Figs. 3 and 5).

  make lesion DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/lesion.py:digits --workdir=runs/lesion

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Training uses the data set's recipe
(`resnet_jax.configs.recipe`); override it as --config.train.FIELD=VALUE.

Expected (Veit et al. 2016, figures only): deleting any single non-downsampling block of
ResNet-110 barely changes its CIFAR-10 error, while deleting a layer of a plain (VGG-like) net
drops it to chance; error grows smoothly with the number of deleted blocks and as Kendall tau of a
reordering falls.
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import experiment_config, parse_arg


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  return experiment_config(
      "lesion",
      ("plain20", "resnet110"),
      dataset=dataset, smoke=smoke,
      analyses=("lesion",),
      title="Lesion study: deleting and reordering blocks (Veit et al. 2016, Figs. 3 and 5)")
