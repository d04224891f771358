"""What a run writes for people and notebooks: JSON lines, TensorBoard events, config, results.

Process 0 writes; other processes get no-op writers. `read_metrics(workdir)` is what notebooks
and plots read.
"""
import json
import os
from typing import Any, Iterable

import jax

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"


class MetricWriter:
  """Appends one JSON object per logged step to metrics.jsonl and mirrors scalars to TensorBoard
  event files (tensorboardX: no TensorFlow needed)."""

  def __init__(self, workdir: str, *, active: bool | None = None):
    self.active = jax.process_index() == 0 if active is None else active
    self._path = os.path.join(workdir, METRICS_FILE)
    self._tb = None
    if self.active:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, scalars: dict[str, float]) -> None:
    if not self.active:
      return
    record = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
    with open(self._path, "a") as f:
      f.write(json.dumps(record) + "\n")
    for name, value in scalars.items():
      self._tb.add_scalar(name, float(value), int(step))

  def truncate_after(self, step: int) -> None:
    """Drops records logged after `step`: a resumed run re-logs the steps it repeats."""
    if not self.active or not os.path.exists(self._path):
      return
    kept = [r for r in read_metrics_file(self._path) if r["step"] <= step]
    # Atomically: the other processes of a multi-host run read this file meanwhile (and a kill
    # here must not lose it).
    _write_atomically(self._path, "".join(json.dumps(r) + "\n" for r in kept))

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics_file(path: str) -> list[dict[str, Any]]:
  records = []
  with open(path) as f:
    for line in f:
      line = line.strip()
      if line:
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError:
          break  # a line cut short by a kill; everything after it is lost with it
  return records


def read_metrics(workdir: str) -> list[dict[str, Any]]:
  """Every logged record of a run, in step order."""
  path = os.path.join(workdir, METRICS_FILE)
  return read_metrics_file(path) if os.path.exists(path) else []


def _write_atomically(path: str, text: str) -> None:
  """Temp file + rename, so a kill never leaves half a file and a reader never sees one."""
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(text)
  os.replace(tmp, path)


def write_json(path: str, obj: Any) -> None:
  _write_atomically(path, json.dumps(obj, indent=2, sort_keys=True))


def read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def last(records: Iterable[dict[str, Any]], key: str) -> Any:
  """The last value logged under `key`, or None."""
  value = None
  for r in records:
    if key in r:
      value = r[key]
  return value
