"""Checks for notebook 04 (loss landscapes): filter normalization, power iteration."""

from __future__ import annotations

import math

import torch

from .._validation import check_choice, check_seed
from .feedback import CheckResult, as_number, call, exercise_check


@exercise_check
def check_filter_normalization(fn: object, kind: str = "filter") -> CheckResult:
    """Your fn(d, w): the direction d rescaled to the norms of w — filter by filter (along dim 0)
    for kind='filter', as one whole tensor for kind='layer' (notebook 04, exercise 1). Tested on
    Linear-shaped (8, 5) and conv-shaped (6, 3, 4) tensors."""
    kind = check_choice("kind", kind, ("filter", "layer"))
    name = "layer_normalized" if kind == "layer" else "filter_normalized"
    gen = torch.Generator().manual_seed(0)
    cases = [(torch.randn(8, 5, generator=gen), 3 * torch.rand(8, 5, generator=gen) + 0.1),
             (torch.randn(6, 3, 4, generator=gen), torch.randn(6, 3, 4, generator=gen))]

    def rows(t):
        return t.reshape(len(t), -1)

    def by_filter(d, w):
        return (rows(d) * (rows(w).norm(dim=1) / rows(d).norm(dim=1))[:, None]).reshape(d.shape)

    def by_layer(d, w):
        return d * (w.norm() / d.norm())

    expected = by_filter if kind == "filter" else by_layer
    wrong = {
        "you normalized whole tensors (Li et al.'s 'layer' normalization); each filter — a row, "
        "dim 0 — gets the norm of the same filter of w": by_layer,
        "you normalized filter by filter; the 'layer' normalization rescales the whole tensor d "
        "to the norm of the whole tensor w": by_filter,
        "you normalized along the wrong axis: a filter is a slice d[j] along dim 0 (a Linear row, "
        "a conv output channel), not a column":
            lambda d, w: (d.reshape(len(d), -1) * (rows(w).norm(dim=0) / rows(d).norm(dim=0))).reshape(d.shape),
        "your filters have norm 1: scale each to the norm of the same filter of w":
            lambda d, w: (rows(d) / rows(d).norm(dim=1, keepdim=True)).reshape(d.shape),
        "your result has norm 1: scale it to the norm of w": lambda d, w: d / d.norm(),
        "your norms run over dim 1 only: a conv filter d[j] has more than one axis, so flatten each "
        "filter (d.reshape(len(d), -1)) before taking its norm":
            lambda d, w: d * (w.norm(dim=1, keepdim=True) / d.norm(dim=1, keepdim=True)),
        "you returned w's filters, not d's: the direction keeps d's orientation and only takes w's norms":
            lambda d, w: w,
    }
    outs = []
    for d, w in cases:
        d_in = d.clone()
        out, problem = call(fn, name, d_in, w.clone())
        if problem is not None:
            return problem
        if not isinstance(out, torch.Tensor):
            return CheckResult(False, f"{name}(d, w) must return a tensor; it returned {type(out).__name__}")
        if out.shape != d.shape:
            return CheckResult(False, f"{name}(d, w) must keep d's shape {tuple(d.shape)}; it returned {tuple(out.shape)}")
        if not out.is_floating_point():
            return CheckResult(False, f"{name}(d, w) must return floating-point numbers; it returned {out.dtype}")
        out = out.detach().to(d.dtype)   # float64 is right too: compare in d's precision
        if not torch.equal(d_in, d) and not torch.allclose(out, expected(d, w), rtol=1e-4, atol=1e-6):
            return CheckResult(False, "your function changed d in place; return a new tensor and leave d as it is")
        outs.append(out)
    if all(torch.allclose(o, expected(d, w), rtol=1e-4, atol=1e-6) for o, (d, w) in zip(outs, cases)):
        what = "every filter of the result has the norm of the same filter of w" if kind == "filter" \
            else "the result has the norm of w"
        return CheckResult(True, f"correct: {what} and the direction of d, for Linear- and conv-shaped tensors.")
    for hint, f in wrong.items():
        if f is not expected and all(torch.allclose(o, f(d, w), rtol=1e-4, atol=1e-6)
                                     for o, (d, w) in zip(outs, cases)):
            return CheckResult(False, hint)
    if kind == "layer":
        return CheckResult(False, "the result is not d rescaled to the norm of w: compare out.norm() with w.norm()")
    if torch.allclose(rows(outs[0]).norm(dim=1), rows(cases[0][1]).norm(dim=1), rtol=1e-4):
        return CheckResult(False, "the filter norms are right but the directions are not: keep each "
                                  "filter of d pointing the way it did, and only rescale it")
    return CheckResult(False, "the filters of the result do not have the norms of w's filters; "
                              "compare rows(out).norm(dim=1) with rows(w).norm(dim=1)")


