"""Experiments that explain residual networks.

responses  He et al. 2015 Fig. 7: std of each 3x3 layer's response (BN output before
           ReLU/addition), in layer order and sorted.
lesion     Veit et al. 2016 Figs. 3 and 5a: test error after deleting one block or k random
           blocks; all mask rows in one compiled, vmapped pass; the damage of deleting one
           block, as a share of the way to chance; deleting one branch of a multi-residual
           block (`lesion_branches`).
reorder    Veit et al. 2016 Fig. 5b: test error after reordering interchangeable blocks.
paths      Veit et al. 2016 Fig. 6a: path-length distribution and counts (for k branches per
           block too), log2 of the number of paths, effective paths (the shortest window
           holding a fraction) and the share of any window of lengths.
columns    Larsson et al. 2017 (FractalNet): error of each column alone and of the net as
           columns are removed (the only analysis of a FractalNet; the others refuse it).
path_gradients
           Veit et al. 2016 Fig. 6b/c: gradient by path length (sampled single paths as Veit
           did, each on a fresh random batch, and exact per-length sums).

All analyses run BN in eval mode, take variables {"params", "batch_stats"}, NHWC float images
(finite: NaN or inf pixels are refused, naming the images) and integer labels, and compile once
per model and chunk shape (masks, routes and orders are traced).
"""
from resnet_jax.analysis._common import DEFAULT_MAX_BATCH, random_batches
from resnet_jax.analysis.columns import (
    ColumnAnalysis,
    column_analysis,
    column_errors,
    column_masks,
)
from resnet_jax.analysis.lesion import (
    LesionK,
    lesion_branch_errors,
    lesion_branches,
    lesion_damage,
    lesion_errors,
    lesion_k,
    lesion_logits,
    lesion_single,
)
from resnet_jax.analysis.path_gradients import (
    ExactPathGradients,
    SampledPathGradients,
    block_input_shape,
    exact_path_gradients,
    sampled_path_gradients,
    single_path_gradient,
    single_path_gradients,
)
from resnet_jax.analysis.paths import (
    effective_paths,
    log2_num_paths,
    path_counts,
    path_length_distribution,
    window_share,
)
from resnet_jax.analysis.reorder import LesionReorder, kendall_tau, lesion_reorder
from resnet_jax.analysis.responses import response_layer_names, response_std, sorted_response_std

__all__ = [
    "DEFAULT_MAX_BATCH", "ColumnAnalysis", "ExactPathGradients", "LesionK", "LesionReorder",
    "SampledPathGradients", "block_input_shape", "column_analysis", "column_errors", "column_masks",
    "effective_paths", "exact_path_gradients", "kendall_tau", "lesion_branch_errors",
    "lesion_branches", "lesion_damage", "lesion_errors", "lesion_k", "lesion_logits",
    "lesion_reorder", "lesion_single", "log2_num_paths", "path_counts", "path_length_distribution",
    "random_batches", "response_layer_names", "response_std", "sampled_path_gradients",
    "single_path_gradient", "single_path_gradients", "sorted_response_std", "window_share",
]
