"""torchvision's and timm's ResNets in and out (`resnet_jax.convert`), and runs started from
another run's weights (`resnet_jax.pretrained`).

The conversion is checked against the real libraries, not against a copy of its mapping: a worker
(tests/torch_nets.py) builds torchvision's and timm's nets with random weights and random BatchNorm
statistics under a Python that has torch (this one, $TORCH_PYTHON, or `make install-torch`'s
.venv-torch), writes their state dicts and their logits on random images, and our converted nets
must give the same logits: relative error max|ours - torch| / max|torch| over the batch's logits
<= 1e-5 in float32 (an element-wise ratio would divide by logits near zero). The way back is
exact, and torch loads it strictly.
"""
import functools
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import safetensors.numpy
from config_files import REPO

from resnet_jax import analyze, checkpoint, configs, convert, metrics_io, pretrained, runs
from resnet_jax.convert import torch_layout
from resnet_jax.errors import (
  CheckpointMismatchError,
  ConversionError,
  CorruptDataError,
  NoRunError,
)
from resnet_jax.models import get_model

SRC = os.path.join(REPO, "src")
WORKER = os.path.join(REPO, "tests", "torch_nets.py")
BATCH, IMAGE_SIZE = 2, 64
RELATIVE_ERROR = 1e-5
BOTTLENECK = {"resnet50", "resnet101", "resnet152"}


def _has(python: str, modules: str) -> bool:
  try:
    return subprocess.run([python, "-c", f"import {modules}"], capture_output=True,
                          timeout=120).returncode == 0
  except (OSError, subprocess.TimeoutExpired):
    return False


@functools.cache
def torch_python() -> str | None:
  """This Python if it has torch, torchvision and safetensors, else $TORCH_PYTHON, else
  `make install-torch`'s .venv-torch; None if none of them has them."""
  candidates = (sys.executable, os.environ.get("TORCH_PYTHON"),
                os.path.join(REPO, ".venv-torch", "bin", "python"))
  return next((c for c in candidates if c and _has(c, "torch, torchvision, safetensors")), None)


def _torch_in_this_python() -> bool:
  return _has(sys.executable, "torch")


NO_TORCH = ("no Python with torch, torchvision and safetensors: run `make install-torch` (or set "
            "TORCH_PYTHON, or install resnet-jax[torch])")


class Peer:
  """The torch worker: one process for the whole module (importing torch takes seconds)."""

  def __init__(self, python: str):
    self.process = subprocess.Popen([python, WORKER], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, text=True)

  def __call__(self, **command) -> dict:
    self.process.stdin.write(json.dumps(command) + "\n")
    self.process.stdin.flush()
    line = self.process.stdout.readline()
    assert line, "the torch worker died (its stderr is above)"
    answer = json.loads(line)
    assert "error" not in answer, answer["error"]
    return answer

  def close(self):
    self.process.stdin.close()
    self.process.wait(timeout=60)


@pytest.fixture(scope="module")
def peer():
  python = torch_python()
  if python is None:
    pytest.skip(NO_TORCH)
  worker = Peer(python)
  yield worker
  worker.close()


@pytest.fixture(scope="module")
def torch_net(peer, tmp_path_factory):
  """(library, arch) -> the directory of that net's state.safetensors, state.pth, io.safetensors
  (made once per module)."""
  made = {}

  def get(library: str, arch: str) -> str:
    if (library, arch) not in made:
      out = str(tmp_path_factory.mktemp(f"{library}_{arch}"))
      # Another seed for timm: its ResNet-50 initialises as torchvision's does, so the same seed
      # would give the very same tensors.
      peer(cmd="make", library=library, arch=arch, out=out, batch=BATCH, image_size=IMAGE_SIZE,
           seed={"torchvision": 0, "timm": 1}[library])
      made[library, arch] = out
    return made[library, arch]
  return get


def our_model(arch: str, num_classes: int = 1000):
  options = {"stride_in_3x3": True} if arch in BOTTLENECK else {}
  return get_model(f"{arch}_imagenet", num_classes=num_classes, **options)


