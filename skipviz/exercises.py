"""Automatic feedback for the notebooks' exercises: each check tests a student's answer — a number,
a function or a class — on computed values or random inputs (never by reading its source), and
returns a CheckResult whose one line says that it is right or what exactly is wrong. A check
handed the unfinished stub says "not done yet"; none prints the reference answer.

Notebook 01: check_glorot_factor, check_adam_step. 02: check_block. 03: check_path_counts,
check_kendall_tau. 04: check_filter_normalization, check_power_iteration. 05:
check_mean_abs_weight (and check_glorot_factor).
"""

from __future__ import annotations

import html
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ._validation import check_choice, check_int, check_seed

relu = torch.relu
# What a two-layer block might compute, given its two Linear layers f1, f2 (applied in order).
FORMULAS: dict[str, tuple[str, Callable]] = {
    "v1": ("σ(W₂ σ(W₁x) + x)", lambda x, f1, f2: relu(f2(relu(f1(x))) + x)),
    "v2": ("σ(W₂ σ(W₁x)) + x", lambda x, f1, f2: relu(f2(relu(f1(x)))) + x),
    "preact": ("x + W₂ σ(W₁ σ(x))", lambda x, f1, f2: x + f2(relu(f1(relu(x))))),
    "linear end": ("W₂ σ(W₁x) + x", lambda x, f1, f2: f2(relu(f1(x))) + x),
    "no skip": ("σ(W₂ σ(W₁x))", lambda x, f1, f2: relu(f2(relu(f1(x))))),
    "no skip, linear end": ("W₂ σ(W₁x)", lambda x, f1, f2: f2(relu(f1(x)))),
}
HINTS = {
    "no skip": "The skip is missing: the output is the branch alone. Add the block's input x.",
    "no skip, linear end": "The skip is missing: the output is the branch alone. Add the block's input x.",
    "v1": "The ReLU comes after the addition, so the skip joins before the last nonlinearity.",
    "linear end": "There is no ReLU after the second layer.",
    "preact": "The ReLUs come before each layer (pre-activation), not after.",
    "v2": "The ReLU is applied to the branch, and the skip is added after it.",
}
BLOCK_NAMES = {"v1": "a V1 block", "v2": "a V2 block", "preact": "a pre-activation block"}


@dataclass
class CheckResult:
    """The verdict of a check: `ok`, and a message saying what is right or wrong."""

    ok: bool
    message: str

    def __bool__(self) -> bool:
        return self.ok

    def __repr__(self) -> str:
        return ("✅ " if self.ok else "❌ ") + self.message

    def _repr_html_(self) -> str:
        color = "#1e8449" if self.ok else "#b03a2e"
        mark = "✅" if self.ok else "❌"
        return f'<div style="color:{color}">{mark} {html.escape(self.message)}</div>'


def check_block(block_class: type, block: str = "v2", width: int = 16, seed: int = 0) -> CheckResult:
    """Check that `block_class(width)` is a two-layer residual block of the given kind.

    The student's two nn.Linear(width, width) layers are used in both possible orders; the
    output on a random batch (64, width) is compared with every formula in FORMULAS, so a wrong
    block is named ("the skip is missing", "the ReLU comes after the addition", ...).
    block: 'v1', 'v2' or 'preact'.
    """
    block = check_choice("block", block, ("v1", "v2", "preact"))
    width = check_int("width", width, minimum=2)
    seed = check_seed("seed", seed)
    expected_formula = FORMULAS[block][0]
    if isinstance(block_class, nn.Module):  # an instance: check it as it is
        module, label = block_class, type(block_class).__name__
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if linears and linears[0].weight.shape[0] == linears[0].weight.shape[1]:
            width = linears[0].weight.shape[0]
    elif callable(block_class):  # a class, or a function that builds the block from its width
        label = getattr(block_class, "__name__", type(block_class).__name__)
        if isinstance(block_class, type) and not issubclass(block_class, nn.Module):
            return CheckResult(False, f"{label} must be a subclass of nn.Module (class {label}(nn.Module): ...)")
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                module = block_class(width)
        except NotImplementedError:
            return CheckResult(False, f"not done yet: {label} still raises NotImplementedError")
        except Exception as err:
            return CheckResult(False, f"{label}({width}) raised {type(err).__name__}: {err}")
        if not isinstance(module, nn.Module):
            return CheckResult(False, f"{label}({width}) must give an nn.Module; it gave "
                                      f"{type(module).__name__}")
    else:
        return CheckResult(False, f"pass your block's class (e.g. check_block(MyV2Block)); got "
                                  f"{type(block_class).__name__} {block_class!r:.60}")
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    shapes = [tuple(m.weight.shape) for m in linears]
    if shapes != [(width, width)] * 2:
        return CheckResult(False, f"{BLOCK_NAMES[block]} has exactly two nn.Linear(width, width) "
                                  f"layers; {label}({width}) has weights of shapes {shapes}")
    x = torch.randn(64, width, generator=torch.Generator().manual_seed(seed + 1))
    try:
        with torch.no_grad():
            out = module(x.clone())  # a copy: `x += f(x)` in the block must not change our x
    except NotImplementedError:
        return CheckResult(False, f"not done yet: {label}.forward still raises NotImplementedError")
    except Exception as err:
        return CheckResult(False, f"calling the block on a batch of shape {tuple(x.shape)} raised "
                                  f"{type(err).__name__}: {err}")
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return CheckResult(False, f"the output has shape {got}; a residual block must return the "
                                  f"shape of its input, {tuple(x.shape)}")
    with torch.no_grad():
        for name, (formula, compute) in FORMULAS.items():
            for f1, f2 in (linears, linears[::-1]):
                if torch.allclose(out, compute(x, f1, f2), atol=1e-5, rtol=1e-4):
                    if name == block:
                        return CheckResult(True, f"correct: your block computes {formula}.")
                    return CheckResult(False, f"your block computes {formula}, but {BLOCK_NAMES[block]} "
                                              f"computes {expected_formula}. {HINTS[name]}")
        err = (out - FORMULAS[block][1](x, *linears)).abs().max().item()
    return CheckResult(False, f"the output differs from {expected_formula} by up to {err:.3g} and "
                              f"matches none of the usual mistakes; print the shapes and values step by step.")


