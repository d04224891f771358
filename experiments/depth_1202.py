r"""Very deep: ResNet-1202 vs ResNet-110 (He et al. 2015, Table 6).

  make depth-1202 DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/depth_1202.py:digits --workdir=runs/depth_1202

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Training uses the data set's recipe
(`resnet_jax.configs.recipe`); override it as --config.train.FIELD=VALUE.

Expected on CIFAR-10: ResNet-110 6.43 %, ResNet-1202 7.93 % test error with training
error below 0.1 % (overfitting, 19.4M parameters). Both warm up at lr 0.01 for 400 steps.
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import experiment_config, parse_arg


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  return experiment_config(
      "depth_1202",
      ("resnet110", "resnet1202"),
      dataset=dataset, smoke=smoke,
      analyses=(),
      title="Very deep: ResNet-1202 vs ResNet-110 (He et al. 2015, Table 6)")
