r"""Original vs full pre-activation units (He et al. 2016, Table 3).

  make preact DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/preact.py:digits --workdir=runs/preact

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Training uses the data set's recipe
(`resnet_jax.configs.recipe`); override it as --config.train.FIELD=VALUE.

Every net warms up at lr 0.01 for the first 400 steps, as the paper's appendix does for all
CIFAR nets. Expected on CIFAR-10 (median of 5): ResNet-110 6.61, pre-act ResNet-110 6.37, pre-act
ResNet-164 (bottleneck) 5.46 % test error.
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import experiment_config, parse_arg


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  config = experiment_config(
      "preact",
      ("resnet110", "preact_resnet110", "preact_resnet164"),
      dataset=dataset, smoke=smoke,
      analyses=(),
      title="Original vs full pre-activation units (He et al. 2016, Table 3)")
  config.train.warmup = "steps"  # the appendix warms up every CIFAR net at 0.01 for 400 steps
  return config
