"""The curvature of the loss: the Hessian's extreme eigenvalues by Lanczos, at the model's weights
(`hessian_extremes`) and over a plane (`curvature_map`, Li et al.'s figure 7), and the curvature
of a plotted slice itself (`slice_curvature`). Notebook 04 derives the Hessian-vector product
and Lanczos in a few lines before it calls these.

Hessian-vector products come from the R-operator (`skipviz.hvp`) for the MLPs it handles, else
from autograd (through `skipviz.batched` for several points, where the model is proven for it,
else `functional_call`); a fast product is compared with the reference autograd product on a
probe before it is trusted for a model signature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from . import batched, graph, hvp
from ._results import cached, check_float64
from ._results import progress as progress_bar
from ._validation import check_choice, check_int, check_positive, check_seed, float_array, show
from .data import SPLITS, Dataset
from .directions import Flat, check_direction, grid
from .errors import SkipvizTypeError, SkipvizValueError
from .surfaces import Surface2D
from .training import eval_mode, loss_for_targets


@dataclass
class HessianExtremes:
    """The largest and smallest eigenvalues of the Hessian of the mean loss (all parameters).

    residual_max / residual_min: ||H v - lambda v|| for the unit Ritz vectors v, computed from the
    Hessian-vector products Lanczos made (0 = exact eigenpair). steps: Lanczos iterations done.
    """

    lambda_max: float
    lambda_min: float
    residual_max: float
    residual_min: float
    steps: int

    def _check(self) -> None:
        for name in ("lambda_max", "lambda_min", "residual_max", "residual_min"):
            if not isinstance(getattr(self, name), float):
                raise SkipvizValueError(f"{name} must be a float")
        check_int("steps", self.steps, minimum=2)

    @property
    def ratio(self) -> float:
        """|lambda_min / lambda_max|: near 0 where the surface is locally convex."""
        return abs(self.lambda_min / self.lambda_max)


# Per (model signature, data, settings): whether the fast Hessian-vector products agreed with
# the reference on a probe (see `_hessian_operator`).
_HVP_TRUSTED: dict[tuple, bool] = {}


def _hessian_operator(model: nn.Module, dataset: Dataset, split: str, batch_size: int | None,
                      weights: torch.Tensor, autograd: bool = False
                      ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The Hessian-vector products of `_products`, checked before they are trusted: the first
    time a model signature, data shape and setting meet, the fast products (the R-operator or
    the point-batched pass) are compared on a random probe with the reference (autograd through
    `functional_call`, one point at a time) on up to two points; if they disagree the reference
    is used, for this call and every later one of that kind."""
    try:
        fast = _products(model, dataset, split, batch_size, weights, autograd)
    except Exception:  # a model the fast products cannot take (tied weights, an odd layer, ...)
        return _products(model, dataset, split, batch_size, weights, True, reference=True)
    if fast.kind == "reference":
        return fast
    n = weights.shape[1]
    key = (fast.kind, graph.signature(model), tuple(tuple(p.shape) for p in model.parameters()),
           tuple(dataset.split(split)[0].shape), split, batch_size, len(weights) > 1)
    if key not in _HVP_TRUSTED:
        rows = min(2, len(weights))
        probe = torch.randn(len(weights), n, generator=torch.Generator().manual_seed(0), dtype=weights.dtype)
        reference = _products(model, dataset, split, batch_size, weights[:rows], True, reference=True)
        want = reference(probe[:rows])
        try:
            got = fast(probe)[:rows]
            _HVP_TRUSTED[key] = bool((got - want).norm() <= 1e-4 * want.norm() + 1e-10)
        except Exception:
            _HVP_TRUSTED[key] = False
    return fast if _HVP_TRUSTED[key] else _products(model, dataset, split, batch_size, weights, True,
                                                    reference=True)


