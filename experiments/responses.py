r"""Layer responses (He et al. 2015, Fig. 7).

  make responses DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/responses.py:digits --workdir=runs/responses

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Training uses the data set's recipe
(`resnet_jax.configs.recipe`); override it as --config.train.FIELD=VALUE.

Expected (He et al. 2015, Fig. 7, figure only): ResNets have smaller response stds than
plain nets, and deeper ResNets smaller ones than shallower ResNets.
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import experiment_config, parse_arg


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  return experiment_config(
      "responses",
      ("plain20", "plain56", "resnet20", "resnet56", "resnet110"),
      dataset=dataset, smoke=smoke,
      analyses=("response_std",),
      title="Layer responses (He et al. 2015, Fig. 7)")
