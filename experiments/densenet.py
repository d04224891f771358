r"""DenseNet and DenseNet-BC (Huang et al. 2017) against a ResNet, with the lesion analyses.

  make densenet DATASET=digits WORKDIR=runs SEEDS=1
  python -m resnet_jax.experiment --config=experiments/densenet.py:digits --workdir=runs/densenet

ARG: DATASET[,smoke] with DATASET one of digits (default), fashion_mnist, cifar10, cifar100;
",smoke" runs every model for two steps on a 16-image slice (CI). Training follows the DenseNet
recipe (batch 64, Nesterov momentum 0.9, wd 1e-4, per-channel mean/std normalisation, lr 0.1
divided by 10 at 50 % and 75 %) for every model, the ResNet included, with pad-and-crop
augmentation (the C10+ setting: no dropout). Override as --config.train.FIELD=VALUE.

Models: digits (16x16): densenet_bc28_k12 (4 BC layers per block, 0.10M parameters) and
resnet20 (0.27M), 1,000 steps (53 epochs of 1,197 images): 18.8 + 4.4 min of training on the
2-core CPU shared with other jobs (densenet_bc28_k12 about 1.1 s/step, a third of it the remat
of `memory_efficient`, which saves nothing on CPU; "densenet_bc28_k12:memory_efficient=False"
skips it), plus 2.5 min of lesions (17.8 + 6.5 min and 36 + 29 s with the CPU loaded 5-15 by
other jobs and the lesions at `CPU_LESIONS`). fashion_mnist: densenet_bc100_k12 and resnet110, 16,000 steps (18.6 epochs). cifar10 /
cifar100: densenet40_k12, densenet_bc100_k12 and resnet110 for the paper's 300 epochs (210,938
steps of 64 on 45k images).

Analyses: "lesion" (a lesion deletes a dense layer: its k channels reach none of its readers, as
if they were sliced out of each later layer's, the transition's or the head's first BN and conv;
every later layer still runs). Dense layers cannot be reordered, so the DenseNets get no reorder
sweep. Each deletion is one pass of the net over the test images, and a DenseNet-BC-100 has 48
layers: on the CPU data sets the lesions run on the first 500 test images (`CPU_LESIONS`; all
400 on digits), every layer deleted alone, and 3 random sets of deleted layers for each count of
the k-deletion sweep (k = 0, 1, 2, n/4, n/2, 3n/4, n): 70 passes of 500 images for
densenet_bc100_k12, 4.8 times fewer image passes than 2,000 images with 5 sets, which took 19
min on Fashion-MNIST at 16x16; at 16x16 these took 13.4 min of a 2-core CPU loaded 8 by other
jobs (`analyze.compute` on a densenet_bc100_k12 at init). Override as
--config.analysis.num_images=N --config.analysis.lesion_samples=S.

Expected (Huang et al. 2017 Table 2, C10+ error): densenet40_k12 5.24, densenet_bc100_k12 4.51,
resnet110 6.41 (their rerun); C100+ 24.42, 22.27, 27.22.
Measured on digits (one seed, test error of 400 images at the step of best validation error):
densenet_bc28_k12 1.00 %, resnet20 1.00 %; deleting one block raises the error by 18.6 points on
average for the DenseNet (21 % of the way to chance; 19.1 with the earlier lesion that zeroed the
layer's channels before its readers' BN, on the same weights) and 21.0 for resnet20 (24 %).
GPU time: not yet measured by this project.
"""
from resnet_jax.configs import experiment_config, parse_arg

MODELS = {
    "digits": ("densenet_bc28_k12", "resnet20"),
    "fashion_mnist": ("densenet_bc100_k12", "resnet110"),
    "cifar10": ("densenet40_k12", "densenet_bc100_k12", "resnet110"),
    "cifar100": ("densenet40_k12", "densenet_bc100_k12", "resnet110"),
}
# Steps at batch 64: digits 53 epochs; Fashion-MNIST the epochs of its He recipe (8,000 steps of
# 128); CIFAR the paper's 300 epochs of the 45k training images.
NUM_STEPS = {"digits": 1000, "fashion_mnist": 16_000, "cifar10": 210_938, "cifar100": 210_938}
# The lesions on a CPU: the first 500 test images, 3 random sets per point of the k-deletion sweep.
CPU_LESIONS = {"digits": dict(num_images=500, lesion_samples=3),
               "fashion_mnist": dict(num_images=500, lesion_samples=3)}


def get_config(arg: str = "digits"):
  dataset, smoke = parse_arg(arg)
  config = experiment_config(
      "densenet", MODELS[dataset], dataset=dataset, smoke=smoke, analyses=("lesion",),
      title="DenseNet and DenseNet-BC vs a ResNet (Huang et al. 2017), with lesions")
  config.train.update(dict(nesterov=True, normalization="channel_mean_std"))
  if not smoke:
    config.train.update(dict(batch_size=64, num_steps=NUM_STEPS[dataset]))
    config.analysis.update(CPU_LESIONS.get(dataset, {}))
  return config
