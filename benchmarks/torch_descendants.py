"""PyTorch twins of the descendants for `benchmarks/peer.py`: WRN-d-k, PyramidNet (additive, basic
units), DenseNet-BC and FractalNet, each the architecture of the project's model of the same name
with its defaults (`resnet_jax.models`: wide.py, pyramid.py, densenet.py, fractalnet.py), the
same parameter count (checked by the benchmark and by tests/test_peer_bench.py), channels_last.

Like `torch_resnet.py` these nets serve timing only: initialisations follow ours but values are
never compared with ours. The options the benchmark passes to both sides:
  * DenseNet `memory_efficient` (ours: the concat-BN-ReLU-conv1x1 of each layer rematerialised,
    only the conv output kept): torchvision's memory-efficient DenseNet, `torch.utils.checkpoint`
    around the same concat-BN-ReLU-conv1x1 (it recomputes the conv too);
  * FractalNet `drop_path` and `global_drop` (ours: local drop-path per join and input, a global
    column for a share of the mini-batches, drawn once per mini-batch): the same draws, and, as
    ours, every column computed and the joins averaging the kept ones.
This file imports only torch (the worker's Python may have no jax).
"""
import math
import re

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

BN_MOMENTUM = 0.1  # Flax's 0.9 (models/layers.py)
BN_EPSILON = 1e-5


def batch_norm(channels: int, affine: bool = True) -> nn.BatchNorm2d:
  return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=BN_MOMENTUM, affine=affine)


def conv(cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
  return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias)


def he_init(net: nn.Module) -> nn.Module:
  for m in net.modules():
    if isinstance(m, nn.Conv2d):
      nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
  return net


def pooled_logits(x: torch.Tensor, head: nn.Linear) -> torch.Tensor:
  return head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# --- WRN-d-k (wide.py) ---------------------------------------------------------------------

class WideBlock(nn.Module):
  """BN-ReLU-conv3x3-BN-ReLU-conv3x3, add; a 1x1 projection of the pre-activated input where the
  width or stride changes, else the raw input."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.bn1, self.conv1 = batch_norm(cin), conv(cin, cout, 3, stride)
    self.bn2, self.conv2 = batch_norm(cout), conv(cout, cout, 3)
    self.proj = conv(cin, cout, 1, stride) if cin != cout or stride != 1 else None

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    pre = F.relu(self.bn1(x))
    y = self.conv2(F.relu(self.bn2(self.conv1(pre))))
    return y + (self.proj(pre) if self.proj is not None else x)


class WideResNet(nn.Module):
  """WRN-depth-k: conv3x3(16), three stages of (depth - 4) / 6 wide blocks (16k, 32k, 64k),
  BN-ReLU, pool, dense."""

  def __init__(self, depth: int, k: int, num_classes: int = 10):
    super().__init__()
    n, remainder = divmod(depth - 4, 6)
    if remainder or n < 1:
      raise ValueError(f"a WRN's depth is 6n+4, got {depth}")
    self.stem = conv(3, 16, 3)
    blocks, cin = [], 16
    for s, width in enumerate((16 * k, 32 * k, 64 * k)):
      for i in range(n):
        blocks.append(WideBlock(cin, width, 2 if s > 0 and i == 0 else 1))
        cin = width
    self.blocks = nn.Sequential(*blocks)
    self.final_bn, self.head = batch_norm(cin), nn.Linear(cin, num_classes)
    he_init(self)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.blocks(self.stem(x))
    return pooled_logits(F.relu(self.final_bn(x)), self.head)


# --- PyramidNet (pyramid.py) ---------------------------------------------------------------

def pyramid_widths(num_units: int, alpha: int) -> list[int]:
  """Additive widths from 16 channels, rounded per unit with floor(x + 0.5) (pyramid.py)."""
  width, widths = 16.0, []
  for _ in range(num_units):
    width += alpha / num_units
    widths.append(math.floor(width + 0.5))
  return widths


class PyramidBlock(nn.Module):
  """BN-conv3x3-BN-ReLU-conv3x3-BN, add; the shortcut a 2x2 average pool where the unit strides,
  then zero channels; no ReLU after the addition."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.bn1, self.conv1 = batch_norm(cin), conv(cin, cout, 3, stride)
    self.bn2, self.conv2, self.bn3 = batch_norm(cout), conv(cout, cout, 3), batch_norm(cout)
    self.stride, self.extra = stride, cout - cin

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.conv1(self.bn1(x))
    y = self.bn3(self.conv2(F.relu(self.bn2(y))))
    skip = F.avg_pool2d(x, 2, ceil_mode=True) if self.stride > 1 else x
    if self.extra:
      skip = F.pad(skip, (0, 0, 0, 0, 0, self.extra))
    return y + skip


