r"""Plain vs residual nets on Fashion-MNIST (60k real 28x28 training images, offline through
Debian's dataset-fashion-mnist IDX files): the larger real benchmark available without network.

  python -m resnet_jax.train --config=experiments/configs/fashion_mnist.py:resnet56 --workdir=runs/fm_resnet56

ARG: model name. He et al. 2015's CIFAR recipe (55k/5k split, per-pixel mean, pad-4 crop + flip,
SGD 0.9, wd 1e-4, lr 0.1 /10 at 50% and 75%) shortened to 8,000 steps at batch 128 (~19 epochs),
so a GPU runs the whole depth sweep in minutes. No paper reports these nets on Fashion-MNIST; the
claim to check is the ordering of He et al. 2015 Fig. 6: plain nets get worse with depth, ResNets
better.
"""
from resnet_jax.configs import recipe


def get_config(arg: str = "resnet20"):
  return recipe("fashion_mnist", arg or "resnet20")