# ---------------------------------------------------------------------------- shared machinery


def _not_done(name: str) -> CheckResult:
    return CheckResult(False, f"not done yet: {name} is still the stub (replace it with your answer)")


def _check_number(value: object, name: str, expected: float, mistakes: dict[str, float],
                  rel: float = 0.02) -> CheckResult:
    """Right within `rel`, else the named mistake it matches, else too large or too small."""
    if value is None or value is Ellipsis:
        return _not_done(name)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    try:
        if isinstance(value, (bool, str, torch.Tensor)):
            raise TypeError
        value = float(value)
    except (TypeError, ValueError):
        return CheckResult(False, f"{name} must be a number; got {type(value).__name__} {value!r:.40}")
    if not math.isfinite(value):
        return CheckResult(False, f"{name} is {value}: a finite number is expected")
    if abs(value - expected) <= rel * abs(expected):
        return CheckResult(True, f"correct: {name} = {value:.3g}.")
    for hint, wrong in mistakes.items():
        if abs(value - wrong) <= rel * abs(wrong):
            return CheckResult(False, f"{name} = {value:.3g} is not right: {hint}")
    if value == 0:
        return CheckResult(False, f"{name} is 0: that cannot be right")
    ratio = value / expected if expected else math.inf
    if ratio <= 0:
        return CheckResult(False, f"{name} = {value:.3g} has the wrong sign")
    word = "too large" if ratio > 1 else "too small"
    how = "far" if max(ratio, 1 / ratio) > 2 else "a little"
    return CheckResult(False, f"{name} = {value:.3g} is {how} {word} (and matches none of the usual "
                              "mistakes): go through the formula factor by factor")


def _call(fn: object, name: str, *args) -> tuple[object, CheckResult | None]:
    """(fn(*args), None), or (None, the CheckResult that says what went wrong)."""
    if not callable(fn):
        return None, CheckResult(False, f"pass your function {name} itself (without calling it); got "
                                        f"{type(fn).__name__} {fn!r:.40}")
    try:
        return fn(*args), None
    except NotImplementedError:
        return None, _not_done(name)
    except Exception as err:
        return None, CheckResult(False, f"calling {name} raised {type(err).__name__}: {err}")


def _call_number(fn: object, call: str, *args) -> tuple[float | None, CheckResult | None]:
    """(fn(*args) as a float, None), or (None, what went wrong); `call` names the call in messages."""
    out, problem = _call(fn, "your function", *args)
    if problem is not None:
        return None, problem
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        out = out.item()
    if isinstance(out, bool) or not isinstance(out, (int, float)):
        return None, CheckResult(False, f"{call} must return a number; it returned {type(out).__name__}")
    return float(out), None


# ---------------------------------------------------------------------------- notebook 01


