r"""The ensemble view across the families: test error against the number of paths (log2), with
each model's parameter count beside its point, so that depth, width, branches and size are not
confused (Veit et al. 2016; Abdi & Nahavandi 2016).

  make ensemble-size DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/ensemble_size.py:digits --workdir=runs/ensemble_size

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). One budget for every model: the
data set's recipe (`resnet_jax.configs.recipe`), at the scans' native 8x8 on digits; override it
as --config.train.FIELD=VALUE.

The models add paths in different ways (log2 of the count in the report and the figure):
  * depth: ResNets of 3, 9 and 27 blocks (log2 = n);
  * branches per block: multi-residual nets of 9 blocks with k = 1, 2, 4 branches at about the
    same parameter count (n log2(k + 1));
  * width: a Wide ResNet, more channels and no more paths than a ResNet of the same depth
    (WRN-16-2 on the CPU data sets; WRN-40-4 and WRN-28-10 on CIFAR);
  * connections: a DenseNet-BC (each dense layer's channels kept or not: 2^layers paths);
  * columns: a FractalNet (f(C)^B paths, f(C) = f(C-1)^2 + 1).
On CIFAR the same families at the papers' sizes.

Expected (the mission's conclusions, not a paper's number): error falls as paths are added by
depth or by branches per block at a fixed size, while width helps without adding paths.
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import experiment_config, parse_arg

# Per data set size: the models, small enough for a 2-core CPU on digits and fashion_mnist.
SMALL = ("resnet8", "resnet20", "resnet56",
         "multires29_k1:widths=(8, 16, 32)", "multires29_k2:widths=(6, 11, 23)",
         "multires29_k4:widths=(4, 8, 16)",
         "wrn16_2",
         "densenet_bc28_k12:memory_efficient=False",
         "fractalnet_c3:widths=(8, 16, 32, 64, 64)")
PAPER = ("resnet20", "resnet56", "resnet110",
         "multires110_k1:widths=(16, 32, 64)", "multires110_k2:widths=(11, 23, 45)",
         "multires110_k4:widths=(8, 16, 32)",
         "wrn40_4", "wrn28_10", "densenet_bc100_k12", "fractalnet_c3")


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  config = experiment_config(
      "ensemble_size",
      SMALL if dataset in ("digits", "fashion_mnist") else PAPER,
      dataset=dataset, smoke=smoke,
      analyses=(),
      title="Ensemble size vs error: depth, branches per block, width, connections, columns")
  if dataset == "digits" and not smoke:
    config.train.image_size = 8
  return config
