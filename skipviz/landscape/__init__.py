"""Loss landscapes (Li et al. 2018), as notebook 04 uses them: one import for the modules that
compute them. Every function leaves the model's weights, buffers and train/eval mode as it
found them.

The reference path, readable on its own:
- `directions.py`: filter-normalized random directions, the direction to other weights;
- `surfaces.py`: 1-D and 2-D slices of the loss through the weights;
- `products.py`: Hessian-vector products; `lanczos.py`: the extreme eigenvalues of a symmetric
  operator; `curvature.py`: both together, at a point and over a plane, and the curvature of a
  plotted slice;
- `results.py`: the cache and progress bars they share (every function caches by default,
  `cache=True`; the surfaces and `curvature_map` show progress as `settings.progress_bars()` says,
  `progress=None`).

`fast/` is the optional engine (proof, one interpreter, two runners): the same numbers sooner.
`refusals(model)` says which fast paths a model gets and, where one is refused, why.
"""

from __future__ import annotations

import torch
from torch import nn

from .._validation import check_model
from ..training import check_inputs, eval_mode
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
from .fast import points, rop
from .surfaces import METHODS, Slice1D, Surface2D, surface_1d, surface_2d

__all__ = ["IGNORES", "METHODS", "NORMALIZATIONS", "CurvatureMap", "Direction", "HessianExtremes",
           "Slice1D", "Surface2D", "check_direction", "curvature_map", "direction_to",
           "hessian_extremes", "lanczos_extremes", "nonconvex_fraction", "random_direction",
           "refusals", "slice_curvature", "surface_1d", "surface_2d"]


def refusals(model: nn.Module, x: torch.Tensor | None = None) -> dict[str, str | None]:
    """{'batched': ..., 'r-operator': ...} for `model` in eval mode (as the landscapes run it), on
    inputs like x (n, ...) if given: None where `fast.graph.prove` shows the fast path exact,
    else the reason it is refused. A proven path is still checked against the reference on every
    call."""
    check_model("model", model)
    if x is not None:
        check_inputs(model, x)
    with eval_mode(model):
        return {"batched": points.refusal(model, x), "r-operator": rop.refusal(model)}