def check_glorot_factor(value: object, activation: str = "sigmoid", init: str = "default") -> CheckResult:
    """Your predicted per-layer factor ρ = sqrt(n Var[w] E[f'(s)²]) for a plain net (notebook 01,
    exercise 1). activation: 'tanh', 'relu' or 'sigmoid'; init: 'default', 'xavier', 'he', 'small'."""
    from .probes import ACTIVATION_GAIN, N_VAR_W

    activation = check_choice("activation", activation, tuple(ACTIVATION_GAIN))
    init = check_choice("init", init, tuple(N_VAR_W))
    n_var, gain = N_VAR_W[init], ACTIVATION_GAIN[activation]
    rho = math.sqrt(n_var * gain)
    mistakes = {}
    if activation == "sigmoid":
        mistakes["you used f'(0) = 1/4 where its square, E[f'²] = 1/16, belongs"] = math.sqrt(n_var / 4)
    mistakes |= {
        "that is n Var[w] E[f'²] without the square root: ρ is the factor of the RMS, the square "
        "root of the variance factor": n_var * gain,
        "you left out n Var[w], the weights' share of the factor": math.sqrt(gain),
        "you left out E[f'(s)²], the activation's share": math.sqrt(n_var),
        "that is the factor after 30 layers; the question asks for one layer": rho ** 30,
    }
    return _check_number(value, "the factor", rho, mistakes)


def check_adam_step(value: object, grad: float = 1e-15, lr: float = 1e-4, eps: float = 1e-8) -> CheckResult:
    """Your size of Adam's first step, lr * g / (sqrt(g²) + eps), for the frozen weight of
    notebook 01 (exercise 4)."""
    step = lr * grad / (math.sqrt(grad ** 2) + eps)
    mistakes = {
        "that is lr itself: with ε left out, Adam's first step is lr whatever the gradient; "
        "here ε is far larger than |g|": lr,
        "that is plain gradient descent's step lr·g; Adam divides by sqrt(g²) + ε": lr * grad,
        "you divided by ε² instead of ε": lr * grad / eps ** 2,
    }
    return _check_number(value, "Adam's step", step, mistakes)


# ---------------------------------------------------------------------------- notebook 03


def check_path_counts(fn: object) -> CheckResult:
    """Your fn(n, k): the number of paths of length k (taking k branches) through n residual
    blocks (notebook 03, exercise 1). Tested for every 0 <= k <= n <= 12, and n = 54."""
    cases = [(n, k) for n in range(13) for k in range(n + 1)] + [(54, 5), (54, 27)]
    wrong: dict[str, Callable[[int, int], float]] = {
        "your counts are off by one in k: the paths of length k choose k of the n blocks, C(n, k)":
            lambda n, k: math.comb(n, k - 1) if k else 0,
        "you counted with n - 1 blocks; every one of the n blocks can be taken or skipped":
            lambda n, k: math.comb(n - 1, k) if n else 0,
        "that is the number of all 2^n paths, not of those of length k": lambda n, k: 2 ** n,
        "that is the fraction of the paths, C(n, k) / 2^n; the question asks for their number":
            lambda n, k: math.comb(n, k) / 2 ** n,
        "you counted ordered choices (n! / (n-k)!); the order of the blocks is fixed, so it is C(n, k)":
            lambda n, k: math.perm(n, k),
    }
    got = {}
    for n, k in cases:
        out, problem = _call_number(fn, f"fn({n}, {k})", n, k)
        if problem is not None:
            return problem
        got[n, k] = out
    if all(math.isclose(got[c], math.comb(*c), rel_tol=1e-9) for c in cases):
        return CheckResult(True, "correct: your counts match for every n up to 12 and for n = 54.")
    for hint, count in wrong.items():
        if all(math.isclose(got[c], count(*c), rel_tol=1e-9, abs_tol=1e-12) for c in cases):
            return CheckResult(False, hint)
    n, k = next(c for c in cases if not math.isclose(got[c], math.comb(*c), rel_tol=1e-9))
    return CheckResult(False, f"fn({n}, {k}) = {got[n, k]:g} is wrong (the first case that fails); "
                              f"count the paths of {n} blocks by hand for that k")


def check_kendall_tau(fn: object) -> CheckResult:
    """Your fn(order): Kendall's τ between a permutation `order` of 0..n-1 and the original
    order, 1 unchanged and -1 reversed (notebook 03, exercise 2). Tested on 40 permutations."""
    from .paths import kendall_tau

    rng = random.Random(0)
    orders = [list(range(5)), list(range(5))[::-1]]
    for n in (3, 6, 10, 20):
        for _ in range(10):
            order = list(range(n))
            rng.shuffle(order)
            orders.append(order)
    wrong = {
        "you return the difference of concordant and discordant pairs without dividing by the "
        "number of pairs, n(n-1)/2": lambda o: kendall_tau(o) * len(o) * (len(o) - 1) / 2,
        "the sign is flipped: an unchanged order must give +1": lambda o: -kendall_tau(o),
        "you divided by n² instead of by the number of pairs n(n-1)/2":
            lambda o: kendall_tau(o) * (len(o) - 1) / (2 * len(o)),
    }
    got = []
    for order in orders:
        out, problem = _call_number(fn, "fn(order)", list(order))
        if problem is not None:
            return problem
        got.append(out)
    if all(math.isclose(g, kendall_tau(o), abs_tol=1e-9) for g, o in zip(got, orders)):
        return CheckResult(True, "correct: your τ matches on 42 permutations, including the identity and the reversal.")
    for hint, tau in wrong.items():
        if all(math.isclose(g, tau(o), abs_tol=1e-9) for g, o in zip(got, orders)):
            return CheckResult(False, hint)
    if got[0] != 1.0:
        return CheckResult(False, f"the unchanged order 0..4 must give τ = 1; yours gives {got[0]:g}")
    return CheckResult(False, "your τ is right for the unchanged order but not for shuffled ones: count a "
                              "pair (i, j), i < j, as concordant when order[i] < order[j]")


