r"""Stochastic depth (Huang et al. 2016) against the constant-depth ResNet of the same depth, with
the lesion study of both (Veit et al. 2016 Fig. 8).

  make stochastic-depth DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/stochastic_depth.py:digits --workdir=runs/stochastic_depth

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Training uses the data set's recipe
(`resnet_jax.configs.recipe`) for both nets; override it as --config.train.FIELD=VALUE.

Models: resnet110 and sd_resnet110 (p_L = 0.5, linear decay) on CIFAR, where dropped branches
are skipped (the paper's saving). On digits and fashion_mnist, the sizes meant for a CPU:
resnet32 (15 blocks) and its SD twin, which computes a dropped branch and multiplies it by 0
(`skip_dropped=False`: the same outputs and gradients). That variant was chosen when XLA's CPU
backend ran convolution gradients inside a conditional about ten times slower; since the
canonical-form gradients of `layers.sliced_grad_conv` skipping saves time on a CPU too
(ResNet-110: 0.755 of constant depth, `make bench`; this resnet32 at 16x16, batch 128: 0.924
skipped against 0.998 zeroed, `python benchmarks/stochastic_depth.py --depth=32
--image_size=16 --rounds=3`, 2026-12-03), and the CPU rows recorded in docs/results.md keep the
zeroing variant they were measured with.

Expected: CIFAR-10+ 6.41 (constant) vs 5.25 % (stochastic depth), Huang et al. 2016 Table 1.
Lesions (Veit et al. 2016 Fig. 8): the SD net is slightly more resilient to deleting blocks, and
mainly its dependence on the downsampling blocks is reduced.
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import experiment_config, parse_arg

CPU_DATASETS = ("digits", "fashion_mnist")


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  models = (("resnet32", "sd_resnet32:skip_dropped=False") if dataset in CPU_DATASETS
            else ("resnet110", "sd_resnet110"))
  return experiment_config(
      "stochastic_depth",
      models,
      dataset=dataset, smoke=smoke,
      analyses=("lesion",),
      title="Stochastic depth vs constant depth, and their lesions (Huang et al. 2016; Veit et "
            "al. 2016 Fig. 8)")
