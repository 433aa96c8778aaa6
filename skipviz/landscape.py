"""Loss landscapes (Li et al. 2018), as notebook 04 uses them: one import for the three modules
that compute them. Every function leaves the model's weights, buffers and train/eval mode as it
found them.

- `skipviz.directions`: filter-normalized random directions, the direction to other weights;
- `skipviz.surfaces`: 1-D and 2-D slices of the loss through the weights;
- `skipviz.curvature`: the Hessian's extreme eigenvalues by Lanczos, at a point and over a
  plane, and the curvature of a plotted slice.

`refusals(model)` says which fast paths a model gets and, where one is refused, why.
"""

from __future__ import annotations

import torch
from torch import nn

from . import batched, hvp
from ._validation import check_model
from .curvature import (
    CurvatureMap,
    HessianExtremes,
    curvature_map,
    hessian_extremes,
    lanczos_extremes,
    nonconvex_fraction,
    slice_curvature,
)
from .directions import (
    IGNORES,
    NORMALIZATIONS,
    Direction,
    check_direction,
    direction_to,
    random_direction,
)
from .surfaces import METHODS, Slice1D, Surface2D, surface_1d, surface_2d
from .training import check_inputs, eval_mode

__all__ = ["IGNORES", "METHODS", "NORMALIZATIONS", "CurvatureMap", "Direction", "HessianExtremes",
           "Slice1D", "Surface2D", "check_direction", "curvature_map", "direction_to",
           "hessian_extremes", "lanczos_extremes", "nonconvex_fraction", "random_direction",
           "refusals", "slice_curvature", "surface_1d", "surface_2d"]


def refusals(model: nn.Module, x: torch.Tensor | None = None) -> dict[str, str | None]:
    """{'batched': ..., 'r-operator': ...} for `model` in eval mode (as the landscapes run it), on
    inputs like x (n, ...) if given: None where `skipviz.graph.prove` shows the fast path exact,
    else the reason it is refused. A proven path is still checked against the reference on its
    first use."""
    check_model("model", model)
    if x is not None:
        check_inputs(model, x)
    with eval_mode(model):
        return {"batched": batched.refusal(model, x), "r-operator": hvp.refusal(model)}
