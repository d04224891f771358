"""The versions a benchmark ran with, as one JSON line: `make bench` prints it before its timings.

Every timing depends on the interpreter, the JAX/XLA build and the device, so a result names them.
The benchmark scripts of this directory import `versions()` (`from versions import versions`) to
print the same line or add it to their own rows; run alone, this file prints it.
"""
import importlib.metadata
import json
import os
import platform

import jax

# Distribution names, and the keys they get in the line.
PACKAGES = {"jax": "jax", "jaxlib": "jaxlib", "flax": "flax", "optax": "optax",
            "orbax-checkpoint": "orbax", "numpy": "numpy"}


def versions() -> dict[str, str | int | None]:
  """The Python and library versions, and the device JAX computes on.

  Returns:
    {"python", "jax", "jaxlib", "flax", "optax", "orbax", "numpy": version strings, None for a
    package that is not installed; "platform": the OS and CPU architecture; "backend", "device",
    "device_count": JAX's default backend, the kind of its first device and the device count;
    "ld_preload": the libraries preloaded into the process (an allocator such as tcmalloc), ""
    for none}.
  """
  row: dict[str, str | int | None] = {"python": platform.python_version()}
  for dist, key in PACKAGES.items():
    try:
      row[key] = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
      row[key] = None
  row["platform"] = f"{platform.system()} {platform.machine()}"
  row["backend"] = jax.default_backend()
  row["device"] = jax.devices()[0].device_kind
  row["device_count"] = jax.device_count()
  row["ld_preload"] = os.environ.get("LD_PRELOAD", "")
  return row


def main():
  print(json.dumps({"versions": versions()}), flush=True)


if __name__ == "__main__":
  main()
