"""Every config of the project: the training recipe (He et al. 2015 §4.2, every field
documented), the per-data-set recipes, experiments and analysis settings.

Config files in `experiments/` import only this module (and ml_collections): reading a config
loads no JAX, Orbax or matplotlib. The commands lock what they load, so a typo in an override is
an error.
"""
import ast
import copy
import os
import re
from typing import Any

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  # Model: a `resnet_jax.models.get_model` name; `shortcut` "" keeps the model's default.
  c.model = "resnet20"
  c.shortcut = ""
  # More model options, "key=value,key=value" with Python literal values, passed to get_model:
  # e.g. "dropout=0.3" (Wide ResNet), "stochastic_depth=0.5", "widths=(8, 16, 32)".
  c.model_options = ""
  # Fine-tuning: a run directory (a training run's, or one `python -m resnet_jax.convert` wrote)
  # whose weights a new run starts from; a head of another class count is drawn anew.
  c.init_from = ""
  # Data (`resnet_jax.data.load_dataset`).
  c.dataset = "cifar10"
  c.archive = ""            # path to an official cifar-10/100-python.tar.gz, or "" for tfds
  c.data_dir = ""           # tfds data_dir, or the directory of Fashion-MNIST's IDX files
  c.val_size = -1           # training images held out for validation; -1: the data set's default
  c.normalization = "pixel_mean"  # He 2015: per-pixel mean subtracted; or "channel_mean_std"
  c.image_size = 0          # 0: the data set's default size
  c.limit = 0               # 0: every image; N: the first N of each split (smoke runs)
  c.augment_pad = 4         # He 2015: 4-pixel zero pad + random crop ...
  c.augment_flip = True     # ... + horizontal flip
  # Streamed data sets (dataset "imagenet": a directory of `resnet_jax.data.prepare_imagenet`,
  # decoded and augmented by worker processes; `resnet_jax.data.stream`). image_size 0 is 224.
  c.train_transform = "he2015"  # He 2015 §3.4 scale augmentation + PCA lighting, or "inception"
  c.scale_range = (256, 480)    # "he2015": the shorter side is resized to a random length in it
  c.resize_size = 256       # evaluation: the shorter side resized to this, then centre crop(s)
  c.eval_crops = 1          # 10: the last step is also evaluated with He 2015's 10 crops
  c.input_workers = 2       # decoding worker processes per host (0: threads of the main process)
  # Optimisation: SGD momentum 0.9, weight decay 1e-4 on all parameters, batch 128.
  c.batch_size = 128
  c.num_steps = 64_000
  c.learning_rate = 0.1
  # Divide the rate by 10 at these fractions of num_steps: 32k and 48k of 64k in the paper.
  c.lr_boundaries = (0.5, 0.75)
  c.lr_decay = 0.1
  c.momentum = 0.9
  c.nesterov = False        # He 2015 (Caffe) is plain momentum; fb.resnet.torch used Nesterov
  c.weight_decay = 1e-4
  c.decay_batch_norm = True  # the papers' code decays BN scale/bias too; False masks them out
  # Warm-up: "auto" (He 2015: "steps" for WARMUP_MODELS, else "none"; see resolve_warmup),
  # "none", "steps" (warmup_lr for warmup_steps) or "error" (warmup_lr until a training batch's
  # error falls below warmup_error, as the paper words it).
  c.warmup = "auto"
  c.warmup_steps = 400
  c.warmup_lr = 0.01
  c.warmup_error = 0.8
  # BatchNorm over the global batch (jit over the mesh); True: per-device statistics through
  # shard_map, to match multi-GPU reference runs.
  c.per_device_bn = False
  # Compute dtype: "float32", or "bfloat16" (mixed precision: bf16 convolutions and matmuls;
  # parameters, BN statistics, loss and update in float32; `resnet_jax.steps.COMPUTE_DTYPES`).
  c.dtype = "float32"
  # Loop.
  c.seed = 0
  c.log_every = 50
  c.eval_every = 2000
  c.checkpoint_every = 2000
  c.keep_checkpoints = 3
  c.eval_batch_size = 500
  # Train steps per compiled call: the host dispatches once per steps_per_call steps. Calls stop
  # at log, eval and checkpoint boundaries, so the run equals one step per call to float
  # tolerance (and a resumed run with the same value bitwise). A CPU unrolls the K steps (its
  # convolution gradients run 5-17x slower inside lax.scan), and compile time grows with K (2x at
  # K=4) for no measured gain: hence 1. Other backends chain them with lax.scan.
  c.steps_per_call = 1
  return c


