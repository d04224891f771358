r"""Plain-18/34 against ResNet-18/34 on ImageNet (He et al. 2015, Fig. 4 and Table 2).

  make imagenet-18v34 DATASET=imagenet DATA_DIR=data/imagenet WORKDIR=runs
  python -m resnet_jax.experiment --config=experiments/imagenet_18v34.py:imagenet --config.train.data_dir=data/imagenet --workdir=runs/imagenet_18v34

ARG: DATA[,smoke] with DATA one of imagenet (a directory of `python -m
resnet_jax.data.prepare_imagenet`, given as --config.train.data_dir), imagenet_fixture (real
photos in ImageNet's format, `make imagenet-fixture`) or fashion_mnist_jpeg (`make
fashion-mnist-jpeg`); ",smoke" runs every model for two steps at 32 px. Training follows He
2015's ImageNet recipe (`experiments/configs/imagenet.py`; the stand-ins keep its shape on their
own schedule, `resnet_jax.configs.STREAM_DATA`); override it as --config.train.FIELD=VALUE.
The report plots Fig. 4's curves (the training crops' error, dashed, and the validation images'
centre-crop error, bold, against epochs) and Table 2's 10-crop errors.

Expected on ImageNet (He et al. 2015, Table 2, top-1 error %, 10 crops): plain-18 27.94,
plain-34 28.54, ResNet-18 27.88, ResNet-34 25.03: the plain net degrades from 18 to 34 layers
(higher training error throughout, Fig. 4 left), the ResNet gains 2.8 points, and ResNet-18
converges faster than plain-18. No GPU time measured by this project yet.
"""
from resnet_jax.configs import (
  STREAM_DATA,
  experiment_config,
  imagenet_recipe,
  parse_arg,
  stream_data,
)


def get_config(arg: str = "imagenet"):
  dataset, smoke = parse_arg(arg, tuple(STREAM_DATA), default="imagenet", name="DATA")
  train = stream_data(imagenet_recipe("resnet18"), dataset)
  return experiment_config(
      "imagenet_18v34",
      ("plain18_imagenet", "plain34_imagenet", "resnet18_imagenet:A", "resnet34_imagenet:A"),
      train=train, smoke=smoke, analyses=(),
      title="Plain-18/34 vs ResNet-18/34 on ImageNet (He et al. 2015, Fig. 4 and Table 2)")
