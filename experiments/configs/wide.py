r"""Zagoruyko & Komodakis 2016, Wide Residual Networks, on CIFAR-10 (or CIFAR-100).

  python -m resnet_jax.train --config=experiments/configs/wide.py:wrn28_10 --workdir=runs/c10_wrn28_10
  python -m resnet_jax.train --config=experiments/configs/wide.py:wrn28_10,cifar100 --workdir=runs/c100_wrn28_10

ARG: MODEL[,DATASET], a wrn{6n+4}_{k} name (default wrn28_10) and cifar10 (default) or cifar100.
Recipe of the authors' code (scripts/train_cifar.sh, train.lua): SGD with Nesterov momentum 0.9,
weight decay 5e-4, batch 128, lr 0.1 multiplied by 0.2 at epochs 60, 120 and 160 of 200, dropout
0.3 between each block's convolutions (`--config.model_options=""` for none), per-channel
mean/std normalisation, flip and 4-pixel crops (the authors pad by reflection, we by zeros).
200 epochs of the 45k training images (5k held out for validation) are 70,400 steps.

Expected test error, mean/std normalisation, median of 5 runs (official README and Table 5):
CIFAR-10 WRN-40-4 4.53, WRN-16-8 4.27, WRN-28-10 4.00, WRN-28-10 with dropout 3.89; CIFAR-100
21.18, 20.43, 19.25, 18.85.
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import recipe

DATASETS = ("cifar10", "cifar100")


def get_config(arg: str = "wrn28_10"):
  model, _, dataset = (arg or "wrn28_10").partition(",")
  if dataset and dataset not in DATASETS:
    raise ValueError(f"ARG must be MODEL[,DATASET] with DATASET one of {DATASETS}, got {arg!r}")
  config = recipe(dataset or "cifar10", model or "wrn28_10")
  config.model_options = "dropout=0.3"
  config.nesterov = True
  config.weight_decay = 5e-4
  config.num_steps = 70_400
  config.lr_boundaries = (0.3, 0.6, 0.8)  # epochs 60, 120, 160 of 200
  config.lr_decay = 0.2
  config.normalization = "channel_mean_std"
  return config
