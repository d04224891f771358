"""Three traps of XLA's CPU backend in convolutions, as minimal reproductions in plain JAX.

`python benchmarks/xla_cpu_traps.py` prints one JSON line per case and variant (ms per call, the
best of `--rounds` alternated rounds, and the median paired ratio to the first variant).

1. "control_flow": the gradient of one 3x3 convolution (32x32x16 -> 16 channels, batch 32) as
   jax's transpose rules write it (`jax.vjp` of `lax.conv_general_dilated`) and as two
   convolutions in XLA's canonical NHWC/HWIO form (`layers.sliced_grad_conv`'s backward pass),
   each plain, inside `lax.cond` and inside a two-trip `lax.fori_loop`. jax's form has permuted
   dimension numbers (the kernel gradient `f01b_i01o->01bf`); XLA rewrites it into its fast form
   at the top level of the program only. In a conditional branch or a loop body it stays a
   "wrapped_convolution" loop fusion, a naive loop: on a 2-core x86 CPU (jax 0.12) 592 ms
   inside `lax.cond` against 25 ms plain, 1,293 ms for the two-trip loop; the canonical form
   took 13, 22 and 31 ms. This is why stochastic depth under `nn.cond` and scanned stages ran
   many times slower on a CPU (stages.py unrolls its scans for this reason).
2. "residual_chain": the gradient with respect to the kernels of n blocks
   x <- relu(x + conv(x, w_i)) (batch 32, 32x32x16), with jax's convolution and with
   `layers.sliced_grad_conv(1)`, which saves each conv's input behind `lax.optimization_barrier`.
   With jax's own, XLA fuses the transpose that the kernel gradient needs of x_i with the
   elementwise ops that computed x_i, duplicating them, and x_i is a chain of adds and ReLUs back
   to the first block: block i recomputes i blocks' elementwise work, so the cost per block grows
   with n. The rows give ms per block at each n; the barrier keeps it flat.
3. "small_input": a 3x3 convolution (padding 1, batch 32, C -> C channels) of an input smaller
   than its kernel, forward and both gradients, against the same convolution of a 4x4 input.
   XLA swaps such a convolution's operands (dim_labels `01fb_o01i->f01b`, the kernel slid over
   by the input), a form its CPU backend runs as a naive loop. On a 2-core x86 CPU (jax 0.12,
   2026-12-03, `--cases=small_input`), forward and both gradients at 512 channels: a 2x2 input
   583.5 ms with jax's convolution (3.1 GFLOP/s of the nominal FLOPs) against 13.4 ms as
   `layers.sliced_grad_conv`'s patches matmul (135 GFLOP/s); 1x1: 31.1 against 4.6 ms; a 4x4
   input, not swapped, 67.4 against 62.7 ms (the canonical gradients, no patches). FractalNet's
   last block on 32x32 images is such convolutions (2x2x512): they were most of its train step.
   The rows give ms and GFLOP/s (three convolutions' nominal FLOPs: forward and two gradients)
   for jax's convolution and for `layers.sliced_grad_conv(1)`.
"""
import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from versions import versions  # this directory

from resnet_jax.models import layers

DN = ("NHWC", "HWIO", "NHWC")
CASES = ("control_flow", "residual_chain", "small_input")


def conv_fn(kind: str):
  """A 3x3 stride-1 conv(x, w), padding 1: jax's ("jax") or the canonical-gradient one."""
  conv = jax.lax.conv_general_dilated if kind == "jax" else layers.sliced_grad_conv(1)
  return lambda x, w: conv(x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=DN)


def control_flow_cases(kind: str) -> dict:
  """{place: jitted fn(x, w, p)} of one conv's input and kernel gradients of `kind`."""
  conv = conv_fn(kind)

  def grads(x, w):
    y, vjp = jax.vjp(conv, x, w)
    return vjp(y)

  def zeros(x, w):
    return jnp.zeros_like(x), jnp.zeros_like(w)

  return {
      "plain": jax.jit(lambda x, w, p: grads(x, w)),
      "lax.cond": jax.jit(lambda x, w, p: jax.lax.cond(p > 0, grads, zeros, x, w)),
      "fori_loop(2)": jax.jit(lambda x, w, p: jax.lax.fori_loop(
          0, 2, lambda i, c: grads(c[0] * p, w), (x, w))),
  }


