"""He et al. 2015 and 2016: the CIFAR nets (plain and residual, original and pre-activation) and
the ImageNet nets of Table 1, as builders of `network.ResNet` and the names that select them;
Huang et al. 2016's stochastic-depth presets of the CIFAR ResNets.

Every builder takes the name's numbers (the depth) positionally and its options as keywords;
those keywords are exactly the overrides `get_model` accepts for the family.
"""
import functools
from typing import Sequence

from resnet_jax.models import blocks, layers, network
from resnet_jax.models.family import Family, UnknownDepthError
from resnet_jax.models.network import ResNet, bind

CIFAR_WIDTHS = (16, 32, 64)
IMAGENET_WIDTHS = (64, 128, 256, 512)
# He et al. 2015 Table 1: depth -> (block, blocks per stage).
IMAGENET_STAGES = {
    18: (blocks.BasicBlock, (2, 2, 2, 2)),
    34: (blocks.BasicBlock, (3, 4, 6, 3)),
    50: (blocks.Bottleneck, (3, 4, 6, 3)),
    101: (blocks.Bottleneck, (3, 4, 23, 3)),
    152: (blocks.Bottleneck, (3, 8, 36, 3)),
}
PLAIN_IMAGENET_DEPTHS = (18, 34)


def blocks_per_stage(depth: int, layers_per_block: int) -> int:
  """n of a three-stage CIFAR net of depth layers_per_block * 3n + 2 (6n+2, 9n+2)."""
  n, remainder = divmod(depth - 2, 3 * layers_per_block)
  if remainder or n < 1:
    valid = ", ".join(str(3 * layers_per_block * k + 2) for k in (1, 2, 3, 9, 18))
    raise UnknownDepthError(f"the depth of this family must be of the form "
                            f"{3 * layers_per_block}n+2 with n >= 1 ({valid}, ...), got {depth}")
  return n


def check_widths(widths: Sequence[int], num_stages: int) -> tuple[int, ...]:
  """One positive integer width per stage."""
  widths = tuple(widths)
  if len(widths) != num_stages or not all(
      isinstance(w, int) and not isinstance(w, bool) and w >= 1 for w in widths):
    raise ValueError(f"widths must be {num_stages} integers >= 1 (one per stage), got {widths}")
  return widths


def _cifar(depth, layers_per_block, block, widths, num_classes, scan_unroll,
           **parts) -> ResNet:
  n = blocks_per_stage(depth, layers_per_block)
  return ResNet(stage_sizes=(n,) * 3, block=block, widths=check_widths(widths, 3),
                num_classes=num_classes, scan_unroll=scan_unroll, **parts)


def plain(depth: int, *, num_classes: int = 10, widths: Sequence[int] = CIFAR_WIDTHS,
          scan_unroll: int | None = None) -> ResNet:
  """He et al. 2015 §4.2 plain net: a ResNet without shortcuts, the same parameters."""
  return _cifar(depth, 2, bind(blocks.PlainBlock), widths, num_classes, scan_unroll)


def resnet(depth: int, *, num_classes: int = 10, shortcut: str = "A",
           widths: Sequence[int] = CIFAR_WIDTHS, scan_unroll: int | None = None) -> ResNet:
  """He et al. 2015 §4.2 CIFAR ResNet: 3x3 stem (16), 3 stages of n basic blocks, 6n+2 layers."""
  layers.check_shortcut(shortcut)
  return _cifar(depth, 2, bind(blocks.BasicBlock, shortcut=shortcut), widths, num_classes,
                scan_unroll)


def sd_resnet(depth: int, *, num_classes: int = 10, shortcut: str = "A",
              widths: Sequence[int] = CIFAR_WIDTHS, scan_unroll: int | None = None) -> ResNet:
  """Huang et al. 2016: the CIFAR ResNet trained with stochastic depth, p_L = 0.5 and linear
  decay (override with stochastic_depth=, drop_mode=)."""
  return resnet(depth, num_classes=num_classes, shortcut=shortcut, widths=widths,
                scan_unroll=scan_unroll).clone(stochastic_depth=0.5)


def preact_resnet(depth: int, *, num_classes: int = 10, shortcut: str = "A",
                  widths: Sequence[int] = CIFAR_WIDTHS, scan_unroll: int | None = None) -> ResNet:
  """He et al. 2016 full pre-activation basic units, with the paper's special first and last
  units: the first activates right after the stem conv, before splitting into two paths; the last
  is followed by an extra BN-ReLU before pooling."""
  layers.check_shortcut(shortcut)
  return _cifar(depth, 2, bind(blocks.PreActBlock, shortcut=shortcut), widths, num_classes,
                scan_unroll, stem=network.conv_stem, head=network.preact_head,
                first_block=bind(blocks.PreActBlock, shortcut=shortcut, first=True))