# Per data set: the He 2015 recipe, shortened where the data set is small (digits) or where a GPU
# should finish a sweep in minutes (fashion_mnist). CIFAR keeps the paper's 64k steps.
_RECIPES = {
    "digits": dict(dataset="digits", augment_pad=2, augment_flip=False, num_steps=1500,
                   log_every=25, eval_every=250, checkpoint_every=500, eval_batch_size=400),
    "fashion_mnist": dict(dataset="fashion_mnist", num_steps=8000, eval_every=1000,
                          checkpoint_every=1000),
    "cifar10": dict(dataset="cifar10", val_size=5000),
    "cifar100": dict(dataset="cifar100", val_size=5000),
}
RECIPE_DATASETS = tuple(_RECIPES)
# He 2015 warms up ResNet-110 and -1202 at lr 0.01 for 400 iterations (and so their plain twins).
WARMUP_MODELS = ("resnet110", "resnet1202", "plain110", "plain1202")
WARMUPS = ("auto", "none", "steps", "error")


def recipe(dataset: str, model: str = "resnet20") -> ml_collections.ConfigDict:
  """The training config of `model` on `dataset` (digits | fashion_mnist | cifar10 | cifar100)."""
  if dataset not in _RECIPES:
    raise ValueError(f"no recipe for dataset {dataset!r}; choose from {RECIPE_DATASETS}")
  config = base_config()
  config.update(_RECIPES[dataset])
  config.model = model
  return config


# Larsson et al. 2017 §4 (FractalNet): SGD momentum 0.9, batch 100, lr 0.02 divided by 10 "each time
# the number of remaining epochs halves": at epochs 200, 300, 350 and 375 of 400 on CIFAR.
FRACTALNET_BOUNDARIES = (0.5, 0.75, 0.875, 0.9375)
FRACTALNET_EPOCHS = 400


def fractalnet_recipe(dataset: str, model: str = "fractalnet_c3") -> ml_collections.ConfigDict:
  """The training config of a FractalNet on `dataset`: the data set's recipe (`recipe`) with
  Larsson et al.'s optimiser and schedule. CIFAR runs the paper's 400 epochs of the 45k training
  images (180k steps); digits and fashion_mnist keep their recipe's number of steps. The paper
  names no weight decay; the project's 1e-4 stays (0 is --config.weight_decay=0)."""
  config = recipe(dataset, model)
  config.update(batch_size=100, learning_rate=0.02, momentum=0.9,
                lr_boundaries=FRACTALNET_BOUNDARIES)
  if dataset in ("cifar10", "cifar100"):
    config.num_steps = FRACTALNET_EPOCHS * 45_000 // config.batch_size
  return config


# ImageNet (He et al. 2015 §3.4): a directory that `python -m resnet_jax.data.prepare_imagenet`
# prepared, streamed by worker processes; the recipes count steps on ImageNet's training images.
IMAGENET_TRAIN_IMAGES = 1_281_167
IMAGENET_MODELS = ("plain18", "plain34", "resnet18", "resnet34", "resnet50", "resnet101",
                   "resnet152")
# "he2015": the paper's recipe; "modern": torchvision's and Flax's (90 epochs, v1.5 bottlenecks).
IMAGENET_RECIPES = ("he2015", "modern")
# He 2015: "up to 60 x 10^4 iterations" at batch 256 (120 epochs), lr divided by 10 "when the
# error plateaus": fixed at 25/50/75 % (epochs 30, 60, 90), where Fig. 4's curves drop.
HE2015_STEPS = 600_000
HE2015_BOUNDARIES = (0.25, 0.5, 0.75)
MODERN_EPOCHS = 90
MODERN_BOUNDARIES = (1 / 3, 2 / 3)  # epochs 30 and 60
# The streamed data sets of the ImageNet experiments: ImageNet itself (--config.data_dir=...)
# and two offline stand-ins in its format, prepared by `make imagenet-fixture` and
# `make fashion-mnist-jpeg`, at crop sizes a CPU trains (scale ranges keep He's 256-480 for 224),
# with a schedule of their own: the recipe's fractions of it, at their size.
STREAM_DATA = {
    "imagenet": dict(data_dir="", image_size=224, scale_range=(256, 480), resize_size=256),
    # 48 training and 16 validation photos of 4 classes: a demo of the whole path in minutes.
    "imagenet_fixture": dict(data_dir="build/imagenet_fixture/prepared", image_size=64,
                             scale_range=(73, 137), resize_size=73, batch_size=16,
                             num_steps=200, log_every=10, eval_every=50, checkpoint_every=50,
                             eval_batch_size=32, input_workers=1, learning_rate=0.1),
    # Fashion-MNIST's 60,000 / 10,000 images as JPEGs: 3,000 steps of 128 (6.4 epochs).
    "fashion_mnist_jpeg": dict(data_dir="build/fashion_mnist_jpeg/prepared", image_size=32,
                               scale_range=(37, 69), resize_size=37, batch_size=128,
                               num_steps=3000, log_every=50, eval_every=500,
                               checkpoint_every=500, eval_batch_size=500, input_workers=1,
                               learning_rate=0.1),
}


