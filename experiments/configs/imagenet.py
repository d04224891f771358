r"""He et al. 2015 §3.4 on ImageNet: plain-18/34 and ResNet-18/34/50/101/152, streamed from a
directory that `python -m resnet_jax.data.prepare_imagenet` wrote.

  python -m resnet_jax.data.prepare_imagenet --train_dir=ILSVRC/train --val_dir=ILSVRC/val --out=data/imagenet
  python -m resnet_jax.train --config=experiments/configs/imagenet.py:resnet34 --config.data_dir=data/imagenet --workdir=runs/in_resnet34

ARG: MODEL[,modern][,DATA][,smoke]. MODEL is one of plain18, plain34, resnet18, resnet34,
resnet50, resnet101, resnet152. DATA: imagenet (default; give --config.data_dir), or an offline
stand-in in ImageNet's format at a CPU's crop size: imagenet_fixture (`make imagenet-fixture`,
64 px) or fashion_mnist_jpeg (`make fashion-mnist-jpeg`, 32 px). ",smoke": two steps at 32 px.
Set --config.input_workers to the cores of a host less one (decoding worker processes).

The paper's recipe ("he2015", the default): batch 256, SGD momentum 0.9, weight decay 1e-4,
lr 0.1 divided by 10 when the error plateaus, fixed here at 150k, 300k and 450k of 600k
iterations (epochs 30/60/90 of 120; the paper trains "up to 60 x 10^4 iterations"); scale
augmentation (shorter side uniform in [256, 480], a random 224 crop, flip, AlexNet's PCA lighting
with fb.resnet.torch's constants); per-channel mean subtracted and divided by the std (the
paper says "per-pixel mean subtracted"; with a random scale a mean image has no fixed pixel grid,
and fb.resnet.torch, which reproduced the paper, normalises per channel); BN synchronised over
the global batch (the paper's Caffe runs normalised per GPU of 32: --config.per_device_bn=True on
8 devices); ResNet-18/34 with option A shortcuts (zero-padding, Table 2), the bottleneck nets
with option B and the stride in the first 1x1 conv (v1); tested with 10 crops at the end.
Fig. 4's curves are the logged training error of the crops (train_error) and the centre-crop
error of the validation images (test_error, every epoch).

Expected top-1 error, 10-crop (He et al. 2015, Tables 2 and 3): plain18 27.94, plain34 28.54,
resnet18 27.88, resnet34 25.03 (option A; B 24.52, C 24.19 with --config.shortcut=B|C),
resnet50 22.85, resnet101 21.75, resnet152 21.43 (top-5 6.71 / 6.05 / 5.71).

",modern": the common recipe of torchvision and Flax: 90 epochs, lr 0.1 * B / 256 divided by 10
at epochs 30 and 60, Inception crops (area 0.08-1, aspect 3/4-4/3) + flip, option B, v1.5
bottlenecks (stride in the 3x3 conv), one centre crop; zero-initialised last BN of each block
with --config.model_options="zero_init_last_bn=True". torchvision's V1 weights of this recipe:
top-1 accuracy 69.76 / 73.31 / 76.13 / 77.37 / 78.31 % (ResNet-18/34/50/101/152, one crop).
No GPU time measured by this project yet.
"""
from resnet_jax.configs import (
  IMAGENET_MODELS,
  IMAGENET_RECIPES,
  STREAM_DATA,
  imagenet_recipe,
  smoke,
  stream_data,
)


def get_config(arg: str = "resnet50"):
  parts = [p for p in (arg or "resnet50").split(",") if p]
  models = [p for p in parts if p in IMAGENET_MODELS]
  variants = [p for p in parts if p in IMAGENET_RECIPES]
  datasets = [p for p in parts if p in STREAM_DATA]
  unknown = set(parts) - set(models + variants + datasets + ["smoke"])
  if unknown or len(models) > 1 or len(variants) > 1 or len(datasets) > 1:
    raise ValueError(f"ARG must be MODEL[,modern][,DATA][,smoke] with MODEL one of "
                     f"{IMAGENET_MODELS} and DATA one of {tuple(STREAM_DATA)}, got {arg!r}")
  config = imagenet_recipe(models[0] if models else "resnet50",
                           variants[0] if variants else "he2015")
  stream_data(config, datasets[0] if datasets else "imagenet")
  return smoke(config) if "smoke" in parts else config
