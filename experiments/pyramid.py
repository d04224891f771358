r"""PyramidNet vs ResNet and its stochastic-depth twin, at one depth: training and single-block
lesions (Han et al. 2017; Veit et al. 2016 Fig. 3).

  make pyramid DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/pyramid.py:digits --workdir=runs/pyramid

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Training uses the data set's
recipe (`resnet_jax.configs.recipe`) with Nesterov momentum, as PyramidNet's code (fb.resnet.torch)
has it; override it as --config.train.FIELD=VALUE.

Models of one depth and about one size: on digits and Fashion-MNIST (CPU budgets) ResNet-32
(0.46M), its stochastic-depth twin (p_L = 0.5; dropped branches computed and zeroed, see
experiments/stochastic_depth.py) and the additive PyramidNet-32 with alpha 48 (0.51M); on CIFAR
ResNet-110 (1.73M), SD ResNet-110 and PyramidNet-110 alpha 48 (1.77M). The lesion analysis
deletes each block in turn: a PyramidNet's downsampling units add a pooled, zero-padded input,
where the ResNet's subsample it; reordering is skipped for the PyramidNet (its units differ in
width).

Expected: CIFAR-10 test error ResNet-110 6.43 (He et al. 2015), SD ResNet-110 5.25 (Huang et al.
2016), pyramidnet110_a48 4.62 (official README; 4.58 in the paper). Veit et al.: deleting one
block barely hurts a ResNet except at the downsampling blocks; stochastic depth makes the net
slightly more resilient.
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import experiment_config, parse_arg

# On the CPU data sets the SD twin computes dropped branches and zeroes them (skip_dropped=False:
# the same outputs and gradients), as its recorded results were measured; see
# experiments/stochastic_depth.py for why, and why skipping no longer costs time on a CPU.
CPU_MODELS = ("resnet32", "sd_resnet32:skip_dropped=False", "pyramidnet32_a48")
MODELS = {
    "digits": CPU_MODELS,
    "fashion_mnist": CPU_MODELS,
    "default": ("resnet110", "sd_resnet110", "pyramidnet110_a48"),
}


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  config = experiment_config(
      "pyramid",
      MODELS.get(dataset, MODELS["default"]),
      dataset=dataset, smoke=smoke,
      analyses=("lesion",),
      title="PyramidNet vs ResNet and its stochastic-depth twin: training and single-block "
            "lesions (Han et al. 2017; Veit et al. 2016)")
  config.train.nesterov = True
  return config