def imagenet_recipe(model: str = "resnet50", variant: str = "he2015", *,
                    batch_size: int = 256) -> ml_collections.ConfigDict:
  """The training config of ImageNet `model` (an IMAGENET_MODELS name) by `variant`.

  "he2015": batch 256, SGD momentum 0.9, wd 1e-4, lr 0.1 divided by 10 at 25/50/75 % of
  600,000 steps, scale augmentation (shorter side in [256, 480], 224 crop, flip, PCA lighting),
  per-channel mean/std normalisation, option A shortcuts for ResNet-18/34 (Table 2) and B for the
  bottleneck nets (v1: stride in the first 1x1), the last step evaluated with 10 crops.
  "modern": 90 epochs, lr 0.1 * B / 256 divided by 10 at epochs 30 and 60, Inception crops,
  v1.5 bottlenecks (stride_in_3x3=True), option B, one centre crop.
  """
  if model not in IMAGENET_MODELS:
    raise ValueError(f"no ImageNet recipe for {model!r}; choose from {IMAGENET_MODELS}")
  if variant not in IMAGENET_RECIPES:
    raise ValueError(f"the ImageNet recipe is one of {IMAGENET_RECIPES}, not {variant!r}")
  c = base_config()
  c.update(STREAM_DATA["imagenet"])
  steps_per_epoch = IMAGENET_TRAIN_IMAGES / batch_size
  c.update(dataset="imagenet", model=f"{model}_imagenet", normalization="channel_mean_std",
           val_size=0, batch_size=batch_size, log_every=100, eval_every=round(steps_per_epoch),
           checkpoint_every=round(steps_per_epoch), eval_batch_size=200, input_workers=8,
           nesterov=False, weight_decay=1e-4, momentum=0.9)
  bottleneck = model in ("resnet50", "resnet101", "resnet152")
  if variant == "he2015":
    c.update(train_transform="he2015", num_steps=HE2015_STEPS, lr_boundaries=HE2015_BOUNDARIES,
             learning_rate=0.1, eval_crops=10, shortcut="" if bottleneck or "plain" in model
             else "A")
  else:
    c.update(train_transform="inception", num_steps=round(MODERN_EPOCHS * steps_per_epoch),
             lr_boundaries=MODERN_BOUNDARIES, learning_rate=0.1 * batch_size / 256, eval_crops=1,
             model_options="stride_in_3x3=True" if bottleneck else "")
  return c


