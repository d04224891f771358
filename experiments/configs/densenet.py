r"""Huang et al. 2017: DenseNet and DenseNet-BC on CIFAR-10 (CIFAR-100: --config.dataset=cifar100).

  python -m resnet_jax.train --config=experiments/configs/densenet.py:densenet_bc100_k12 --workdir=runs/c10_densenet_bc100

ARG: densenet{3l+4}_k{k} or densenet_bc{6l+4}_k{k}; the paper's are densenet40_k12,
densenet100_k12, densenet100_k24, densenet_bc100_k12, densenet_bc250_k24, densenet_bc190_k40.
The recipe: batch 64, 300 epochs (210,938 steps on the 45k/5k train/val split), SGD with
Nesterov momentum 0.9, weight decay 1e-4, lr 0.1 divided by 10 at 50 % and 75 % of training,
per-channel mean/std normalisation, pad-4 crop + flip (C10+). The paper's C10 setting (no
augmentation) adds dropout 0.2 after every conv but the first:
--config.model_options=dropout=0.2 --config.augment_pad=0 --config.augment_flip=False.
BC nets rematerialise each layer's concat-BN-ReLU-conv in the backward pass by default
(`memory_efficient`; --config.model_options=memory_efficient=False turns it off).

Expected test error (Huang et al. 2017, Table 2), C10+ / C100+ (C10 / C100 without augmentation):
  densenet40_k12 5.24 / 24.42 (7.00 / 27.55), densenet100_k12 4.10 / 20.20 (5.77 / 23.79),
  densenet100_k24 3.74 / 19.25 (5.83 / 23.42), densenet_bc100_k12 4.51 / 22.27 (5.92 / 24.15),
  densenet_bc250_k24 3.62 / 17.60 (5.19 / 19.64), densenet_bc190_k40 3.46 / 17.18.
Parameters: 1.0M, 7.0M, 27.2M, 0.8M, 15.3M, 25.6M. GPU time: not yet measured by this project.
"""
from resnet_jax.configs import recipe

# Steps of 300 epochs at batch 64 over the 45,000 training images left by the 5,000 held out.
NUM_STEPS = 210_938


def get_config(arg: str = "densenet_bc100_k12"):
  config = recipe("cifar10", arg or "densenet_bc100_k12")
  config.update(dict(batch_size=64, num_steps=NUM_STEPS, nesterov=True,
                     normalization="channel_mean_std", eval_every=5000, checkpoint_every=5000))
  return config
