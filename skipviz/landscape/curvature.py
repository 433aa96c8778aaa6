"""The curvature of the loss: the Hessian's extreme eigenvalues by Lanczos, at the model's weights
(`hessian_extremes`) and over a plane (`curvature_map`, Li et al.'s figure 7), and the curvature
of a plotted slice itself (`slice_curvature`). Notebook 04 derives the Hessian-vector product
and Lanczos in a few lines before it calls these.

Hessian-vector products come from `products.hessian_products` (the R-operator or autograd,
checked against the reference on every call); the eigenvalues from `lanczos.lanczos_extremes`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .._validation import check_choice, check_int, check_positive, check_seed, float_array, show
from ..data import SPLITS, Dataset
from ..errors import SkipvizTypeError, SkipvizValueError
from ..training import eval_mode
from .directions import Flat, check_direction, grid
from .lanczos import lanczos_extremes
from .products import hessian_products
from .results import cached, check_float64
from .results import progress as progress_bar
from .surfaces import Surface2D


@dataclass
class HessianExtremes:
    """The largest and smallest eigenvalues of the Hessian of the mean loss (all parameters).

    residual_max / residual_min: ||H v - lambda v|| for the unit Ritz vectors v, computed from the
    Hessian-vector products Lanczos made (0 = exact eigenpair). iterations: Lanczos iterations done.
    """

    lambda_max: float
    lambda_min: float
    residual_max: float
    residual_min: float
    iterations: int

    def _check(self) -> None:
        for name in ("lambda_max", "lambda_min", "residual_max", "residual_min"):
            if not isinstance(getattr(self, name), float):
                raise SkipvizValueError(f"{name} must be a float")
        check_int("iterations", self.iterations, minimum=2)

    @property
    def ratio(self) -> float:
        """|lambda_min / lambda_max|: near 0 where the surface is locally convex."""
        return abs(self.lambda_min / self.lambda_max)


def hessian_extremes(model: nn.Module, dataset: Dataset, iterations: int = 40, split: str = "train",
                     tol: float | None = None, batch_size: int | None = None, seed: int = 0,
                     cache: bool = True) -> HessianExtremes:
    """lambda_max and lambda_min of the Hessian of the mean loss over a split, with respect to all
    parameters, at the model's weights: up to `iterations` Lanczos iterations on Hessian-vector
    products, fully reorthogonalized, from a random start fixed by `seed`. With `tol`, Lanczos
    stops once both residual bounds are below tol times the largest |eigenvalue| found (see
    `lanczos_extremes`); `iterations` in the result says how many iterations ran.
    batch_size splits the data to bound memory without changing the result (each product then
    recomputes the gradient piece by piece). cache=True stores the result in the cache folder.
    """
    check_int("iterations", iterations, minimum=2)
    check_choice("split", split, SPLITS)
    seed = check_seed("seed", seed)
    if tol is not None:
        check_positive("tol", tol)
    if batch_size is not None:
        check_int("batch_size", batch_size)

    def compute() -> HessianExtremes:
        with eval_mode(model):
            weights = Flat(model).vector.unsqueeze(0)
            matvec = hessian_products(model, dataset, split, batch_size, weights)
            try:
                lmax, lmin, rmax, rmin, done = lanczos_extremes(matvec, weights.shape[1], iterations,
                                                                seed=seed, tol=tol)
            except torch.linalg.LinAlgError:
                raise SkipvizValueError(f"model's Hessian on dataset {dataset.name!r} is not finite at "
                                        "its weights: Lanczos cannot run") from None
        return HessianExtremes(float(lmax[0]), float(lmin[0]), float(rmax[0]), float(rmin[0]),
                               int(done[0]))

    settings = dict(iterations=iterations, split=split, batch_size=batch_size, seed=seed)
    if tol is not None:  # leaves the keys of results cached without tol unchanged
        settings["tol"] = tol
    return cached(cache, "hessian_extremes", model, dataset, settings, [], HessianExtremes,
                   compute)


@dataclass
class CurvatureMap:
    """Hessian extremes over a plane: lambda_max[i, j] and lambda_min[i, j] at
    weights + alphas[i] * dir_x + betas[j] * dir_y; all (points, points) float64 tensors except the
    (points,) coordinates. residual_max / residual_min as in HessianExtremes. lanczos_iterations: the
    iterations asked for (at most the number of parameters); iterations_done (points, points) int64:
    the iterations each point really ran (fewer where its Krylov space closed)."""

    alphas: torch.Tensor
    betas: torch.Tensor
    lambda_max: torch.Tensor
    lambda_min: torch.Tensor
    residual_max: torch.Tensor
    residual_min: torch.Tensor
    lanczos_iterations: int
    iterations_done: torch.Tensor

    def _check(self) -> None:
        check_float64("alphas", self.alphas)
        check_float64("betas", self.betas)
        shape = (len(self.alphas), len(self.betas))
        for name in ("lambda_max", "lambda_min", "residual_max", "residual_min"):
            check_float64(name, getattr(self, name), shape)
        check_int("lanczos_iterations", self.lanczos_iterations, minimum=2)
        taken = self.iterations_done
        if not (isinstance(taken, torch.Tensor) and taken.dtype == torch.int64 and tuple(taken.shape) == shape
                and bool(((taken >= 1) & (taken <= self.lanczos_iterations)).all())):
            raise SkipvizValueError(f"iterations_done must be an int64 tensor of shape {shape} in 1..lanczos_iterations")

    @property
    def ratio(self) -> torch.Tensor:
        """|lambda_min / lambda_max| at every grid point (Li et al.'s figure 7)."""
        return (self.lambda_min / self.lambda_max).abs()


def curvature_map(model: nn.Module, dataset: Dataset, dir_x: Sequence[torch.Tensor],
                  dir_y: Sequence[torch.Tensor], points: int = 7, span: float = 1.0,
                  lanczos_iterations: int = 30, split: str = "train", chunk_size: int = 8,
                  batch_size: int | None = None, seed: int = 0, cache: bool = True,
                  progress: bool | None = None) -> CurvatureMap:
    """lambda_max and lambda_min of the Hessian of the mean loss at every point of a points x points
    grid on the plane of `surface_2d` (same coordinates for the same points and span).

    The grid points of a chunk run Lanczos in lockstep: one point-batched gradient graph for the
    chunk (`fast.points`, where the model's layers allow), built once and reused by every
    Hessian-vector product, and one batched reorthogonalization and tridiagonal eigensolve.
    Memory grows with chunk_size times the graph of one pass over the split; batch_size bounds
    it as in `hessian_extremes`. cache=True
    stores the result in the cache folder.
    """
    check_direction(model, dir_x, "dir_x")
    check_direction(model, dir_y, "dir_y")
    check_int("lanczos_iterations", lanczos_iterations, minimum=2)
    check_choice("split", split, SPLITS)
    check_int("chunk_size", chunk_size)
    seed = check_seed("seed", seed)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    coords = grid(points, span)

    def compute() -> CurvatureMap:
        plane = torch.cartesian_prod(coords, coords)
        results = []
        with eval_mode(model), progress_bar(len(plane), progress, "curvature map") as bar:
            flat = Flat(model)
            basis = torch.stack([flat.flatten(dir_x), flat.flatten(dir_y)])
            reference = None  # whether the first chunk's check chose the reference products
            for start in range(0, len(plane), chunk_size):
                weights = flat.vector + plane[start:start + chunk_size].to(flat.vector.dtype) @ basis
                # Checked once per map: the chunks differ only in their weights.
                matvec = hessian_products(model, dataset, split, batch_size, weights, check=reference is None,
                                          reference=bool(reference))
                if reference is None:
                    reference = matvec.kind == "reference"
                try:
                    results.append(lanczos_extremes(matvec, weights.shape[1], lanczos_iterations,
                                                    batch=len(weights), seed=seed))
                except torch.linalg.LinAlgError:
                    raise SkipvizValueError(f"the Hessian is not finite at some points up to span={span:g}: "
                                            "Lanczos cannot run there; use a smaller span") from None
                del matvec  # frees this chunk's values and graph before the next is built
                if bar is not None:
                    bar(len(weights))
        lmax, lmin, rmax, rmin, taken = (torch.cat(r).view(points, points) for r in zip(*results))
        return CurvatureMap(coords, coords.clone(), lmax, lmin, rmax, rmin,
                            min(lanczos_iterations, len(flat.vector)), taken)

    settings = dict(points=points, span=float(span), lanczos_iterations=lanczos_iterations, split=split,
                    chunk_size=chunk_size, batch_size=batch_size, seed=seed)
    return cached(cache, "curvature_map", model, dataset, settings, [dir_x, dir_y], CurvatureMap,
                   compute)


def slice_curvature(surface: Surface2D) -> tuple[torch.Tensor, torch.Tensor]:
    """The curvature of the plotted slice itself: eigenvalues (largest, smallest) of the 2 x 2
    finite-difference Hessian of losses[i, j] at every interior grid point, in loss units per
    squared coordinate step. Returns two (points - 2, points - 2) float64 tensors.

    A negative smallest eigenvalue proves the full loss is non-convex there (the slice is a
    restriction of it); a slice that looks convex proves nothing about the other directions.
    """
    if not isinstance(surface, Surface2D):
        raise SkipvizTypeError(f"surface must be a Surface2D (what surface_2d returns); got {show(surface)}")
    if len(surface.alphas) < 3 or len(surface.betas) < 3:
        raise SkipvizValueError(f"surface must have at least 3 points a side for a second difference; "
                                f"got {len(surface.alphas)} x {len(surface.betas)}")
    f = surface.losses
    ha = (surface.alphas[1] - surface.alphas[0]).item()
    hb = (surface.betas[1] - surface.betas[0]).item()
    faa = (f[2:, 1:-1] - 2 * f[1:-1, 1:-1] + f[:-2, 1:-1]) / ha ** 2
    fbb = (f[1:-1, 2:] - 2 * f[1:-1, 1:-1] + f[1:-1, :-2]) / hb ** 2
    fab = (f[2:, 2:] - f[2:, :-2] - f[:-2, 2:] + f[:-2, :-2]) / (4 * ha * hb)
    mean, gap = (faa + fbb) / 2, torch.sqrt(((faa - fbb) / 2) ** 2 + fab ** 2)
    return mean + gap, mean - gap


def nonconvex_fraction(lambda_max: torch.Tensor, lambda_min: torch.Tensor,
                       threshold: float = 0.1) -> float:
    """The share of points whose negative curvature is not negligible: lambda_min < 0 and
    |lambda_min / lambda_max| > threshold (Li et al. colour |lambda_min / lambda_max| in figure 7).
    Takes the maps of `curvature_map` or `slice_curvature`; returns a number in 0..1."""
    threshold = check_positive("threshold", threshold)
    lambda_max, lambda_min = _map("lambda_max", lambda_max), _map("lambda_min", lambda_min)
    if lambda_max.shape != lambda_min.shape or lambda_max.numel() == 0:
        raise SkipvizValueError(f"lambda_max and lambda_min must be maps of the same, non-empty shape; got "
                                f"{tuple(lambda_max.shape)} and {tuple(lambda_min.shape)}")
    bad = (lambda_min < 0) & (lambda_min.abs() > threshold * lambda_max.abs())
    return bad.double().mean().item()


def _map(name: str, values: object) -> torch.Tensor:
    """values (a tensor, array or nested list of numbers) as a finite float64 tensor."""
    array = float_array(values)
    t = None if array is None else torch.as_tensor(array)
    if t is None or not torch.isfinite(t).all():
        raise SkipvizValueError(f"{name} must be a map of finite numbers (a tensor, array or nested list); "
                                f"got {show(values)}")
    return t