def chain_grad(kind: str):
  """The kernels' gradient of sum(x_n), x_{i+1} = relu(x_i + conv(x_i, w_i))."""
  conv = conv_fn(kind)

  def loss(ws, x):
    for w in ws:
      x = jax.nn.relu(x + conv(x, w))
    return jnp.sum(x)
  return jax.jit(jax.grad(loss))


def small_input_grad(kind: str):
  """The value and both gradients of sum(sin(conv(x, w)))."""
  conv = conv_fn(kind)
  return jax.jit(jax.value_and_grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w))), argnums=(0, 1)))


def best_and_ratios(fns: dict, args: dict, rounds: int, calls: int) -> dict:
  """{key: (best seconds per call, median paired ratio to the first key)}, alternated rounds."""
  for key, fn in fns.items():
    jax.block_until_ready(fn(*args[key]))
  times = {key: [] for key in fns}
  for _ in range(rounds):
    for key, fn in fns.items():
      start = time.perf_counter()
      for _ in range(calls):
        out = fn(*args[key])
      jax.block_until_ready(out)
      times[key].append((time.perf_counter() - start) / calls)
  first = times[next(iter(fns))]
  return {key: (min(t), statistics.median(a / b for a, b in zip(t, first)))
          for key, t in times.items()}


def main():
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--batch_size", type=int, default=32)
  parser.add_argument("--depths", default="3,9,18", help="blocks of the residual chain")
  parser.add_argument("--cases", default=",".join(CASES), help="which of " + ", ".join(CASES))
  parser.add_argument("--sizes", default="1,2,4", help="input sizes of the small-input case")
  parser.add_argument("--channels", type=int, default=512, help="of the small-input case")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--calls", type=int, default=3, help="timed calls per round")
  args = parser.parse_args()
  cases = args.cases.split(",")
  if not set(cases) <= set(CASES):
    parser.error(f"--cases must be among {', '.join(CASES)}, got {args.cases!r}")
  print(json.dumps(versions()), flush=True)
  load = lambda: os.getloadavg()[0]
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((args.batch_size, 32, 32, 16), np.float32))
  w = jnp.asarray(rng.standard_normal((3, 3, 16, 16), np.float32) / 12)

  if "control_flow" in cases:
    fns = {(kind, place): fn for kind in ("jax", "canonical")
           for place, fn in control_flow_cases(kind).items()}
    result = best_and_ratios(fns, {key: (x, w, jnp.float32(1)) for key in fns}, args.rounds,
                             args.calls)
    for (kind, place), (seconds, ratio) in result.items():
      print(json.dumps({"case": "control_flow", "gradient": kind, "place": place,
                        "batch_size": args.batch_size, "ms": round(1000 * seconds, 2),
                        "ratio_to_jax_plain": round(ratio, 3), "load": load()}), flush=True)

  if "residual_chain" in cases:
    for n in (int(d) for d in args.depths.split(",")):
      ws = [w * (1 + 0.01 * i) for i in range(n)]
      fns = {kind: chain_grad(kind) for kind in ("jax", "canonical")}
      result = best_and_ratios(fns, {kind: (ws, x) for kind in fns}, args.rounds, args.calls)
      for kind, (seconds, ratio) in result.items():
        print(json.dumps({"case": "residual_chain", "gradient": kind, "blocks": n,
                          "batch_size": args.batch_size, "ms": round(1000 * seconds, 2),
                          "ms_per_block": round(1000 * seconds / n, 2),
                          "ratio_to_jax": round(ratio, 3), "load": load()}), flush=True)

  if "small_input" in cases:
    c = args.channels
    small_w = jnp.asarray(rng.standard_normal((3, 3, c, c), np.float32) / (3 * c ** 0.5))
    for size in (int(s) for s in args.sizes.split(",")):
      small_x = jnp.asarray(rng.standard_normal((args.batch_size, size, size, c), np.float32))
      fns = {kind: small_input_grad(kind) for kind in ("jax", "canonical")}
      result = best_and_ratios(fns, {kind: (small_x, small_w) for kind in fns}, args.rounds,
                               args.calls)
      gflop = 3 * 2 * args.batch_size * size * size * 9 * c * c / 1e9
      for kind, (seconds, ratio) in result.items():
        print(json.dumps({"case": "small_input", "gradient": kind, "size": size, "channels": c,
                          "batch_size": args.batch_size, "ms": round(1000 * seconds, 2),
                          "gflop_per_s": round(gflop / seconds, 1),
                          "ratio_to_jax": round(ratio, 3), "load": load()}), flush=True)


if __name__ == "__main__":
  main()
