r"""Degradation: plain vs residual nets of 20-110 layers (He et al. 2015, Fig. 6).

  make degradation DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/degradation.py:digits --workdir=runs/degradation

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Training uses the data set's recipe
(`resnet_jax.configs.recipe`); override it as --config.train.FIELD=VALUE.

Expected on CIFAR-10 (He et al. 2015, Table 6 and Fig. 6): ResNet test error 8.75 / 7.51 /
7.17 / 6.97 / 6.43 % at 20 / 32 / 44 / 56 / 110 layers; plain nets get *worse* with depth in
training and test error (plain-110 above 60%). On digits and Fashion-MNIST the claim to check is
the same ordering. Measured on Fashion-MNIST (docs/results.md): plain 7.95 / 9.11 / 10.89 / 14.58 % and
ResNet 7.60 / 7.83 / 7.70 / 8.11 % test error at 20 / 32 / 44 / 56 layers, one seed: plain nets
degrade, ResNets do not, but do not yet gain from depth at 8,000 steps.
GPU time (one H200, Fashion-MNIST, 8,000 steps of 128): 25 s for ResNet-20 and 53 s for ResNet-56
in train steps (3.2 / 6.6 ms each); the four 20- and 56-layer nets took 190 s side by side
(`python -m resnet_jax.concurrent_runs`), compilation and evaluation included.
"""
from resnet_jax.configs import experiment_config, parse_arg


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  return experiment_config(
      "degradation",
      ("plain20", "plain32", "plain44", "plain56", "plain110",
       "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"),
      dataset=dataset, smoke=smoke,
      analyses=(),
      title="Degradation: plain vs residual nets of 20-110 layers (He et al. 2015, Fig. 6)")
