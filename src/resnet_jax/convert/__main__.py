"""`python -m resnet_jax.convert --input=FILE --model=resnet50_imagenet --out=DIR`: a torchvision
or timm ResNet state dict (.safetensors, or .pth/.pt with torch installed) as a run directory;
`--to_torch --input=DIR --out=FILE.safetensors`: a run's checkpoint as a torch state dict."""
from absl import flags

from resnet_jax import cli, convert
from resnet_jax.errors import ConversionError

_INPUT = flags.DEFINE_string("input", None, "The state-dict file (or, with --to_torch, the run "
                             "directory).")
_MODEL = flags.DEFINE_string("model", None, "resnet{18,34,50,101,152}_imagenet: the net the file "
                             "holds (bottleneck nets get stride_in_3x3=True, torchvision's v1.5).")
_OUT = flags.DEFINE_string("out", None, "The new run directory (or, with --to_torch, the new "
                           ".safetensors file).")
_TO_TORCH = flags.DEFINE_bool("to_torch", False, "Write the checkpoint of the run --input as a "
                              "torchvision-layout .safetensors state dict.")
flags.mark_flags_as_required(["input", "out"])


def main(argv):
  cli.start(argv)
  if _TO_TORCH.value:
    if _MODEL.value is not None:
      raise ConversionError("--to_torch takes the model from the run's config: drop --model")
    info = convert.to_torch_file(_INPUT.value, _OUT.value)
    print(f"wrote {info['path']}: {info['tensors']} tensors of {info['model']} "
          f"({info['num_classes']} classes), checkpoint step {info['checkpoint_step']} of "
          f"{info['workdir']}")
    return
  if _MODEL.value is None:
    raise ConversionError("--model is required: the net the file holds, "
                          f"{convert.torch_layout.SUPPORTED}")
  info = convert.from_torch_file(_INPUT.value, _MODEL.value, _OUT.value)
  options = f" ({info['model_options']})" if info["model_options"] else ""
  ignored = ", ".join(f"{n} {kind}" for kind, n in info["ignored"].items() if n)
  print(f"wrote {_OUT.value}: {info['model']}{options}, {info['num_classes']} classes, "
        f"{info['tensors']} tensors from {_INPUT.value}" + (f" ({ignored} ignored)" if ignored
                                                            else ""))


if __name__ == "__main__":
  cli.run(main)
