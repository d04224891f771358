r"""Han, Kim & Kim 2017, Deep Pyramidal Residual Networks, on CIFAR-10 (or CIFAR-100).

  python -m resnet_jax.train --config=experiments/configs/pyramid.py:pyramidnet110_a48 --workdir=runs/c10_pyramidnet110_a48
  python -m resnet_jax.train --config=experiments/configs/pyramid.py:pyramidnet_bottleneck272_a200,cifar100 --workdir=runs/c100_pyramid272

ARG: MODEL[,DATASET], a pyramidnet{6n+2}_a{alpha}, pyramidnet_mul{6n+2}_a{alpha} or
pyramidnet_bottleneck{9n+2}_a{alpha} name (default pyramidnet110_a48; alpha may be fractional, as
the official multiplicative PyramidNet-110's, pyramidnet_mul110_a4.75) and cifar10 (default) or
cifar100. Recipe of the authors' code (fb.resnet.torch with their schedule): 300 epochs, batch
128, SGD with Nesterov momentum 0.9, weight decay 1e-4, lr 0.1 on CIFAR-10 and 0.5 on CIFAR-100,
divided by 10 at epochs 150 and 225; per-channel mean/std normalisation, flip and 4-pixel crops.
300 epochs of the 45k training images (5k held out for validation) are 105,500 steps.

Expected test error (official README; the paper's CIFAR-100 figure for alpha 48 is 23.12):
CIFAR-10 / CIFAR-100: pyramidnet110_a48 4.62 / 23.31, pyramidnet110_a84 4.27 / 20.21,
pyramidnet110_a270 3.73 / 18.25, pyramidnet_mul110_a8 4.50 / 20.94,
pyramidnet_bottleneck272_a200 3.31 / 16.35.
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import recipe

DATASETS = ("cifar10", "cifar100")
LEARNING_RATES = {"cifar10": 0.1, "cifar100": 0.5}


def get_config(arg: str = "pyramidnet110_a48"):
  model, _, dataset = (arg or "pyramidnet110_a48").partition(",")
  dataset = dataset or "cifar10"
  if dataset not in DATASETS:
    raise ValueError(f"ARG must be MODEL[,DATASET] with DATASET one of {DATASETS}, got {arg!r}")
  config = recipe(dataset, model or "pyramidnet110_a48")
  config.nesterov = True
  config.learning_rate = LEARNING_RATES[dataset]
  config.num_steps = 105_500
  config.lr_boundaries = (0.5, 0.75)  # epochs 150 and 225 of 300
  config.normalization = "channel_mean_std"
  return config
