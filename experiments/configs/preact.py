r"""He et al. 2016 "Identity Mappings": original vs full pre-activation units on CIFAR-10.

  python -m resnet_jax.train --config=experiments/configs/preact.py:preact_resnet164 --workdir=runs/c10_preact164

ARG: resnet110 (original unit), preact_resnet110, preact_resnet164 / preact_resnet1001
(bottleneck, as in the paper). Recipe as He 2015 (batch 128, lr 0.1 /10 at 32k and 48k, stop at
64k, wd 1e-4, momentum 0.9), with the appendix's warm-up at 0.01 for the first 400 iterations
for every net.

Expected CIFAR-10 test error (He et al. 2016, Table 3, median of 5 runs): resnet110 6.61,
preact_resnet110 6.37, original bottleneck 164 5.93, preact_resnet164 5.46, preact_resnet1001
4.92 (4.62 at batch 64). CIFAR-100: preact_resnet164 24.33, preact_resnet1001 22.71.
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import recipe


def get_config(arg: str = "preact_resnet110"):
  config = recipe("cifar10", arg or "preact_resnet110")
  config.warmup = "steps"  # the appendix warms up every CIFAR net
  return config