@functools.cache
def _forward(model):
  return jax.jit(functools.partial(model.apply, train=False))


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
  return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def check_against_torch(directory: str, arch: str) -> float:
  """Converts the torch net in `directory`, compares our logits with torch's, and checks the way
  back bit for bit; returns the relative error of the logits."""
  state = convert.read_state_dict(os.path.join(directory, "state.safetensors"))
  io = safetensors.numpy.load_file(os.path.join(directory, "io.safetensors"))
  model = our_model(arch)
  variables = convert.from_torch_state_dict(state, model)
  ours = np.asarray(_forward(model)(variables, io["images"].transpose(0, 2, 3, 1)))
  error = relative_error(ours, io["logits"])
  scale = np.abs(io["logits"]).max()
  print(f"{arch}: relative error of the logits {error:.2e} (largest logit {scale:.1f})")
  assert error <= RELATIVE_ERROR, error
  back = convert.to_torch_state_dict(variables, model)
  assert set(back) == {k for k in state if not k.endswith(".num_batches_tracked")}
  for key, value in back.items():
    assert value.dtype == state[key].dtype and np.array_equal(value, state[key]), key
  return error


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_torchvision_nets_give_the_same_logits_and_come_back_exactly(torch_net, arch):
  check_against_torch(torch_net("torchvision", arch), arch)


@pytest.mark.slow  # about a minute: three more nets, two of them deep
@pytest.mark.parametrize("arch", ["resnet34", "resnet101", "resnet152"])
def test_deeper_torchvision_nets_give_the_same_logits(torch_net, arch):
  check_against_torch(torch_net("torchvision", arch), arch)


@pytest.mark.slow
def test_timm_resnet50_gives_the_same_logits(peer, torch_net):
  if not _has(torch_python(), "timm"):
    pytest.skip(f"no timm in {torch_python()}: run `make install-torch`")
  check_against_torch(torch_net("timm", "resnet50"), "resnet50")


def test_a_pth_reads_as_its_safetensors_twin(peer, torch_net, tmp_path):
  directory = torch_net("torchvision", "resnet18")
  # The project's reader under the real torch (which this Python may lack).
  peer(cmd="read", src=SRC, path=os.path.join(directory, "state.pth"),
       out=str(tmp_path / "read.npz"))
  read = dict(np.load(tmp_path / "read.npz"))
  twin = convert.read_state_dict(os.path.join(directory, "state.safetensors"))
  assert set(read) == set(twin) and any(k.endswith("num_batches_tracked") for k in read)
  for key in twin:
    assert read[key].dtype == twin[key].dtype and np.array_equal(read[key], twin[key]), key


def command(*args: str) -> subprocess.CompletedProcess:
  """`python -m resnet_jax.convert ARGS` with this checkout's sources first."""
  env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
         "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-m", "resnet_jax.convert", *args], env=env,
                        capture_output=True, text=True, timeout=300)


def test_the_command_writes_a_run_and_torch_loads_its_way_back(peer, torch_net, tmp_path):
  directory = torch_net("torchvision", "resnet50")
  source, out = os.path.join(directory, "state.safetensors"), str(tmp_path / "run")
  done = command(f"--input={source}", "--model=resnet50_imagenet", f"--out={out}")
  assert done.returncode == 0, done.stderr
  assert "resnet50_imagenet (stride_in_3x3=True), 1000 classes, 267 tensors" in done.stdout
  assert "53 num_batches_tracked ignored" in done.stdout

  config = runs.read_config(out)
  assert (config.model, config.model_options, config.dataset, config.num_classes,
          config.normalization) == (
      "resnet50_imagenet", "stride_in_3x3=True", "imagenet", 1000, "channel_mean_std")
  as_json = lambda c: json.loads(json.dumps(c.to_dict()))
  set_here = ("model", "model_options", "dataset", "num_classes", "normalization")
  assert {k: v for k, v in as_json(config).items() if k not in set_here} == {
      k: v for k, v in as_json(configs.base_config()).items() if k not in set_here}
  assert runs.build_model(config, config.num_classes) == our_model("resnet50")
  restored = checkpoint.restore_saved(checkpoint.manager(out))
  assert set(restored) == {"params", "batch_stats"}
  expected = convert.from_torch_state_dict(convert.read_state_dict(source), our_model("resnet50"))
  assert jax.tree.all(jax.tree.map(np.array_equal, restored, expected))
  info = metrics_io.read_json(os.path.join(out, convert.CONVERTED_FILE))
  assert info["source"] == os.path.abspath(source) and len(info["sha256"]) == 64
  assert sorted(os.listdir(tmp_path)) == ["run"]  # no temporary directory left behind

  back = str(tmp_path / "back.safetensors")
  done = command("--to_torch", f"--input={out}", f"--out={back}")
  assert done.returncode == 0, done.stderr
  loaded = peer(cmd="run", library="torchvision", arch="resnet50", num_classes=1000, state=back,
                io=os.path.join(directory, "io.safetensors"), out=str(tmp_path / "logits"))
  assert loaded == {"missing": [], "unexpected": []}  # strict, num_batches_tracked filled in
  logits = safetensors.numpy.load_file(str(tmp_path / "logits"))["logits"]
  original = safetensors.numpy.load_file(os.path.join(directory, "io.safetensors"))["logits"]
  assert np.array_equal(logits, original)  # bit for bit: the same tensors in the same net


