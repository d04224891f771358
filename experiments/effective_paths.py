r"""Effective-path training (Veit et al. 2016 §5): ResNet-110 trained with exactly 23 of its 54
blocks active in every mini-batch (uniformly chosen; the others' branches skipped), against the
same net trained whole.

  make effective-paths DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/effective_paths.py:digits --workdir=runs/effective_paths

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Training uses the data set's recipe
(`resnet_jax.configs.recipe`) for both nets; override it as --config.train.FIELD=VALUE.

23 of 54 blocks centres the trained path lengths at 11.5 blocks, inside the effective range of
5-17 that carries almost all of the gradient (Veit Fig. 6c); at test time every block runs, its
branch multiplied by 23/54, its survival probability (§5 does not say what the authors did at
test time; their released code's stochastic depth scales each branch so, see
`network.ResNet.active_blocks`). On digits and fashion_mnist (sizes meant for a CPU) the nets are
ResNet-32 with 6 of its 15 blocks active (about the same share, 0.40 vs 0.43), and the inactive branches are
computed and multiplied by 0 (`skip_dropped=False`, see experiments/stochastic_depth.py).

Expected (Veit et al. 2016 §5, CIFAR-10): 5.96 % (23 of 54 blocks per mini-batch) vs 6.10 % (full
training), "no statistically significant difference".
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import experiment_config, parse_arg

CPU_DATASETS = ("digits", "fashion_mnist")


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  if dataset in CPU_DATASETS:
    model, options = "resnet32", "active_blocks=6,skip_dropped=False"
  else:
    model, options = "resnet110", "active_blocks=23"
  return experiment_config(
      "effective_paths",
      (model, f"{model}:{options}"),
      dataset=dataset, smoke=smoke,
      analyses=("lesion", "paths"),
      title="Training only effective paths: 23 of 54 blocks per mini-batch (Veit et al. 2016 §5)")