def preact_bottleneck(depth: int, *, num_classes: int = 10, shortcut: str = "B",
                      stride_in_3x3: bool = True, widths: Sequence[int] = CIFAR_WIDTHS,
                      scan_unroll: int | None = None) -> ResNet:
  """He et al. 2016 pre-activation bottleneck nets, 9n+2 layers, stage outputs 64/128/256.

  `stride_in_3x3=False` strides the first 1x1 conv of a downsampling unit, as the authors'
  released code does; the default strides the 3x3 conv, as fb.resnet.torch does.
  """
  layers.check_shortcut(shortcut)
  block = functools.partial(bind, blocks.PreActBottleneck, shortcut=shortcut,
                            stride_in_3x3=stride_in_3x3)
  return _cifar(depth, 3, block(), widths, num_classes, scan_unroll, stem=network.conv_stem,
                head=network.preact_head, first_block=block(first=True))


def _imagenet_stages(depth: int, allowed: Sequence[int]):
  if depth not in allowed:
    raise UnknownDepthError(f"this family exists for depths {tuple(allowed)}, got {depth}")
  return IMAGENET_STAGES[depth]


def resnet_imagenet(depth: int, *, num_classes: int = 1000, shortcut: str = "B",
                    stride_in_3x3: bool = False, zero_init_last_bn: bool = False,
                    widths: Sequence[int] = IMAGENET_WIDTHS,
                    scan_unroll: int | None = None) -> ResNet:
  """He et al. 2015 Table 1, option B. Bottleneck nets (50+) stride the first 1x1 conv as the
  paper (v1); `stride_in_3x3=True` gives the v1.5 placement of most libraries.
  `zero_init_last_bn=True` starts the last BN scale of every block at 0 (the modern recipe)."""
  block_cls, sizes = _imagenet_stages(depth, tuple(IMAGENET_STAGES))
  layers.check_shortcut(shortcut)
  if block_cls is blocks.Bottleneck:
    block = bind(block_cls, shortcut=shortcut, stride_in_3x3=stride_in_3x3,
                 zero_init_last_bn=zero_init_last_bn)
  elif stride_in_3x3:
    raise ValueError(f"stride_in_3x3 applies to the bottleneck nets (50, 101, 152), not {depth}")
  else:
    block = bind(block_cls, shortcut=shortcut, zero_init_last_bn=zero_init_last_bn)
  return ResNet(stage_sizes=sizes, block=block, widths=check_widths(widths, 4),
                stem=network.imagenet_stem, num_classes=num_classes, scan_unroll=scan_unroll)


def plain_imagenet(depth: int, *, num_classes: int = 1000,
                   widths: Sequence[int] = IMAGENET_WIDTHS,
                   scan_unroll: int | None = None) -> ResNet:
  """He et al. 2015 Table 2's plain-18/34: the ResNets' layers without shortcuts."""
  _, sizes = _imagenet_stages(depth, PLAIN_IMAGENET_DEPTHS)
  return ResNet(stage_sizes=sizes, block=bind(blocks.PlainBlock),
                widths=check_widths(widths, 4), stem=network.imagenet_stem,
                num_classes=num_classes, scan_unroll=scan_unroll)


_CIFAR_DEPTHS = (20, 32, 44, 56, 110, 1202)
FAMILIES = (
    # He et al. 2016 call the *bottleneck* nets of 164 and 1001 layers "ResNet-164/1001"; 164 is
    # also 6n+2, so these two names come before the basic pre-activation family.
    Family("preact_resnet164", functools.partial(preact_bottleneck, 164),
           ("preact_resnet164",),
           "preact_resnet164, preact_resnet1001 (He et al. 2016's bottleneck nets)"),
    Family("preact_resnet1001", functools.partial(preact_bottleneck, 1001),
           ("preact_resnet1001",), ""),
    Family("plain{depth}", plain, tuple(f"plain{d}" for d in (8,) + _CIFAR_DEPTHS),
           "plain{6n+2} and resnet{6n+2} (n >= 1: 8, 14, 20, ..., 56, 110, 1202)"),
    Family("resnet{depth}", resnet, tuple(f"resnet{d}" for d in (8,) + _CIFAR_DEPTHS), ""),
    Family("sd_resnet{depth}", sd_resnet, ("sd_resnet110", "sd_resnet1202"),
           "sd_resnet{6n+2} (stochastic depth, p_L = 0.5)"),
    Family("preact_resnet{depth}", preact_resnet,
           ("preact_resnet20", "preact_resnet56", "preact_resnet110"), "preact_resnet{6n+2}"),
    Family("preact_bottleneck{depth}", preact_bottleneck,
           ("preact_bottleneck164", "preact_bottleneck1001"),
           "preact_bottleneck{9n+2} (11, 20, ..., 164, 1001)"),
    Family("resnet{depth}_imagenet", resnet_imagenet,
           tuple(f"resnet{d}_imagenet" for d in IMAGENET_STAGES),
           "resnet{18,34,50,101,152}_imagenet"),
    Family("plain{depth}_imagenet", plain_imagenet,
           tuple(f"plain{d}_imagenet" for d in PLAIN_IMAGENET_DEPTHS), "plain{18,34}_imagenet"),
)