@pytest.mark.slow  # a ResNet-50 at 224 px through every analysis: minutes on a CPU
def test_the_analyses_run_on_torchvisions_resnet50(torch_net, prepared_imagenet, tmp_path):
  """torchvision's own ResNet-50 (random weights and BN statistics), converted by the command and
  analysed at its size, 224 px of 256, on the fixture's photos (`python -m resnet_jax.analyze
  --workdir=DIR --data_dir=PREPARED --num_images=4 ...`)."""
  source = os.path.join(torch_net("torchvision", "resnet50"), "state.safetensors")
  out = str(tmp_path / "run")
  done = command(f"--input={source}", "--model=resnet50_imagenet", f"--out={out}")
  assert done.returncode == 0, done.stderr
  settings = configs.analysis_config()
  settings.update(num_images=4, path_images=2, samples_per_length=1, lesion_samples=1)
  result = analyze.analyze_run(out, "all", settings, progress=False, data_dir=prepared_imagenet)
  assert (result["data"]["image_size"], result["data"]["resize_size"]) == (224, 256)
  assert result["num_blocks"] == 16 and set(result["analyses"]) == {"response_std", "lesion",
                                                                    "paths"}
  assert np.all(np.isfinite(result["paths_exact"]["norm"]))
  assert np.all(np.isfinite(list(result["response_std"].values())))


# What follows needs no torch: state dicts in torchvision's layout are made from our own
# variables (the mapping itself is checked against torch above).

def random_variables(model, seed: int = 0) -> dict:
  """Random values in every variable of `model` (BN variances positive), without running init."""
  shapes = torch_layout.layout(model)
  leaves, tree = jax.tree.flatten(shapes)
  rng = np.random.default_rng(seed)
  return jax.tree.unflatten(tree, [rng.uniform(0.5, 1.5, s.shape).astype(np.float32)
                                   for s in leaves])


@pytest.fixture(scope="module")
def resnet18_state():
  model = our_model("resnet18")
  return model, convert.to_torch_state_dict(random_variables(model), model)


def test_the_way_back_and_forth_is_exact():
  model = our_model("resnet50")
  variables = random_variables(model)
  state = convert.to_torch_state_dict(variables, model)
  assert list(state)[:6] == ["conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean",
                             "bn1.running_var", "layer1.0.conv1.weight"]
  assert list(state)[-2:] == ["fc.weight", "fc.bias"] and len(state) == 267
  assert state["layer3.5.conv2.weight"].shape == (256, 256, 3, 3)
  assert np.array_equal(state["layer3.5.conv2.weight"],
                        variables["params"]["stage3"]["blocks"]["block"]["conv2"]["kernel"][4]
                        .transpose(3, 2, 0, 1))
  back = convert.from_torch_state_dict(state, model)
  assert jax.tree.all(jax.tree.map(np.array_equal, back, variables))
  assert jax.tree.structure(back) == jax.tree.structure(variables)