class PyramidNet(nn.Module):
  """Additive PyramidNet of basic units, depth 6n+2: conv3x3(16)-BN, 3n units, BN-ReLU, pool,
  dense."""

  def __init__(self, depth: int, alpha: int, num_classes: int = 10):
    super().__init__()
    n, remainder = divmod(depth - 2, 6)
    if remainder or n < 1:
      raise ValueError(f"a PyramidNet of basic units has depth 6n+2, got {depth}")
    self.stem, self.stem_bn = conv(3, 16, 3), batch_norm(16)
    blocks, cin = [], 16
    for u, width in enumerate(pyramid_widths(3 * n, alpha)):
      blocks.append(PyramidBlock(cin, width, 2 if u in (n, 2 * n) else 1))
      cin = width
    self.blocks = nn.Sequential(*blocks)
    self.final_bn, self.head = batch_norm(cin), nn.Linear(cin, num_classes)
    he_init(self)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    x = self.blocks(self.stem_bn(self.stem(x)))
    return pooled_logits(F.relu(self.final_bn(x)), self.head)


# --- DenseNet-BC (densenet.py) -------------------------------------------------------------

class DenseLayer(nn.Module):
  """concat-BN-ReLU-conv1x1(4k)-BN-ReLU-conv3x3(k); with `memory_efficient` the opening
  concat-BN-ReLU-conv1x1 is checkpointed (recomputed in the backward pass)."""

  def __init__(self, cin: int, growth: int, memory_efficient: bool):
    super().__init__()
    self.bn1, self.conv1 = batch_norm(cin), conv(cin, 4 * growth, 1)
    self.bn2, self.conv2 = batch_norm(4 * growth), conv(4 * growth, growth, 3)
    self.memory_efficient = memory_efficient

  def opening(self, *features: torch.Tensor) -> torch.Tensor:
    return self.conv1(F.relu(self.bn1(torch.cat(features, 1))))

  def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
    if self.memory_efficient and any(f.requires_grad for f in features):
      y = checkpoint(self.opening, *features, use_reentrant=False)
    else:
      y = self.opening(*features)
    return self.conv2(F.relu(self.bn2(y)))


class DenseNetBC(nn.Module):
  """DenseNet-BC-depth-k: conv3x3(2k), three dense blocks of (depth - 4) / 6 layers, transitions
  BN-ReLU-conv1x1(floor(m / 2))-avgpool2, BN-ReLU, pool, dense."""

  def __init__(self, depth: int, growth: int, num_classes: int = 10,
               memory_efficient: bool = True):
    super().__init__()
    per_block, remainder = divmod(depth - 4, 6)
    if remainder or per_block < 1:
      raise ValueError(f"a DenseNet-BC's depth is 6l+4, got {depth}")
    self.stem = conv(3, 2 * growth, 3)
    m = 2 * growth
    self.blocks, self.transitions = nn.ModuleList(), nn.ModuleList()
    for s in range(3):
      block = nn.ModuleList()
      for _ in range(per_block):
        block.append(DenseLayer(m, growth, memory_efficient))
        m += growth
      self.blocks.append(block)
      if s < 2:
        width = math.floor(0.5 * m)
        self.transitions.append(nn.Sequential(batch_norm(m), nn.ReLU(), conv(m, width, 1),
                                              nn.AvgPool2d(2)))
        m = width
    self.final_bn, self.head = batch_norm(m), nn.Linear(m, num_classes)
    he_init(self)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    features = [self.stem(x)]
    for s, block in enumerate(self.blocks):
      for layer in block:
        features.append(layer(features))
      if s < len(self.transitions):
        features = [self.transitions[s](torch.cat(features, 1))]
    x = F.relu(self.final_bn(torch.cat(features, 1)))
    return pooled_logits(x, self.head)


# --- FractalNet (fractalnet.py) ------------------------------------------------------------

FRACTAL_WIDTHS = (64, 128, 256, 512, 512)


