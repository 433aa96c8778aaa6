"""Automatic feedback for the notebooks' exercises, one module per notebook over one feedback
core (`feedback`): each check calls a student's answer — a number, a function or a class — and
compares what it does with a reference (a class: with the same weights, in train and eval mode,
through backward()); it never reads the source. It returns a CheckResult whose one line says
that the answer is right or names the mistake; the stub gets "not done yet"; no check prints
the reference answer. A graded cell ends in `.assert_ok()`: it raises CheckFailed with that
line when the answer is wrong, so that nbgrader gives the cell no points.

| notebook | checks |
|---|---|
| 01 | check_leaky_relu_factor, check_adam_step (and check_glorot_factor, for other activation/init pairs) |
| 02 | check_bn_block (and check_block, for the feedback demo) |
| 03 | check_two_branch_paths, check_tau_after_swaps |
| 04 | check_filter_normalization, check_power_iteration |
| 05 | check_mean_abs_weight, check_quiet_layer |
| 06 | check_scaled_distance, check_stopping_rule |
| 07 | check_residual_block, check_skip_block, check_highway_layer, check_dense_block, check_unet_level |
| 08 | check_autocorrelation, check_shrink_factor |
| 09 | check_causal_attention, check_pre_ln_block |
"""

from .feedback import CheckFailed, CheckResult
from .nb01 import check_adam_step, check_glorot_factor, check_leaky_relu_factor
from .nb02 import check_block, check_bn_block
from .nb03 import check_tau_after_swaps, check_two_branch_paths
from .nb04 import check_filter_normalization, check_power_iteration
from .nb05 import check_mean_abs_weight, check_quiet_layer
from .nb06 import check_scaled_distance, check_stopping_rule
from .nb07 import (
    UNetLevelBase,
    check_dense_block,
    check_highway_layer,
    check_unet_level,
    dense_layers,
)
from .nb07_bugs import check_residual_block, check_skip_block
from .nb08 import check_autocorrelation, check_shrink_factor
from .nb09 import check_causal_attention, check_pre_ln_block

__all__ = [
    "check_autocorrelation", "check_shrink_factor", "check_causal_attention", "check_pre_ln_block",
    "CheckResult", "CheckFailed", "check_glorot_factor", "check_leaky_relu_factor", "check_adam_step", "check_block", "check_bn_block", "check_two_branch_paths",
    "check_tau_after_swaps", "check_filter_normalization", "check_power_iteration", "check_mean_abs_weight", "check_quiet_layer",
    "check_scaled_distance", "check_stopping_rule", "check_residual_block", "check_skip_block",
    "check_highway_layer", "check_dense_block", "check_unet_level", "UNetLevelBase", "dense_layers",
]