# ---------------------------------------------------------------------------- notebook 04


def check_filter_normalization(fn: object, kind: str = "filter") -> CheckResult:
    """Your fn(d, w): the direction d rescaled to the norms of w — filter by filter (along dim 0)
    for kind='filter', as one whole tensor for kind='layer' (notebook 04, exercise 1). Tested on
    Linear-shaped (8, 5) and conv-shaped (6, 3, 4) tensors."""
    kind = check_choice("kind", kind, ("filter", "layer"))
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
        "you returned w's filters, not d's: the direction keeps d's orientation and only takes w's norms":
            lambda d, w: w,
    }
    outs = []
    for d, w in cases:
        d_in = d.clone()
        out, problem = _call(fn, "your function", d_in, w.clone())
        if problem is not None:
            return problem
        if not isinstance(out, torch.Tensor):
            return CheckResult(False, f"fn(d, w) must return a tensor; it returned {type(out).__name__}")
        if out.shape != d.shape:
            return CheckResult(False, f"fn(d, w) must keep d's shape {tuple(d.shape)}; it returned {tuple(out.shape)}")
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


def check_power_iteration(fn: object) -> CheckResult:
    """Your fn(matvec, n): the eigenvalue of largest magnitude of a symmetric n×n matrix H, by power
    iteration with matvec(v) = H v (notebook 04, exercise 2). Tested on two 8×8 matrices whose
    eigenvalues are known; one has its largest-magnitude eigenvalue negative."""
    gen = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=gen, dtype=torch.float64))
    spectra = [torch.tensor([6.0, 2.0, 1.5, 1.0, 0.5, 0.2, -1.0, -2.5], dtype=torch.float64),
               torch.tensor([3.0, 2.0, 1.0, 0.5, 0.0, -1.0, -2.0, -7.0], dtype=torch.float64)]
    got = []
    for lam in spectra:
        h = q @ torch.diag(lam) @ q.T
        out, problem = _call_number(fn, "fn(matvec, n)", lambda v, h=h: h @ v, 8)
        if problem is not None:
            return problem
        got.append(out)
    right = [6.0, -7.0]
    if all(math.isclose(g, r, rel_tol=1e-3) for g, r in zip(got, right)):
        return CheckResult(True, "correct: your estimate converges to the eigenvalue of largest magnitude, "
                                 "sign included, on both test matrices.")
    if math.isclose(got[0], 6.0, rel_tol=1e-3) and math.isclose(got[1], 7.0, rel_tol=1e-3):
        return CheckResult(False, "right size, wrong sign on the second matrix: |Hv| / |v| loses the sign; "
                                  "return the Rayleigh quotient v·Hv / v·v of the final vector instead")
    if any(not math.isfinite(g) or abs(g) > 1e6 for g in got):
        return CheckResult(False, "your estimate blows up: normalize v after every product (v = Hv / |Hv|)")
    return CheckResult(False, "your estimate has not converged to the largest-magnitude eigenvalue: "
                              "repeat v = Hv / |Hv| for a few hundred steps from a random start")


# ---------------------------------------------------------------------------- notebook 05


def check_mean_abs_weight(value: object, n: int = 64) -> CheckResult:
    """Your E|w| for He initialization, w ~ N(0, 2/n), at fan-in n (notebook 05, exercise 1: the
    value the blog's mean-|W| plot would start from with He init)."""
    n = check_int("n", n)
    std = math.sqrt(2 / n)
    mistakes = {
        "that is the standard deviation sqrt(2/n); E|w| of a zero-mean Gaussian is sqrt(2/π) times it": std,
        "that is the variance 2/n, not the mean of |w|": 2 / n,
        "that is E|w| for PyTorch's default U(-1/√n, 1/√n), 1/(2√n); He init draws from N(0, 2/n)":
            1 / (2 * math.sqrt(n)),
        "you used Var[w] = 1/n (Xavier's, for fan-in = fan-out); He init has 2/n": math.sqrt(1 / n) * math.sqrt(2 / math.pi),
    }
    return _check_number(value, "E|w|", std * math.sqrt(2 / math.pi), mistakes)
