"""The model zoo: `get_model(name)` returns a Flax Linen module; `list_models()` names presets.

Names (He et al. 2015, 2016; `registry.FAMILIES` lists every family):
  plain{6n+2}, resnet{6n+2}      CIFAR nets (n >= 1: 8, 20, 32, 44, 56, 110, 1202, ...), option A
                                 shortcuts by default, so a ResNet and its plain twin have exactly
                                 the same parameters.
  preact_resnet{6n+2}            pre-activation nets with basic units (option A).
  preact_bottleneck{9n+2}        pre-activation nets with bottleneck units (option B).
  preact_resnet164, preact_resnet1001
                                 the paper's names for the *bottleneck* nets 164 = 9*18+2 and
                                 1001 = 9*111+2 (164 is also of the form 6n+2; use
                                 preact_bottleneck164 / a basic 6n+2 name to be explicit).
  resnet{18,34,50,101,152}_imagenet, plain{18,34}_imagenet
                                 Table 1, option B. Bottleneck nets stride the first 1x1 conv as
                                 in the paper (v1); stride_in_3x3=True gives the "v1.5" placement.
  wrn{6n+4}_{k}                  Wide ResNets WRN-d-k (Zagoruyko & Komodakis 2016; `wide.py`),
                                 option `dropout` between each block's convolutions.
  pyramidnet{6n+2}_a{alpha}, pyramidnet_mul{6n+2}_a{alpha}, pyramidnet_bottleneck{9n+2}_a{alpha}
                                 PyramidNets (Han et al. 2017; `pyramid.py`): additive or
                                 multiplicative widening, option `width_rounding`.

  densenet{3l+4}_k{k}, densenet_bc{6l+4}_k{k}
                                 Huang et al. 2017 (`densenet.py`): l dense layers per block,
                                 growth rate k; options `dropout`, `memory_efficient`.

Options (keyword arguments of `get_model`): `shortcut` ("A" | "B" | "C") for residual nets,
`stride_in_3x3` for ImageNet bottleneck nets, `widths` (one per stage) and `scan_unroll` (how
many of a stage's identical blocks run per loop step; see `stages.py`) for the ResNets, and
`conv_grad_chunks` for every net: above 1, the 3x3 convs (and DenseNet's 1x1 convs) are
`layers.sliced_grad_conv`, which computes the kernel gradient on that many slices of the batch and
runs what XLA's CPU backend runs slowly in other forms (the same values and gradients; by
default 8 where JAX's backend is the CPU, where it is faster, else 1: the plain convolution).

Every model but FractalNet is a `network.ResNet` or a `densenet.DenseNet`: `num_blocks`,
`stage_sizes`, `block_names()`, `is_residual` and `reorderable` describe its blocks for the
analyses. A `fractalnet.FractalNet` has no residual blocks (`is_residual` False); the column
analysis is its own.
"""
from resnet_jax.models.layers import BlockControls
from resnet_jax.models.network import ResNet
from resnet_jax.models.registry import get_model, list_models

__all__ = ["BlockControls", "ResNet", "get_model", "list_models"]