def stream_data(config: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
  """`config` set to train on the streamed data set `name` (a STREAM_DATA key)."""
  if name not in STREAM_DATA:
    raise ValueError(f"the streamed data set is one of {tuple(STREAM_DATA)}, not {name!r}")
  config.update(STREAM_DATA[name])
  return config


# Data sets streamed from a directory prepared by `python -m resnet_jax.data.prepare_imagenet`
# (ImageNet, or any tree in its layout; `--config.data_dir=DIR`), not held in memory.
STREAM_DATASETS = ("imagenet",)
# The smoke setting of a streamed run: two steps at 32 px on the fixture's few images.
STREAM_SMOKE = dict(num_steps=2, batch_size=8, log_every=1, eval_every=2, checkpoint_every=2,
                    eval_batch_size=16, image_size=32, scale_range=(37, 69), resize_size=37,
                    input_workers=0)


def resolve_warmup(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The one place that decides a run's warm-up: a copy of `config` in which "auto" becomes
  "steps" for WARMUP_MODELS and "none" otherwise; any other value is the user's and is kept."""
  if config.warmup not in WARMUPS:
    raise ValueError(f"warmup must be one of {WARMUPS}, got {config.warmup!r}")
  config = copy.deepcopy(config)
  if config.warmup == "auto":
    config.warmup = "steps" if config.model in WARMUP_MODELS else "none"
  return config


# CI's smoke setting of every training config: two steps on a 16-image slice.
SMOKE = dict(num_steps=2, batch_size=8, limit=16, val_size=8, log_every=1, eval_every=2,
             checkpoint_every=2, eval_batch_size=16)


def smoke(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a training config to a two-step run on a 16-image slice (CI's smoke setting); a
  streamed one to two steps at 32 px (`STREAM_SMOKE`), on the data it names."""
  config.update(_smoke_fields(config))
  return config


def _smoke_fields(config: ml_collections.ConfigDict) -> dict[str, Any]:
  return STREAM_SMOKE if config.dataset in STREAM_DATASETS else SMOKE


def analysis_config() -> ml_collections.ConfigDict:
  """How much work each analysis does (`resnet_jax.analyze`); the defaults suit a CPU and digits."""
  c = ml_collections.ConfigDict()
  c.num_images = 0           # test images for response_std and the lesions (0: the whole split)
  c.path_images = 32         # images in each path-gradient batch (a fresh one per sampled path;
                             # the exact decomposition runs on one batch of this size)
  c.path_split = "train"     # split the path batches come from: "train" (Veit) or "test"
  c.path_batch = "random"    # "random": a fresh batch per sampled path (Veit); "fixed": every
                             # path on the first path_images images of the split (the old protocol)
  c.path_window = (5, 17)    # path lengths whose share of the gradient analysis.json reports
                             # (Veit et al.: 5-17 of 54 blocks)
  c.samples_per_length = 100  # sampled single paths per length (Veit used about 1000)
  c.lesion_samples = 20      # random subsets / orders per point of the deletion and reorder sweeps
  c.max_batch = 0            # images through the net at once, each mask row, route and path copy
                             # counted (memory); 0: 512 at 32x32 pixels, as many pixels at any size
                             # (ResNet-50 at 224: 10; a GPU holds far more: --max_batch=256)
  c.seed = 0
  return c


def experiment_config(name: str, models, *, dataset: str = "", smoke: bool = False,
                      analyses=(), title: str = "",
                      train: ml_collections.ConfigDict | None = None
                      ) -> ml_collections.ConfigDict:
  """An experiment: several models trained with one recipe, then the analyses to run.

  `models` are names, optionally with a shortcut option ("resnet32:B"). The recipe is `train`,
  or else the data set's (`recipe`); its warm-up stays "auto", decided per model when each run
  starts (`resolve_warmup`).
  """
  c = ml_collections.ConfigDict()
  c.name = name
  c.title = title or name
  c.models = tuple(models)
  c.train = recipe(dataset, c.models[0]) if train is None else train
  if smoke:
    c.train.update(_smoke_fields(c.train))
  c.analyses = tuple(analyses)
  c.analysis = analysis_config()
  if smoke:
    c.analysis.update(dict(num_images=16, path_images=2, samples_per_length=2, lesion_samples=2))
  return c


def parse_arg(arg: str, datasets: tuple[str, ...] = RECIPE_DATASETS, default: str = "digits",
              name: str = "DATASET") -> tuple[str, bool]:
  """An experiment config's ARG "DATASET[,smoke]" -> (dataset, smoke); DATASET one of
  `datasets` (`name` in the error), `default` when absent."""
  parts = [p for p in (arg or default).split(",") if p]
  smoke = "smoke" in parts
  rest = [p for p in parts if p != "smoke"]
  if len(rest) > 1 or (rest and rest[0] not in datasets):
    raise ValueError(f"ARG must be {name}[,smoke] with {name} one of {tuple(datasets)}, got "
                     f"{arg!r}")
  return (rest[0] if rest else default), smoke


def split_spec(spec: str) -> tuple[str, str, str]:
  """An experiment's model entry -> (name, shortcut, model_options).

  "resnet32:B" -> ("resnet32", "B", ""); "wrn16_4:dropout=0.3" -> ("wrn16_4", "", "dropout=0.3"):
  after the colon comes either a shortcut option or model options (see `parse_model_options`).
  """
  name, _, option = spec.partition(":")
  return (name, "", option) if "=" in option else (name, option, "")


def parse_model_options(text: str) -> dict[str, Any]:
  """"key=value,key=value" (values Python literals) -> {key: value}; "" -> {}.

  Raises:
    ValueError: naming the text, if it is not of that form.
  """
  if not text.strip():
    return {}
  try:
    call = ast.parse(f"options({text})", mode="eval").body
    if call.args:
      raise ValueError("every option needs a name")
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
  except (SyntaxError, ValueError) as err:
    raise ValueError(f"model options must read key=value,key=value with Python literal values "
                     f"(e.g. dropout=0.3,widths=(8, 16, 32)), got {text!r} ({err})") from None


def run_dir(workdir: str, seed: int, spec: str) -> str:
  """Where an experiment keeps the training workdir of one (seed, model entry)."""
  return os.path.join(workdir, f"seed{seed}", re.sub(r"[^\w.-]+", "_", spec).strip("_"))