def test_random_weights_are_drawn_as_torchvision_initialises_them():
  state = convert.random_state_dict("resnet50_imagenet", num_classes=10, seed=1)
  model = our_model("resnet50", num_classes=10)
  # Every key of the net, in torchvision's order, as float32.
  assert list(state) == list(convert.to_torch_state_dict(random_variables(model), model))
  assert {v.dtype for v in state.values()} == {np.dtype(np.float32)}
  conv = state["layer3.2.conv2.weight"]  # He-normal, fan_out = 256 * 3 * 3
  assert conv.shape == (256, 256, 3, 3)
  assert abs(conv.mean()) < 1e-3 and conv.std() == pytest.approx(np.sqrt(2 / (256 * 9)), rel=0.02)
  bn = [state[f"layer2.1.bn2.{t}"] for t in ("weight", "bias", "running_mean", "running_var")]
  assert [float(np.unique(t)[0]) for t in bn] == [1.0, 0.0, 0.0, 1.0]
  assert state["fc.weight"].shape == (10, 2048)
  bound = 1 / np.sqrt(2048)
  assert np.abs(state["fc.weight"]).max() <= bound and np.abs(state["fc.bias"]).max() <= bound
  assert state["fc.weight"].std() == pytest.approx(bound / np.sqrt(3), rel=0.05)
  other = convert.random_state_dict("resnet50_imagenet", num_classes=10, seed=2)
  assert not np.array_equal(state["conv1.weight"], other["conv1.weight"])


@pytest.mark.parametrize("name,options,match", [
    ("resnet50_imagenet", {}, "stride_in_3x3=True"),
    ("plain18_imagenet", {}, "plain nets"),
    ("resnet18_imagenet", {"shortcut": "A"}, "option A"),
    ("resnet34_imagenet", {"shortcut": "C"}, "option C"),
    ("resnet20", {}, "only the ImageNet ResNets"),
    ("densenet40_k12", {}, "only the ImageNet ResNets"),
])
def test_models_without_a_torch_counterpart_are_refused(resnet18_state, name, options, match):
  model = get_model(name, **options)
  with pytest.raises(ConversionError, match=match):
    convert.from_torch_state_dict(resnet18_state[1], model)
  with pytest.raises(ConversionError, match=match):
    convert.to_torch_state_dict({}, model)


def test_every_key_is_used_once_and_num_batches_tracked_is_ignored(resnet18_state):
  model, state = resnet18_state
  counted = {**state, **{k.replace("running_mean", "num_batches_tracked"): np.array(7)
                         for k in state if k.endswith("running_mean")}}
  variables = convert.from_torch_state_dict(counted, model)
  assert jax.tree.all(jax.tree.map(np.array_equal, variables,
                                   convert.from_torch_state_dict(state, model)))
  missing = {k: v for k, v in state.items() if k != "layer4.1.bn2.running_var"}
  with pytest.raises(CheckpointMismatchError, match=r"lacks 1 key.*layer4\.1\.bn2\.running_var"):
    convert.from_torch_state_dict(missing, model)
  # A count of a BatchNorm the model does not have is a stray key like any other.
  for extra in ("layer1.0.conv1.num_batches_tracked", "layer4.2.bn1.weight", "module.fc.bias"):
    with pytest.raises(CheckpointMismatchError, match=rf"1 key\(s\) the model does not: {extra}"):
      convert.from_torch_state_dict({**state, extra: np.zeros(3, np.float32)}, model)
  with pytest.raises(CheckpointMismatchError, match=r"layer2\.0\.downsample\.0\.weight has shape "
                     r"\(128, 64, 3, 3\), the model needs \(128, 64, 1, 1\)"):
    convert.from_torch_state_dict(
        {**state, "layer2.0.downsample.0.weight": np.zeros((128, 64, 3, 3), np.float32)}, model)
  with pytest.raises(CheckpointMismatchError, match="int64 values"):
    convert.from_torch_state_dict({**state, "fc.bias": np.zeros(1000, np.int64)}, model)
  # The wrong model for the file: the message says which net the file holds.
  with pytest.raises(CheckpointMismatchError,
                     match=r"holds a ResNet of basic blocks \(2, 2, 2, 2\) per stage "
                           r"\(resnet18_imagenet\), the model has basic blocks \(3, 4, 6, 3\) "
                           r"per stage \(resnet34_imagenet\)"):
    convert.from_torch_state_dict(state, our_model("resnet34"))
  with pytest.raises(CheckpointMismatchError, match="stage4/block1/conv1/kernel"):
    variables["params"]["stage4"]["block1"]["conv1"]["kernel"] = np.zeros((3, 3, 256, 5))
    convert.to_torch_state_dict(variables, model)


