r"""ResNet vs plain on scikit-learn's digits (1,197 train / 200 val / 400 test, 16x16): the
embedded default that needs no network. About a minute on a 2-core CPU for resnet20.

  python -m resnet_jax.train --config=experiments/configs/digits.py:resnet20 --workdir=runs/digits_resnet20

ARG is the model name (default resnet20), e.g. `:plain56` or `:resnet56`. The paper recipe
(SGD 0.9, wd 1e-4, lr 0.1 /10 at 50% and 75% of the steps) at batch 128 for 1,500 steps
(about 160 epochs). Digits are too small for He et al.'s numbers; what to expect is the ordering
of He et al. 2015 Fig. 6: plain-56 trains worse than plain-20, ResNet-56 better than plain-56.
Augmentation: 2-pixel pad-and-crop, no flip (a mirrored digit is another symbol).
"""
from resnet_jax.configs import recipe


def get_config(arg: str = "resnet20"):
  return recipe("digits", arg or "resnet20")
