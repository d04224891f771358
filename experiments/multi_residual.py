r"""Multi-residual networks: k parallel branches per block at a similar parameter count
(Abdi & Nahavandi 2016), with their lesions and paths.

  make multi-residual DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/multi_residual.py:digits --workdir=runs/multi_residual

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Training uses the data set's recipe
(`resnet_jax.configs.recipe`); override it as --config.train.FIELD=VALUE. The paper's own recipe
and nets (multires200_k5, 10.2M parameters): experiments/configs/multires.py.

Models: multi-residual nets of one depth with k = 1, 2 and 4 branches per block, their widths
scaled so that the parameter counts stay within 6% of each other; k = 1 is the pre-activation
bottleneck ResNet. On digits multires29 (9 blocks, 72-80k parameters) at the scans' native 8x8
(the recipe's 1,500 steps of 128 images; the three with their analyses took 16 minutes on a
2-core CPU shared with other jobs, load ~10: test errors 2.75, 3.25, 3.25% for k = 1, 2, 4); on fashion_mnist multires56 (18 blocks, 145-150k); on
CIFAR multires110 (36 blocks, 1.13-1.15M). A block of k branches offers k + 1 routes: the nets
have 2^n, 3^n and 5^n paths (n log2(k + 1) in the report). The analyses: deleting each block,
each single branch, k random blocks, reordering, and the gradient by path length (the number of
branches taken, Binomial(n, k / (k + 1)) over paths).

Expected (Abdi & Nahavandi 2016, CIFAR-10): at a similar parameter count more branches and fewer
blocks beat depth (multires200_k5 4.35% vs the 1001-layer pre-activation ResNet's 4.62%, both
10.2M); the effective paths stay short (Veit et al. 2016).
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import experiment_config, parse_arg

# Per data set: depth and the widths of k = 1, 2, 4 (similar parameter counts).
MODELS = {
    "digits": (29, {1: (8, 16, 32), 2: (6, 11, 23), 4: (4, 8, 16)}),
    "fashion_mnist": (56, {1: (8, 16, 32), 2: (6, 11, 23), 4: (4, 8, 16)}),
    "cifar10": (110, {1: (16, 32, 64), 2: (11, 23, 45), 4: (8, 16, 32)}),
}
MODELS["cifar100"] = MODELS["cifar10"]


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  depth, widths = MODELS[dataset]
  config = experiment_config(
      "multi_residual",
      tuple(f"multires{depth}_k{k}:widths={w}" for k, w in widths.items()),
      dataset=dataset, smoke=smoke,
      analyses=("lesion", "paths"),
      title="Multi-residual networks: k branches per block at a similar parameter count "
            "(Abdi & Nahavandi 2016)")
  if dataset == "digits" and not smoke:
    config.train.image_size = 8  # the scans' native size: a quarter of the recipe's 16x16 work
  return config