def test_half_precision_tensors_widen_exactly(resnet18_state):
  model, state = resnet18_state
  half = {k: v.astype(np.float16) for k, v in state.items()}
  variables = convert.from_torch_state_dict(half, model)
  back = convert.to_torch_state_dict(variables, model)
  assert all(back[k].dtype == np.float32 and np.array_equal(back[k], half[k]) for k in half)


def test_file_errors_are_user_errors(resnet18_state, tmp_path):
  model, state = resnet18_state
  path = str(tmp_path / "resnet18.safetensors")
  convert.write_safetensors(state, path)
  assert set(convert.read_state_dict(path)) == set(state)
  with pytest.raises(ConversionError, match="exists"):
    convert.from_torch_file(path, "resnet18_imagenet", str(tmp_path))
  with pytest.raises(CheckpointMismatchError, match=r"resnet18_imagenet\), the model has"):
    convert.from_torch_file(path, "resnet101_imagenet", str(tmp_path / "run"))
  with pytest.raises(ConversionError, match="unknown model 'resnet51_imagenet'"):
    convert.from_torch_file(path, "resnet51_imagenet", str(tmp_path / "run"))
  with pytest.raises(ConversionError, match=r"\.safetensors or \.pth"):
    convert.read_state_dict(str(tmp_path / "weights.npz"))
  with pytest.raises(CorruptDataError, match="does not exist"):
    convert.read_state_dict(str(tmp_path / "absent.safetensors"))
  assert not os.path.exists(tmp_path / "run")
  with pytest.raises(ConversionError, match=r"\.safetensors file"):
    convert.to_torch_file(str(tmp_path), str(tmp_path / "back.pth"))
  with pytest.raises(NoRunError):
    convert.to_torch_file(str(tmp_path), str(tmp_path / "back.safetensors"))


def _assert_one_plain_error(done: subprocess.CompletedProcess, expected: str) -> None:
  assert done.returncode == 1, done.stderr[-2000:]
  assert "Traceback" not in done.stderr, done.stderr[-2000:]
  lines = [line for line in done.stderr.strip().splitlines() if line]
  assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr[-2000:]
  assert expected in lines[0], lines[0]


def test_a_truncated_file_and_a_pth_without_torch_end_in_one_line(resnet18_state, tmp_path):
  path = str(tmp_path / "resnet18.safetensors")
  convert.write_safetensors(resnet18_state[1], path)
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)
  done = command(f"--input={path}", "--model=resnet18_imagenet", f"--out={tmp_path / 'run'}")
  _assert_one_plain_error(done, "is not a readable .safetensors file")
  assert not os.path.exists(tmp_path / "run")
  if _torch_in_this_python():
    return  # the pickle would be read: the message below is for Pythons without torch
  pickle = tmp_path / "resnet18.pth"
  pickle.write_bytes(b"PK")
  done = command(f"--input={pickle}", "--model=resnet18_imagenet", f"--out={tmp_path / 'run'}")
  _assert_one_plain_error(done, "torch is not installed here: pip install 'resnet-jax[torch]'")
  assert "safetensors" in done.stderr


# Starting a run from another run's weights.

def _tiny(num_classes: int, **options):
  return get_model("resnet18_imagenet", num_classes=num_classes, widths=(4, 8, 8, 8), **options)


def _init(model, seed: int) -> dict:
  return random_variables(model, seed)  # the layout of model.init, without its cost


def _save_run(directory: str, variables: dict) -> None:
  mngr = checkpoint.manager(directory)
  checkpoint.save_variables(mngr, variables, step=0)
  mngr.close()


