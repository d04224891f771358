r"""Wide vs deep: Wide ResNets against the ResNet with as many blocks (Zagoruyko & Komodakis 2016).

  make wide DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/wide.py:digits --workdir=runs/wide

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Training uses the data set's
recipe (`resnet_jax.configs.recipe`) with the WRN paper's optimiser for every net (Nesterov,
weight decay 5e-4, lr x0.2 at 30/60/80% of the steps); override it as --config.train.FIELD=VALUE.

Models: a WRN-d-k has (d - 4) / 6 blocks per stage, as many as resnet{d - 2}. On digits, ResNet-14
vs WRN-16-2 with dropout 0.3 (WRN-16-4 costs about ten ResNet-14s on a CPU, too slow for a
10-minute run); on Fashion-MNIST (a CPU budget) ResNet-14 vs WRN-16-4; on CIFAR, ResNet-38 vs
WRN-40-4, and WRN-28-10 (both with dropout 0.3), the two nets of the Fashion-MNIST benchmark
table.

Expected: the wide net beats the deep thin one. CIFAR-10 (mean/std, median of 5): WRN-40-4 4.53,
WRN-28-10 4.00 (3.89 with dropout) % test error, vs ResNet-110 6.43 (He et al. 2015); Fashion-MNIST
benchmark table (zalandoresearch/fashion-mnist): WRN-40-4 96.7 %, WRN-28-10 95.9 % accuracy.
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import experiment_config, parse_arg

MODELS = {
    "digits": ("resnet14", "wrn16_2:dropout=0.3"),
    "fashion_mnist": ("resnet14", "wrn16_4:dropout=0.3"),
    "default": ("resnet38", "wrn40_4:dropout=0.3", "wrn28_10:dropout=0.3"),
}


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  config = experiment_config(
      "wide",
      MODELS.get(dataset, MODELS["default"]),
      dataset=dataset, smoke=smoke,
      analyses=(),
      title="Wide vs deep: Wide ResNets against the ResNet with as many blocks "
            "(Zagoruyko & Komodakis 2016)")
  config.train.nesterov = True
  config.train.weight_decay = 5e-4
  config.train.lr_boundaries = (0.3, 0.6, 0.8)  # epochs 60, 120, 160 of 200
  config.train.lr_decay = 0.2
  return config
