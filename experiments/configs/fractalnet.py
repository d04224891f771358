r"""Larsson et al. 2017 "FractalNet": the CIFAR-10 recipe (CIFAR-100 with --config.dataset=cifar100).

  python -m resnet_jax.train --config=experiments/configs/fractalnet.py:fractalnet_c3 --workdir=runs/c10_fractalnet_c3

ARG: fractalnet_c3 (the paper's 20-layer net: B = 5 blocks of 64-128-256-512-512 channels,
C = 3 columns; 33,714,314 parameters in the official generator, the paper quotes 38.6M) or
fractalnet_c4 (40 layers, 76,084,554). Drop-path is on by default (local 0.15, global in half the
mini-batches); the paper's "+dropout" rows add --config.model_options=dropout=True (0 / .1 / .2 /
.3 / .4 per block) and its plain rows drop_path=0.0,global_drop=0.0. Recipe
(`configs.fractalnet_recipe`): 400 epochs of the 45k training images at batch 100 (180k steps),
SGD momentum 0.9, lr 0.02 divided by 10 at epochs 200, 300, 350 and 375; pad-4 crop + flip;
weight decay 1e-4 (the paper names none).

Expected test error (Larsson et al. 2017, FractalNet 20 layers): C10+ 5.22; with drop-path +
dropout C10 7.33, C10+ 4.60, C100 28.20, and its deepest column alone C10 7.27, C10+ 4.68,
C100 29.05 (+: crop and flip; the recipe's augmentation, so the C10+ rows compare).
Reproductions fall short (khanrc/pt.fractalnet: 6.04 % on C10+).
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import fractalnet_recipe


def get_config(arg: str = "fractalnet_c3"):
  return fractalnet_recipe("cifar10", arg or "fractalnet_c3")
