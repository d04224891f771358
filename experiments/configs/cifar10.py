r"""He et al. 2015 §4.2 on CIFAR-10 (or CIFAR-100 with --config.dataset=cifar100).

  python -m resnet_jax.train --config=experiments/configs/cifar10.py:resnet110 --workdir=runs/c10_resnet110

ARG: any CIFAR model name (resnet20 ... resnet1202, plain20 ... plain110). The recipe: 45k/5k
train/val split, per-pixel mean subtracted, pad-4 crop + flip, batch 128, SGD momentum 0.9, weight
decay 1e-4, lr 0.1 divided by 10 at 32k and 48k iterations, stop at 64k. ResNet-110 and -1202 warm
up at lr 0.01 for the first 400 iterations (the paper: "until the training error is below 80%
(about 400 iterations)"; --config.warmup=error follows that wording instead).

Expected test error, CIFAR-10 (He et al. 2015, Table 6; the paper's best run, 110: mean 6.61):
  resnet20 8.75, resnet32 7.51, resnet44 7.17, resnet56 6.97, resnet110 6.43, resnet1202 7.93.
Plain nets appear only in Fig. 6: deeper plain nets have *higher* training and test error
(plain-110 above 60%). GPU time: not yet measured by this project.
"""
from resnet_jax.configs import recipe


def get_config(arg: str = "resnet20"):
  return recipe("cifar10", arg or "resnet20")