def _products(model: nn.Module, dataset: Dataset, split: str, batch_size: int | None,
              weights: torch.Tensor, autograd: bool = False, reference: bool = False
              ) -> Callable[[torch.Tensor], torch.Tensor]:
    """matvec(v (P, n)) -> (P, n), whose row p is H(weights[p]) v[p]: the Hessian of the mean loss
    over the split, taken at that row's weights (weights (P, n), flat like `_Flat.vector`).

    For an MLP (Linear, batch norm, activations, additions) without `batch_size`, the products
    are Pearlmutter's R-operator written out layer by layer (`skipviz.hvp`). Otherwise, or with
    autograd=True (for comparisons), reverse over reverse: the gradient g(w) is built once,
    with its graph, and each product is one more backward pass through it (the gradient of
    g . v), so a Lanczos run pays for the forward pass and the first backward pass only once.
    With `batch_size`, the split is processed in pieces and the graph rebuilt piece by piece for
    every product (memory bounded by one piece); each piece's product is weighted by its share
    of the data, so the result is the mean's Hessian, not a sum over pieces. Several rows run
    together in one point-batched pass (`skipviz.batched`) when the model's layers allow it; a
    single row, or a model they do not allow, through `functional_call`.
    """
    x, y = dataset.split(split)
    flat = Flat(model)
    n = len(x)
    if batch_size is None and not autograd:
        # An MLP's products written out by the R-operator (`skipviz.hvp`): fewer operations
        # than autograd's second backward pass, about twice as fast.
        rop = hvp.hessian_operator(model, flat.unflatten(weights), flat.buffers, x, y)
        if rop is not None:
            return _Products(rop, "r-operator")
    pieces = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)] \
        if batch_size else [(x, y)]
    # Several points run through one point-batched pass. A single point runs through the
    # model's own layers: the batched pass folds batch norms into the layers before them, and
    # in float32 a ReLU input within rounding of zero can then fall on the other side.
    evaluator = batched.evaluator_for(model, x) if len(weights) > 1 and not reference else None
    leaves = [w.detach().clone().requires_grad_(True)
              for w in (weights.split(len(weights)) if evaluator else weights.split(1))]

    def gradient(w: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Each row's gradient of its mean loss on (xb, yb), (rows, n), with its graph."""
        with torch.enable_grad():
            if evaluator is not None:
                out = evaluator(flat.unflatten(w), flat.buffers, xb)
            else:
                out = functional_call(model, (flat.unflatten(w[0]), flat.buffers), (xb,)).unsqueeze(0)
            # The rows' losses are independent, so the gradient of their sum holds each row's own.
            total = loss_for_targets(out, yb, points=True).sum() * (len(xb) / n)
            return torch.autograd.grad(total, w, create_graph=True)[0]

    def product(g: torch.Tensor, w: torch.Tensor, v: torch.Tensor, keep: bool) -> torch.Tensor:
        with torch.enable_grad():
            return torch.autograd.grad(g, w, grad_outputs=v, retain_graph=keep)[0]

    if batch_size is None:
        grads = [gradient(w, x, y) for w in leaves]

        def matvec(v: torch.Tensor) -> torch.Tensor:
            rows = v.to(weights.dtype).split([len(w) for w in leaves])
            return torch.cat([product(g, w, r, True) for g, w, r in zip(grads, leaves, rows)])
    else:
        def matvec(v: torch.Tensor) -> torch.Tensor:
            rows = v.to(weights.dtype).split([len(w) for w in leaves])
            return torch.cat([sum(product(gradient(w, xb, yb), w, r, False) for xb, yb in pieces)
                              for w, r in zip(leaves, rows)])

    return _Products(matvec, "batched" if evaluator is not None else "reference")


@dataclass
class _Products:
    """A Hessian-vector product function and how it computes: 'r-operator' (`skipviz.hvp`),
    'batched' (autograd through `skipviz.batched`) or 'reference' (autograd, functional_call)."""

    matvec: Callable[[torch.Tensor], torch.Tensor]
    kind: str

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.matvec(v)


def lanczos_extremes(matvec: Callable[[torch.Tensor], torch.Tensor], n: int, steps: int,
                     batch: int = 1, seed: int = 0, tol: float | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Largest and smallest eigenvalues of `batch` symmetric n x n operators at once, by Lanczos
    with full reorthogonalization.

    matvec maps (batch, n) -> (batch, n). At most `steps` iterations per operator. An operator
    whose Krylov space closes (an invariant subspace: its Ritz values are then exact) stops there,
    and with `tol` one stops once both of its Ritz pairs have residual bounds below
    tol * max |Ritz value| (the bound beta_j |s_j| of Lanczos's relation A Q = Q T + beta_j q e_j',
    which full reorthogonalization keeps accurate); the others go on, and the products of a
    finished operator's row are ignored from then on. Returns (lambda_max, lambda_min,
    residual_max, residual_min, iterations): the first four (batch,) float64, the residuals
    ||A v - lambda v|| of the unit Ritz vectors v = Q s, computed as (A Q) s from the stored
    products (A is linear), so no extra matvec is needed; iterations (batch,) int64, each
    operator's own count.
    """
    if not callable(matvec) or isinstance(matvec, type):
        raise SkipvizTypeError(f"matvec must be a function (batch, n) -> (batch, n); got {show(matvec)}")
    n = check_int("n", n, maximum=10 ** 8)
    steps = check_int("steps", steps, minimum=2, maximum=10_000)
    batch = check_int("batch", batch, maximum=10_000)
    seed = check_seed("seed", seed)
    if tol is not None:
        tol = check_positive("tol", tol)
    if batch * min(steps, n) * n > 2 * 10 ** 9:
        raise SkipvizValueError(f"batch x steps x n = {batch * min(steps, n) * n:.2g} float64 entries would "
                                "not fit in memory; use fewer steps or a smaller batch")
    matvec = _checked_matvec(matvec, batch, n)
    steps = min(steps, n)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, generator=gen, dtype=torch.float64).expand(batch, n).clone()
    q /= q.norm(dim=1, keepdim=True)
    # Only rows already written are ever read: no need to zero megabytes first.
    basis = torch.empty(batch, steps, n, dtype=torch.float64)
    products = torch.empty(batch, steps, n, dtype=torch.float64)  # A q_j, kept for the residuals
    alphas = torch.zeros(batch, steps, dtype=torch.float64)
    betas = torch.zeros(batch, steps, dtype=torch.float64)
    done = torch.full((batch,), steps, dtype=torch.int64)
    running = torch.ones(batch, dtype=torch.bool)
    for j in range(steps):
        basis[:, j] = q
        w = matvec(q).double()
        products[:, j] = w
        alphas[:, j] = (w * q).sum(1)
        # Full reorthogonalization instead of the three-term recurrence alone: in floating point
        # the Lanczos vectors lose orthogonality and ghost eigenvalues appear. A second pass when
        # the first removed most of w (the DGKS test; "twice is enough").
        before = w.norm(dim=1)
        done_basis = basis[:, :j + 1]
        for _ in range(2):
            coefficients = torch.bmm(done_basis, w.unsqueeze(2))  # (batch, j + 1, 1)
            w.unsqueeze(1).baddbmm_(coefficients.transpose(1, 2), done_basis, alpha=-1)
            after = w.norm(dim=1)
            if bool((after > 0.7071 * before).all()):
                break
            before = after
        betas[:, j] = w.norm(dim=1)
        if j == steps - 1:
            break
        closed = betas[:, j] <= 1e-12 * alphas[:, : j + 1].abs().amax(1).clamp_min(1e-30)
        if tol is not None and j >= 1:
            closed |= _converged(alphas[:, : j + 1], betas[:, : j + 1], tol)
        stopping = running & closed
        done[stopping] = j + 1
        running &= ~closed
        if not bool(running.any()):
            break
        # A finished row is fed its last vector again: harmless, and never read back.
        q = torch.where(running.unsqueeze(1), w / betas[:, j : j + 1].clamp_min(1e-300), q)
    lmax, lmin, rmax, rmin = (torch.empty(batch, dtype=torch.float64) for _ in range(4))
    for m in done.unique().tolist():
        rows = (done == m).nonzero().squeeze(1)
        values, vectors = torch.linalg.eigh(_tridiagonal(alphas[rows, :m], betas[rows, : m - 1]))
        for k, lam_out, res_out in ((-1, lmax, rmax), (0, lmin, rmin)):  # the largest, the smallest
            lam, s = values[:, k], vectors[:, :, k]
            ritz = torch.einsum("bk,bkn->bn", s, basis[rows, :m])
            # A is linear, so A (Q s) = (A Q) s from the products already made: the true residual
            # of the Ritz pair, without another product.
            image = torch.einsum("bk,bkn->bn", s, products[rows, :m])
            lam_out[rows] = lam
            res_out[rows] = (image - lam.unsqueeze(1) * ritz).norm(dim=1)
    return lmax, lmin, rmax, rmin, done


def _tridiagonal(alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """(batch, m) diagonals and (batch, m - 1) off-diagonals -> (batch, m, m) matrices."""
    return torch.diag_embed(alphas) + torch.diag_embed(betas, 1) + torch.diag_embed(betas, -1)


def _converged(alphas: torch.Tensor, betas: torch.Tensor, tol: float) -> torch.Tensor:
    """(batch,) whether each operator's extreme Ritz pairs after m steps (alphas (batch, m), betas
    (batch, m), the last one the coupling to the next vector) have residual bounds below
    tol * max |Ritz value|."""
    values, vectors = torch.linalg.eigh(_tridiagonal(alphas, betas[:, :-1]))
    scale = values.abs().amax(1)
    bounds = betas[:, -1:] * vectors[:, -1, [0, -1]].abs()  # (batch, 2): smallest and largest
    return (bounds <= tol * scale.unsqueeze(1)).all(1)


def _checked_matvec(matvec: Callable, batch: int, n: int) -> Callable:
    """matvec, with its first answer checked: a float CPU tensor (batch, n)."""
    checked = False

    def call(v: torch.Tensor) -> torch.Tensor:
        nonlocal checked
        try:
            out = matvec(v)
        except Exception as err:
            raise SkipvizValueError(f"matvec raised {type(err).__name__}: {err}") from err
        if not checked:
            if not isinstance(out, torch.Tensor) or tuple(out.shape) != (batch, n) \
                    or not out.is_floating_point() or out.device.type != "cpu":
                raise SkipvizValueError(f"matvec must return a float CPU tensor of shape ({batch}, {n}) for "
                                        f"an input of that shape; it returned {show(out)}")
            checked = True
        return out.to(torch.float64)

    return call


def hessian_extremes(model: nn.Module, dataset: Dataset, steps: int = 40, split: str = "train",
                     tol: float | None = None, batch_size: int | None = None, seed: int = 0,
                     cache: bool = False) -> HessianExtremes:
    """lambda_max and lambda_min of the Hessian of the mean loss over a split, with respect to all
    parameters, at the model's weights: up to `steps` Lanczos iterations on Hessian-vector
    products, fully reorthogonalized, from a random start fixed by `seed`. With `tol`, Lanczos
    stops once both residual bounds are below tol times the largest |eigenvalue| found (see
    `lanczos_extremes`); `steps` in the result says how many iterations ran.
    batch_size splits the data to bound memory without changing the result (each product then
    recomputes the gradient piece by piece). cache=True stores the result in the cache folder.
    """
    check_int("steps", steps, minimum=2)
    check_choice("split", split, SPLITS)
    seed = check_seed("seed", seed)
    if tol is not None:
        check_positive("tol", tol)
    if batch_size is not None:
        check_int("batch_size", batch_size)

    def compute() -> HessianExtremes:
        with eval_mode(model):
            weights = Flat(model).vector.unsqueeze(0)
            matvec = _hessian_operator(model, dataset, split, batch_size, weights)
            try:
                lmax, lmin, rmax, rmin, done = lanczos_extremes(matvec, weights.shape[1], steps,
                                                                seed=seed, tol=tol)
            except torch.linalg.LinAlgError:
                raise SkipvizValueError(f"model's Hessian on dataset {dataset.name!r} is not finite at "
                                        "its weights: Lanczos cannot run") from None
        return HessianExtremes(float(lmax[0]), float(lmin[0]), float(rmax[0]), float(rmin[0]),
                               int(done[0]))

    settings = dict(steps=steps, split=split, batch_size=batch_size, seed=seed)
    if tol is not None:  # leaves the keys of results cached without tol unchanged
        settings["tol"] = tol
    return cached(cache, "hessian_extremes", model, dataset, settings, [], HessianExtremes,
                   compute)


@dataclass
class CurvatureMap:
    """Hessian extremes over a plane: lambda_max[i, j] and lambda_min[i, j] at
    weights + alphas[i] * dir_x + betas[j] * dir_y; all (steps, steps) float64 tensors except the
    (steps,) coordinates. residual_max / residual_min as in HessianExtremes. lanczos_steps: the
    iterations asked for (at most the number of parameters); steps_taken (steps, steps) int64:
    the iterations each point really ran (fewer where its Krylov space closed)."""

    alphas: torch.Tensor
    betas: torch.Tensor
    lambda_max: torch.Tensor
    lambda_min: torch.Tensor
    residual_max: torch.Tensor
    residual_min: torch.Tensor
    lanczos_steps: int
    steps_taken: torch.Tensor

    def _check(self) -> None:
        check_float64("alphas", self.alphas)
        check_float64("betas", self.betas)
        shape = (len(self.alphas), len(self.betas))
        for name in ("lambda_max", "lambda_min", "residual_max", "residual_min"):
            check_float64(name, getattr(self, name), shape)
        check_int("lanczos_steps", self.lanczos_steps, minimum=2)
        taken = self.steps_taken
        if not (isinstance(taken, torch.Tensor) and taken.dtype == torch.int64 and tuple(taken.shape) == shape
                and bool(((taken >= 1) & (taken <= self.lanczos_steps)).all())):
            raise SkipvizValueError(f"steps_taken must be an int64 tensor of shape {shape} in 1..lanczos_steps")

    @property
    def ratio(self) -> torch.Tensor:
        """|lambda_min / lambda_max| at every grid point (Li et al.'s figure 7)."""
        return (self.lambda_min / self.lambda_max).abs()


def curvature_map(model: nn.Module, dataset: Dataset, dir_x: Sequence[torch.Tensor],
                  dir_y: Sequence[torch.Tensor], steps: int = 7, span: float = 1.0,
                  lanczos_steps: int = 30, split: str = "train", chunk_size: int = 8,
                  batch_size: int | None = None, seed: int = 0, cache: bool = False,
                  progress: bool | None = False) -> CurvatureMap:
    """lambda_max and lambda_min of the Hessian of the mean loss at every point of a steps x steps
    grid on the plane of `surface_2d` (same coordinates for the same steps and span).

    The grid points of a chunk run Lanczos in lockstep: one point-batched gradient graph for the
    chunk (`skipviz.batched`, where the model's layers allow), built once and reused by every
    Hessian-vector product, and one batched reorthogonalization and tridiagonal eigensolve.
    Memory grows with chunk_size times the graph of one pass over the split; batch_size bounds
    it as in `hessian_extremes`. cache=True
    stores the result in the cache folder.
    """
    check_direction(model, dir_x, "dir_x")
    check_direction(model, dir_y, "dir_y")
    check_int("lanczos_steps", lanczos_steps, minimum=2)
    check_choice("split", split, SPLITS)
    check_int("chunk_size", chunk_size)
    seed = check_seed("seed", seed)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    coords = grid(steps, span)

    def compute() -> CurvatureMap:
        points = torch.cartesian_prod(coords, coords)
        results = []
        with eval_mode(model), progress_bar(len(points), progress, "curvature map") as bar:
            flat = Flat(model)
            basis = torch.stack([flat.flatten(dir_x), flat.flatten(dir_y)])
            for start in range(0, len(points), chunk_size):
                weights = flat.vector + points[start:start + chunk_size].to(flat.vector.dtype) @ basis
                matvec = _hessian_operator(model, dataset, split, batch_size, weights)
                try:
                    results.append(lanczos_extremes(matvec, weights.shape[1], lanczos_steps,
                                                    batch=len(weights), seed=seed))
                except torch.linalg.LinAlgError:
                    raise SkipvizValueError(f"the Hessian is not finite at some points up to span={span:g}: "
                                            "Lanczos cannot run there; use a smaller span") from None
                del matvec  # frees this chunk's values and graph before the next is built
                if bar is not None:
                    bar(len(weights))
        lmax, lmin, rmax, rmin, taken = (torch.cat(r).view(steps, steps) for r in zip(*results))
        return CurvatureMap(coords, coords.clone(), lmax, lmin, rmax, rmin,
                            min(lanczos_steps, len(flat.vector)), taken)

    settings = dict(steps=steps, span=float(span), lanczos_steps=lanczos_steps, split=split,
                    chunk_size=chunk_size, batch_size=batch_size, seed=seed)
    return cached(cache, "curvature_map", model, dataset, settings, [dir_x, dir_y], CurvatureMap,
                   compute)


def slice_curvature(surface: Surface2D) -> tuple[torch.Tensor, torch.Tensor]:
    """The curvature of the plotted slice itself: eigenvalues (largest, smallest) of the 2 x 2
    finite-difference Hessian of losses[i, j] at every interior grid point, in loss units per
    squared coordinate step. Returns two (steps - 2, steps - 2) float64 tensors.

    A negative smallest eigenvalue proves the full loss is non-convex there (the slice is a
    restriction of it); a slice that looks convex proves nothing about the other directions.
    """
    if not isinstance(surface, Surface2D):
        raise SkipvizTypeError(f"surface must be a Surface2D (what surface_2d returns); got {show(surface)}")
    if len(surface.alphas) < 3 or len(surface.betas) < 3:
        raise SkipvizValueError(f"surface must have at least 3 steps a side for a second difference; "
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