def test_a_new_class_count_gets_a_new_head_and_everything_else_is_the_checkpoints(tmp_path):
  saved = _init(_tiny(10), seed=0)
  _save_run(str(tmp_path), saved)
  like = _init(_tiny(4), seed=1)
  variables, note = pretrained.initial_variables(str(tmp_path), like)
  assert note == (f"initial weights: {tmp_path} (checkpoint step 0), every parameter and BN "
                  "statistic but the head, which is new: 4 classes instead of the checkpoint's 10")
  assert jax.tree.structure(variables) == jax.tree.structure(like)
  head = variables["params"].pop("head")
  assert jax.tree.all(jax.tree.map(np.array_equal, head, like["params"]["head"]))
  assert not np.array_equal(like["params"]["head"]["kernel"][:, :4],
                            saved["params"]["head"]["kernel"][:, :4])
  saved["params"].pop("head")
  assert jax.tree.all(jax.tree.map(np.array_equal, variables, saved))

  same, note = pretrained.initial_variables(str(tmp_path), _init(_tiny(10), seed=1))
  assert note.endswith("every parameter and BN statistic")
  assert jax.tree.all(jax.tree.map(np.array_equal, same["params"]["head"],
                                   _init(_tiny(10), seed=0)["params"]["head"]))


def test_any_other_difference_is_an_error_naming_the_parameter(tmp_path):
  _save_run(str(tmp_path), _init(_tiny(10), seed=0))
  wider = get_model("resnet18_imagenet", num_classes=10, widths=(4, 8, 8, 16))
  with pytest.raises(CheckpointMismatchError, match=r"batch_stats/stage4/block1/bn1/mean is "
                     r"float32\[8\] in the checkpoint of .*, float32\[16\] in the model \(and "
                     r"\d+ more differ\)"):
    pretrained.initial_variables(str(tmp_path), _init(wider, seed=0))
  deeper = get_model("resnet34_imagenet", num_classes=10, widths=(4, 8, 8, 8))
  with pytest.raises(CheckpointMismatchError, match=r"batch_stats/stage1/blocks/block/bn1/mean is "
                     r"float32\[1, 4\] in the checkpoint .*float32\[2, 4\]"):
    pretrained.initial_variables(str(tmp_path), _init(deeper, seed=0))
  with pytest.raises(CheckpointMismatchError, match="holds batch_stats/stage2/block1/bn_proj/mean"):
    pretrained.initial_variables(str(tmp_path), _init(_tiny(10, shortcut="A"), seed=0))
  with pytest.raises(CheckpointMismatchError, match="lacks batch_stats/stage1/block1/bn_proj/mean"):
    pretrained.initial_variables(str(tmp_path), _init(_tiny(10, shortcut="C"), seed=0))
  with pytest.raises(NoRunError, match="no checkpoint"):
    pretrained.initial_variables(str(tmp_path / "absent"), {})
  assert not os.path.exists(tmp_path / "absent")


def test_a_training_runs_checkpoint_starts_a_run_on_the_devices_of_like(tmp_path):
  import optax  # pylint: disable=g-import-not-at-top

  from resnet_jax.train_state import TrainState  # pylint: disable=g-import-not-at-top
  trained = _init(_tiny(10), seed=0)
  tx = optax.sgd(0.1, 0.9)
  state = TrainState(step=jnp.asarray(7, jnp.int32), params=trained["params"],
                     batch_stats=trained["batch_stats"], opt_state=tx.init(trained["params"]),
                     warmed_up=jnp.zeros((), jnp.bool_))
  mngr = checkpoint.manager(str(tmp_path))
  checkpoint.save(mngr, state)
  mngr.wait_until_finished()
  mngr.close()
  mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  like = jax.device_put(_init(_tiny(3), seed=1), replicated)
  variables, note = pretrained.initial_variables(str(tmp_path), like)
  assert "(checkpoint step 7)" in note and "3 classes instead of the checkpoint's 10" in note
  assert all(leaf.sharding == replicated for leaf in jax.tree.leaves(variables))
  assert np.array_equal(variables["params"]["stage1"]["block1"]["conv1"]["kernel"],
                        state.params["stage1"]["block1"]["conv1"]["kernel"])
  assert np.array_equal(variables["batch_stats"]["stem_bn"]["var"],
                        state.batch_stats["stem_bn"]["var"])

