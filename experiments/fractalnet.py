r"""FractalNet's columns: the net as an ensemble of columns, with and without drop-path
(Larsson et al. 2017, §4.3 and Table 3).

  make fractalnet DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/fractalnet.py:digits --workdir=runs/fractalnet

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Two nets: fractalnet_c3 with
drop-path (local 0.15, global in half the mini-batches) and its twin without drop-path. Each is
analysed by the column analysis: the error of each column alone and of the net as columns are
removed, deepest or shallowest first (figures/columns.png). Training follows
`configs.fractalnet_recipe` (batch 100, lr 0.02 /10 as the remaining epochs halve); override it
as --config.train.FIELD=VALUE.

Digits setting: widths 8-16-32-64-64 (an eighth of the paper's; `DIGITS_WIDTHS`, 528,618
parameters) for the recipe's 1,500 steps at batch 100; each net trained in 6-11 minutes on the
2-core CPU shared with other jobs (18 and 26 min, compiles included, with the CPU loaded 11-16).
The other data sets use the paper's widths.
Measured on digits (seed 0): with drop-path 2.50 % final test error (2.25 at best val), each column
alone 9.75 / 30.75 / 64.50 %; without drop-path 0.75 % (0.50 at best val), columns alone 68.25 /
83.75 / 93.00 %. Columns alone are evaluated with the full net's BN running statistics; with
statistics recomputed on the training images for each subnet, the drop-path net's columns alone
erred 2.0 / 2.8 / 2.3 % (full net 2.5 %) in the earlier net that pooled after the block's last
join (a manual check, not rerun): the mismatch is in BN, not in the columns.

Expected (Larsson et al. 2017, 20 layers, drop-path + dropout): each column alone is a strong net
(deepest column alone C10 7.27 vs 7.33 for the whole net, C10+ 4.68 vs 4.60, C100 29.05 vs
28.20); without drop-path the columns co-adapt and a column alone is far worse than the net.
GPU time: not yet measured by this project.
"""
from resnet_jax import configs
from resnet_jax.configs import experiment_config, fractalnet_recipe, parse_arg

DIGITS_WIDTHS = "widths=(8,16,32,64,64)"


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  # Each model entry carries its options (they replace the recipe's model_options).
  widths = [DIGITS_WIDTHS] if dataset == "digits" else []
  plain = ",".join(widths + ["drop_path=0.0", "global_drop=0.0"])
  models = ("fractalnet_c3" + (":" + widths[0] if widths else ""), f"fractalnet_c3:{plain}")
  config = experiment_config(
      "fractalnet", models, dataset=dataset, smoke=smoke, analyses=("columns",),
      title="FractalNet's columns, with and without drop-path (Larsson et al. 2017, Table 3)")
  config.train = fractalnet_recipe(dataset, "fractalnet_c3")
  if smoke:
    configs.smoke(config.train)
  return config
