"""The path analyses of a run (Veit et al. 2016, Fig. 6) and the record of how they were made.

Veit et al. sample each single path on a fresh random batch of training images; the exact
per-length decomposition runs on one random batch of the same size from the same split, so the two
statistics describe gradients of batches alike. Which split, which batch rule and which images
went in is written next to the results ("paths_protocol"), with the window of lengths that each
rule picks and the share of the gradient magnitude it holds ("path_windows").
"""
import dataclasses
from typing import Any

import jax
import ml_collections
import numpy as np

from resnet_jax import analysis

# The default window rule: the shortest window of lengths holding 90% of a per-length statistic.
EFFECTIVE_FRACTION = 0.9


def compute(model, variables, images, labels, settings: ml_collections.ConfigDict,
            key: jax.Array, max_batch: int = analysis.DEFAULT_MAX_BATCH) -> dict[str, Any]:
  """Sampled and exact gradients by path length, effective windows and the protocol record.

  Args:
    images, labels: [N, H, W, C] and [N] of settings.path_split, to draw the batches from.
    settings: resolved analysis settings (`analyze.resolve_settings`).
    key: the analyses' key.
    max_batch: images per pass, each route and path copy counted.
  """
  size = settings.path_images
  samples = settings.samples_per_length
  if settings.path_batch == "fixed":  # every path on the first `size` images, as before
    batch = np.arange(min(size, images.shape[0]))
    sampled = analysis.sampled_path_gradients(model, variables, images[:size], labels[:size],
                                              jax.random.fold_in(key, 3),
                                              samples_per_length=samples,
                                              max_batch=max_batch)
  else:
    batch = analysis.random_batches(jax.random.fold_in(key, 4), 1, images.shape[0], size)[0]
    sampled = analysis.sampled_path_gradients(model, variables, images, labels,
                                              jax.random.fold_in(key, 3),
                                              samples_per_length=samples, batch_size=size,
                                              max_batch=max_batch)
  exact = analysis.exact_path_gradients(model, variables, images[batch], labels[batch],
                                        max_batch=max_batch)
  return {
      # Routes, batches and the [n+1, N, H, W, C] gradients stay in memory; norms are saved.
      "paths_sampled": _fields(sampled, ("routes", "batches")),
      "paths_exact": _fields(exact, ("grads",)),
      "effective_paths_sampled": analysis.effective_paths(sampled.total, EFFECTIVE_FRACTION),
      "effective_paths_exact": analysis.effective_paths(exact.norm, EFFECTIVE_FRACTION),
      "path_windows": windows(sampled.total, exact.norm, settings.path_window,
                              model.num_blocks),
      "paths_protocol": protocol(settings, images.shape[0], batch),
  }


def _fields(result: Any, left_out: tuple[str, ...]) -> dict[str, Any]:
  return {f.name: getattr(result, f.name) for f in dataclasses.fields(result)
          if f.name not in left_out}


def windows(total: Any, norm: Any, window: tuple[int, int],
            num_blocks: int) -> list[dict[str, Any]]:
  """For Veit's T(k) and the exact ||G(k)||: the default window and the given one, with the
  share of the statistic each holds and the rule that chose it."""
  shortest = (f"the shortest window holding {EFFECTIVE_FRACTION:.0%} of the statistic "
              f"(analysis.effective_paths, fraction {EFFECTIVE_FRACTION})")
  given = "given: settings.path_window (Veit et al. 2016 name 5-17 of 54 blocks)"
  if window[1] > num_blocks:
    given += f"; this net has {num_blocks} blocks and no longer paths"
  out = []
  for statistic, values in (("T(k) = C(n,k) E||g_path(k)||, Veit's total (sampled)", total),
                            ("||G(k)||, norm of the exact per-length gradient (shares are of "
                             "sum_k ||G(k)||, not of the gradient's norm)", norm)):
    found = analysis.effective_paths(values, EFFECTIVE_FRACTION)
    for lo_hi, rule in ((found, shortest), (tuple(window), given)):
      out.append({"statistic": statistic, "window": [int(b) for b in lo_hi],
                  "share": analysis.window_share(values, lo_hi), "rule": rule})
  return out


def protocol(settings: ml_collections.ConfigDict, split_images: int,
             batch: np.ndarray) -> dict[str, Any]:
  """Which images the path gradients were computed on, in words and numbers."""
  split, size = settings.path_split, int(batch.size)
  if settings.path_batch == "fixed":
    sampled = f"every sampled path on the same {size} images, the first of the {split} split"
    exact = "on those same images"
  else:
    sampled = (f"each sampled path on its own random batch of {size} distinct {split} images, "
               f"drawn from the {split_images} {split} images loaded (seed: settings.seed; a "
               "split held in memory whole, a streamed one's first images: see \"data\")")
    exact = (f"on one random batch of {size} {split} images, the size of the sampled paths' "
             "batches (indices: exact_images)")
  return {"split": split, "batch": settings.path_batch, "batch_size": size,
          "split_images": split_images, "sampled": sampled, "exact": exact,
          "exact_images": batch}
