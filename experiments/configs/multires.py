r"""Abdi & Nahavandi 2016 "Multi-Residual Networks" on CIFAR-10 (or CIFAR-100 with
--config.dataset=cifar100).

  python -m resnet_jax.train --config=experiments/configs/multires.py:multires200_k5 --workdir=runs/c10_multires200_k5

ARG: multires{9n+2}_k{k}: multires200_k5 (10,187,354 parameters, the paper's 10.2M) or
multires398_k5 (20,388,314, the paper's 20.4M); widths via --config.model_options. The recipe of
the official code (masabdi/multi-resnet, built on fb.resnet.torch): batch 64 and 200 epochs (its
README's command), SGD with Nesterov momentum 0.9, weight decay 1e-4 on every parameter, lr 0.1
divided by 10 at epochs 81 and 122 (fb.resnet.torch's CIFAR schedule; the repository's own
train.lua is not in our copy, so this schedule is inherited, not read), no warm-up. Here 200
epochs of the 45k training images after the 5k validation split (fb.resnet.torch trains on all
50k).

Expected test error (Abdi & Nahavandi 2016 and the official README; CIFAR-10 / CIFAR-100):
multires200_k5 4.35 (4.36 +- 0.04) / 20.42 (20.44 +- 0.15); multires398_k5 3.92 / 20.59; the
1001-layer pre-activation ResNet of the same 10.2M parameters 4.62 / 22.71.
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import recipe

EPOCH_STEPS = 45_000 / 64  # steps of batch 64 per epoch of the 45k training images


def get_config(arg: str = "multires200_k5"):
  config = recipe("cifar10", arg or "multires200_k5")
  config.batch_size = 64
  config.num_steps = round(200 * EPOCH_STEPS)  # 140,625
  config.lr_boundaries = (81 / 200, 122 / 200)
  config.nesterov = True
  config.warmup = "none"
  config.checkpoint_every = config.eval_every = 5_000
  return config
