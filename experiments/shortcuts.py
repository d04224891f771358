r"""Shortcut options A (zero-pad), B (projection where shapes change), C (all projections).

  make shortcuts DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/shortcuts.py:digits --workdir=runs/shortcuts

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Training uses the data set's recipe
(`resnet_jax.configs.recipe`); override it as --config.train.FIELD=VALUE.

He et al. 2015 compare the options on ImageNet (Table 3, ResNet-34 top-1 error: A 25.03,
B 24.52, C 24.19 %): small differences, C slightly best. On CIFAR the paper uses A only.
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import experiment_config, parse_arg


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  return experiment_config(
      "shortcuts",
      ("resnet32:A", "resnet32:B", "resnet32:C"),
      dataset=dataset, smoke=smoke,
      analyses=(),
      title="Shortcut options A (zero-pad), B (projection where shapes change), "
            "C (all projections)")
