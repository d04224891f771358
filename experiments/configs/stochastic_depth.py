r"""Huang et al. 2016 "Deep Networks with Stochastic Depth": ResNet-110 with p_L = 0.5 on CIFAR-10.

  python -m resnet_jax.train --config=experiments/configs/stochastic_depth.py:sd_resnet110 --workdir=runs/c10_sd110

ARG: model name (default sd_resnet110; resnet110 for the constant-depth baseline of the same
recipe, sd_resnet1202 for the 1202-layer net). The paper's recipe: 500 epochs of the 45k/5k split
at batch 128 (175,782 steps), lr 0.1 /10 at 50% and 75%, Nesterov momentum 0.9, wd 1e-4, pad-4
crop + flip, per-pixel mean. One Bernoulli draw per block per mini-batch, linear decay to p_L, a
dropped branch not computed, branches multiplied by p_l at test time (`get_model` docs).

Expected CIFAR-10+ test error (Huang et al. 2016, Table 1): constant depth 6.41, stochastic depth
5.25 (110 layers); 1202 layers 4.91. CIFAR-100+: 27.22 -> 24.58. Training time about 25% lower
(expected active blocks (3L-1)/4 = 40.25 of 54). GPU time: not yet measured by this project.
"""
from resnet_jax.configs import recipe

EPOCHS = 500
TRAIN_IMAGES = 45_000


def get_config(arg: str = "sd_resnet110"):
  config = recipe("cifar10", arg or "sd_resnet110")
  config.num_steps = -(-EPOCHS * TRAIN_IMAGES // config.batch_size)
  config.nesterov = True
  config.eval_every = config.checkpoint_every = 5_000
  return config
