"""Top-1 and top-5 error of a checkpoint on a whole split, with one crop or He 2015's ten:
`evaluate_checkpoint`; `python -m resnet_jax.evaluate` runs it.

  python -m resnet_jax.evaluate --config=experiments/configs/imagenet.py:resnet50,modern \\
      --config.data_dir=data/imagenet --checkpoint=DIR --crops=1

The checkpoint is a training run's workdir, or a directory that `python -m resnet_jax.convert`
wrote from torchvision's or timm's weights; the model and data come from --config (where the
checkpoint directory saved a config, its model must be the same: a v1.5 torchvision ResNet-50 is
`resnet50,modern`). Streamed data sets are read by the decoding workers of the training stream,
centre crop(s) of the shorter side resized to `resize_size` (torchvision's eval transform). A
converted net keeps its 1000 classes on data of fewer (`runs.model_classes`): the offline
fixture's labels 0, 1, 2 are read as ImageNet's first classes, so its errors test the path, not
the weights.

Expected with torchvision's V1 weights (`python -m resnet_jax.convert --input=resnet50.pth ...`),
one centre crop at 224 of 256: top-1 accuracy 69.76 / 73.31 / 76.13 / 77.37 / 78.31 % for
ResNet-18 / 34 / 50 / 101 / 152 (error 30.24 / 26.69 / 23.87 / 22.63 / 21.69 %).
"""
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from resnet_jax import feeds, metrics_io, optim, parallel, pretrained, runs
from resnet_jax.errors import ConfigError, ConfigMismatchError
from resnet_jax.train_state import TrainState

# The model fields of a saved config that must equal --config's.
MODEL_FIELDS = ("model", "shortcut", "model_options")


def check_same_model(config: ml_collections.ConfigDict,
                     checkpoint_dir: str) -> ml_collections.ConfigDict | None:
  """The checkpoint directory's saved config (None where it has no config.json: its parameters
  are checked when restored); ConfigMismatchError where it names another model."""
  if not os.path.exists(os.path.join(checkpoint_dir, metrics_io.CONFIG_FILE)):
    return None
  saved = runs.read_config(checkpoint_dir)
  differ = [f"{k}: {saved.get(k, '')!r} there, {config[k]!r} here" for k in MODEL_FIELDS
            if saved.get(k, "") != config[k]]
  if differ:
    raise ConfigMismatchError(f"{checkpoint_dir} holds another model than --config's "
                              f"({'; '.join(differ)}): pass the config of its model")
  return saved


def restore_state(model, checkpoint_dir: str, image_shape, mesh, step: int | None = None
                  ) -> tuple[TrainState, str]:
  """The checkpoint's params and BN statistics as a TrainState for the eval step (no optimizer
  state), replicated over `mesh`, and where they came from. Every variable is checked against
  `model` (`pretrained.initial_variables`: a missing, extra or misshaped one is an error)."""
  like = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, *image_shape)))
  variables, note = pretrained.initial_variables(checkpoint_dir, like, step, new_head=False)
  state = TrainState(step=jnp.zeros((), jnp.int32), params=variables["params"],
                     batch_stats=variables.get("batch_stats", {}), opt_state=(),
                     warmed_up=jnp.zeros((), jnp.bool_))
  return parallel.replicate(state, mesh), note


def evaluate_checkpoint(config: ml_collections.ConfigDict, checkpoint_dir: str, *, crops: int = 1,
                        split: str = "test", step: int | None = None,
                        progress: bool = True) -> dict[str, Any]:
  """{"top1_error", "top5_error", "loss", ...} of the checkpoint on `split` of --config's data.

  Raises:
    errors.UserError subclasses: a bad config, another model, a parameter missing or misshaped,
    missing data.
  """
  config = runs.check_config(config)
  if crops not in runs.EVAL_CROPS or (crops > 1 and not runs.streamed(config)):
    raise ConfigError(f"--crops must be 1, or 10 for a streamed data set (imagenet); got {crops}")
  saved = check_same_model(config, checkpoint_dir)
  source = runs.open_data(config)
  # A converted net keeps its own classes (1000) on data of fewer (the fixture's).
  model = runs.build_model(config, runs.model_classes(saved or config, runs.num_classes(source)))
  mesh = parallel.make_mesh()
  state, note = restore_state(model, checkpoint_dir, runs.image_shape(config, source), mesh, step)
  keys = parallel.replicate((jax.random.key(0), jax.random.key(1)), mesh)
  feed = feeds.make_feed(config, source, model, optim.make_optimizer(config), mesh, keys)
  try:
    result = feed.evaluate(state, split, crops, progress=progress)
  finally:
    feed.close()
  return {"model": config.model, "model_options": config.model_options,
          "shortcut": config.shortcut, "dataset": config.dataset, "split": split,
          "crops": crops, "checkpoint": os.path.abspath(checkpoint_dir), "weights": note,
          "top1_error": result["error"], "top5_error": result["top5_error"],
          "loss": result["loss"], "images": result.get("count"),
          "device_kind": jax.devices()[0].device_kind}


def default_output(checkpoint_dir: str, split: str, crops: int) -> str:
  return os.path.join(checkpoint_dir, f"eval_{split}_{crops}crop.json")