@exercise_check
def check_power_iteration(fn: object, seed: int = 1) -> CheckResult:
    """Your fn(matvec, n): the eigenvalue of largest magnitude of a symmetric n×n matrix H, by power
    iteration with matvec(v) = H v (notebook 04, exercise 2). Tested on three 8×8 matrices whose
    eigenvalues are known: one has its largest-magnitude eigenvalue negative, one its top two close.
    `seed` draws their eigenvectors."""
    gen = torch.Generator().manual_seed(check_seed("seed", seed))
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=torch.float64))
    spectra = [torch.tensor([6.0, 2.0, 1.5, 1.0, 0.5, 0.2, -1.0, -2.5], dtype=torch.float64),
               torch.tensor([3.0, 2.0, 1.0, 0.5, 0.0, -1.0, -2.0, -7.0], dtype=torch.float64),
               # close at the top: a few steps are not enough, as with a Hessian's crowded spectrum
               torch.tensor([5.0, 4.9, 1.0, 0.5, 0.0, -1.0, -2.0, -3.0], dtype=torch.float64)]
    got = []
    for lam in spectra:
        h = q @ torch.diag(lam) @ q.T
        # matvec takes a numpy start vector too: the exercise does not say which kind v is
        out, problem = call(fn, "largest_eigenvalue", lambda v, h=h: h @ torch.as_tensor(v).to(h.dtype), 8)
        if problem is not None:
            return problem
        if out is None:
            return CheckResult(False, "largest_eigenvalue(matvec, n) returned None: did you forget `return`?")
        value, problem = as_number(out, "largest_eigenvalue(matvec, n)")
        if problem is not None and "finite" not in problem.message:
            return CheckResult(False, problem.message.replace("must be", "must return"))
        got.append(math.inf if value is None else value)
    right = [6.0, -7.0, 5.0]
    if all(math.isclose(g, r, rel_tol=1e-3) for g, r in zip(got, right)):
        return CheckResult(True, "correct: your estimate converges to the eigenvalue of largest magnitude, "
                                 "sign included, on all three test matrices.")
    if math.isclose(got[0], 6.0, rel_tol=1e-3) and math.isclose(got[1], 7.0, rel_tol=1e-3) \
            and math.isclose(got[2], 5.0, rel_tol=1e-3):
        return CheckResult(False, "right size, wrong sign on the second matrix: |Hv| / |v| loses the sign; "
                                  "return the Rayleigh quotient v·Hv / v·v of the final vector instead")
    if math.isclose(got[0], 6.0, rel_tol=1e-3) and math.isclose(got[1], 3.0, rel_tol=1e-3) \
            and math.isclose(got[2], 5.0, rel_tol=1e-3):
        return CheckResult(False, "that is the largest eigenvalue, not the one of largest magnitude: on the "
                                  "second matrix -7 outweighs 3; power iteration finds it by itself")
    if any(not math.isfinite(g) or abs(g) > 1e6 for g in got):
        return CheckResult(False, "your estimate blows up: normalize v after every product (v = Hv / |Hv|)")
    return CheckResult(False, "your estimate has not converged to the largest-magnitude eigenvalue: "
                              "repeat v = Hv / |Hv| for a few hundred steps from a random start")