class FractalNet(nn.Module):
  """C columns per block, 5 blocks (64-128-256-512-512), each conv3x3 (bias) - BN (no affine) -
  ReLU, the convs in ours' order of creation (each block's C convs that read its input first),
  joins the mean of the kept inputs, 2x2 max pool after each block; pool, dense.

  Drop-path as ours: per mini-batch, global (one column, the share `global_drop` of the batches,
  whose BN running averages stay put) or local (each join keeps each input with probability
  1 - drop_path, one at random if it dropped all); a join without a kept input averages all.
  (Unlike ours, global batches move the BN running averages too: a host-side switch would stop
  `torch.compile`'s graph, and the step's time does not depend on it.)"""

  def __init__(self, num_columns: int, num_classes: int = 10, drop_path: float = 0.15,
               global_drop: float = 0.5):
    super().__init__()
    self.num_columns, self.drop_path, self.global_drop = num_columns, drop_path, global_drop
    self.convs, self.bns = nn.ModuleList(), nn.ModuleList()
    cin = 3
    for width in FRACTAL_WIDTHS:
      count = sum(2 ** c for c in range(num_columns))  # column c holds 2^c convs
      for i in range(count):
        self.convs.append(nn.Conv2d(cin if i < num_columns else width, width, 3, padding=1))
        self.bns.append(batch_norm(width, affine=False))
      cin = width
    self.head = nn.Linear(cin, num_classes)
    for m in self.convs:  # Caffe's "xavier": uniform, variance 1 / fan_in (fractalnet.py)
      bound = math.sqrt(3.0 / (m.in_channels * 9))
      nn.init.uniform_(m.weight, -bound, bound)

  def _conv(self, x: torch.Tensor) -> torch.Tensor:
    i = self._next
    self._next += 1
    return F.relu(self.bns[i](self.convs[i](x)))

  def _columns(self, x, k, first, policy):
    shallow = self._conv(x)
    if k == 1:
      return [shallow]
    inner = self._columns(x, k - 1, first + 1, policy)
    deep = self._columns(self._join(inner, first + 1, policy), k - 1, first + 1, policy)
    return [shallow] + deep

  def _join(self, inputs, first, policy):
    if len(inputs) == 1:
      return inputs[0]
    stacked = torch.stack(inputs)
    if policy is None:
      return stacked.mean(0)
    k = len(inputs)
    device = stacked.device
    local = torch.bernoulli(torch.full((k,), 1.0 - self.drop_path, device=device))
    rescue = F.one_hot(torch.randint(0, k, (), device=device), k).float()
    local = torch.where(local.sum() > 0, local, rescue)
    chosen = (torch.arange(first, first + k, device=device) == policy["column"]).float()
    keep = torch.where(policy["global"], chosen, local)
    keep = torch.where(keep.sum() > 0, keep, torch.ones_like(keep))
    return torch.tensordot(keep, stacked, dims=1) / keep.sum()

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    policy = None
    if self.training and (self.drop_path > 0 or self.global_drop > 0):
      policy = {"global": torch.bernoulli(torch.tensor(self.global_drop)).bool().to(x.device),
                "column": torch.randint(0, self.num_columns, (), device=x.device)}
    self._next = 0
    for _ in FRACTAL_WIDTHS:
      x = self._join(self._columns(x, self.num_columns, 0, policy), 0, policy)
      x = F.max_pool2d(x, 2, ceil_mode=True)
    return pooled_logits(x, self.head)


def num_params(model: nn.Module) -> int:
  return sum(p.numel() for p in model.parameters())


def build(name: str, num_classes: int = 10, **options) -> nn.Module:
  """The twin of our model `name` with these options (only the ones both sides take)."""
  patterns = {
      r"wrn(\d+)_(\d+)": lambda d, k: WideResNet(d, k, num_classes),
      r"pyramidnet(\d+)_a(\d+)": lambda d, a: PyramidNet(d, a, num_classes),
      r"densenet_bc(\d+)_k(\d+)": lambda d, k: DenseNetBC(
          d, k, num_classes, memory_efficient=options.pop("memory_efficient", True)),
      r"fractalnet_c(\d+)": lambda c: FractalNet(
          c, num_classes, drop_path=options.pop("drop_path", 0.15),
          global_drop=options.pop("global_drop", 0.5)),
  }
  for pattern, make in patterns.items():
    found = re.fullmatch(pattern, name)
    if found:
      net = make(*map(int, found.groups()))
      if options:
        raise ValueError(f"the twin of {name} takes no option {sorted(options)}")
      return net
  raise ValueError(f"no PyTorch twin of {name!r} (twins: wrn, pyramidnet, densenet_bc, "
                   f"fractalnet)")
