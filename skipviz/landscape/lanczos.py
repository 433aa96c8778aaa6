"""Lanczos with full reorthogonalization for the extreme eigenvalues of many symmetric operators
at once (notebook 04 writes the algorithm out in a dozen lines before it calls this).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._validation import check_int, check_positive, check_seed, show
from ..errors import SkipvizTypeError, SkipvizValueError


def lanczos_extremes(matvec: Callable[[torch.Tensor], torch.Tensor], n: int, iterations: int,
                     batch: int = 1, seed: int = 0, tol: float | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Largest and smallest eigenvalues of `batch` symmetric n x n operators at once, by Lanczos
    with full reorthogonalization.

    matvec maps (batch, n) -> (batch, n). At most `iterations` iterations per operator. An operator
    whose Krylov space closes (an invariant subspace: its Ritz values are then exact) stops there,
    and with `tol` one stops once both of its Ritz pairs have residual bounds below
    tol * max |Ritz value| (the bound beta_j |s_j| of Lanczos's relation A Q = Q T + beta_j q e_j',
    which full reorthogonalization keeps accurate); the others go on, and the products of a
    finished operator's row are ignored from then on. Returns (lambda_max, lambda_min,
    residual_max, residual_min, iterations): the first four (batch,) float64, the residuals
    ||A v - lambda v|| of the unit Ritz vectors v = Q s, computed as (A Q) s from the stored
    products (A is linear), so no extra matvec is needed; iterations (batch,) int64, each
    operator's own count.

    Written out in notebook 04, §5 (`lanczos`), and checked against this.
    """
    if not callable(matvec) or isinstance(matvec, type):
        raise SkipvizTypeError(f"matvec must be a function (batch, n) -> (batch, n); got {show(matvec)}")
    n = check_int("n", n, maximum=10 ** 8)
    iterations = check_int("iterations", iterations, minimum=2, maximum=10_000)
    batch = check_int("batch", batch, maximum=10_000)
    seed = check_seed("seed", seed)
    if tol is not None:
        tol = check_positive("tol", tol)
    if batch * min(iterations, n) * n > 2 * 10 ** 9:
        raise SkipvizValueError(f"batch x iterations x n = {batch * min(iterations, n) * n:.2g} float64 entries would "
                                "not fit in memory; use fewer iterations or a smaller batch")
    matvec = _checked_matvec(matvec, batch, n)
    iterations = min(iterations, n)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, generator=gen, dtype=torch.float64).expand(batch, n).clone()
    q /= q.norm(dim=1, keepdim=True)
    # Only rows already written are ever read: no need to zero megabytes first.
    basis = torch.empty(batch, iterations, n, dtype=torch.float64)
    products = torch.empty(batch, iterations, n, dtype=torch.float64)  # A q_j, kept for the residuals
    alphas = torch.zeros(batch, iterations, dtype=torch.float64)
    betas = torch.zeros(batch, iterations, dtype=torch.float64)
    done = torch.full((batch,), iterations, dtype=torch.int64)
    running = torch.ones(batch, dtype=torch.bool)
    for j in range(iterations):
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
        if j == iterations - 1:
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
    """(batch,) whether each operator's extreme Ritz pairs after m iterations (alphas (batch, m), betas
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
