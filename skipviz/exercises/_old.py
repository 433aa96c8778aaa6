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


# ---------------------------------------------------------------------------- notebook 06


def check_scaled_perturbation(fn: object, seed: int = 0) -> CheckResult:
    """Your scaled_perturbation(x_in, x_out) -> (batch,) per-example |x_out - x_in| / |x_in|,
    on hidden states of shape (batch, channels, length) (notebook 06, exercise 1)."""
    seed = check_seed("seed", seed)
    g = torch.Generator().manual_seed(seed)
    x_in = torch.randn(6, 4, 10, generator=g) * torch.arange(1.0, 7.0).view(6, 1, 1)
    x_out = x_in + 0.3 * torch.randn(6, 4, 10, generator=g)
    out, problem = _call(fn, "scaled_perturbation", x_in.clone(), x_out.clone())
    if problem is not None:
        return problem
    if not isinstance(out, torch.Tensor):
        return CheckResult(False, f"scaled_perturbation must return a tensor; it returned {type(out).__name__}")
    flat_in, flat_out = x_in.flatten(1), x_out.flatten(1)
    right = (flat_out - flat_in).norm(dim=1) / flat_in.norm(dim=1)
    if out.shape != right.shape:
        if out.numel() == 1 and math.isclose(out.item(), ((flat_out - flat_in).norm() / flat_in.norm()).item(), rel_tol=1e-4):
            return CheckResult(False, "you took one ratio for the whole batch; Hauser's measure is one "
                                      "ratio per example (norms over dim 1 after flatten(1)), shape (batch,)")
        return CheckResult(False, f"the result has shape {tuple(out.shape)}; one value per example, "
                                  f"shape {tuple(right.shape)}, is expected")
    out = out.detach().double()
    if torch.allclose(out, right.double(), rtol=1e-4, atol=1e-7):
        return CheckResult(True, "correct: one scaled perturbation per example.")
    mistakes = {
        "that is the absolute perturbation |x_out - x_in|: divide by |x_in|": (flat_out - flat_in).norm(dim=1),
        "you divided by |x_out|; the step is measured against the block's input |x_in|":
            (flat_out - flat_in).norm(dim=1) / flat_out.norm(dim=1),
        "that is |x_out| / |x_in| - 1, the change of size, not the size of the change":
            flat_out.norm(dim=1) / flat_in.norm(dim=1) - 1,
        "the squared norms: take the square root (torch.norm) of each sum of squares":
            (flat_out - flat_in).pow(2).sum(1) / flat_in.pow(2).sum(1),
    }
    for hint, wrong in mistakes.items():
        if torch.allclose(out, wrong.double(), rtol=1e-4, atol=1e-7):
            return CheckResult(False, hint)
    if out.shape == right.shape and not torch.allclose(out, right.double(), rtol=1e-4):
        per_channel = (x_out - x_in).norm(dim=2).mean(1) / x_in.norm(dim=2).mean(1)
        if torch.allclose(out, per_channel.double(), rtol=1e-4):
            return CheckResult(False, "you took norms per channel; take one norm over all of an "
                                      "example's features (flatten(1) first)")
    return CheckResult(False, "the values differ from |x_out - x_in| / |x_in| per example and match none "
                              "of the usual mistakes; check one example by hand")


def check_stopping_rule(value: object, scaled_distance: float, eps: float) -> CheckResult:
    """Your number of blocks for a section of scaled distance d with tolerance eps: Hauser's
    L = ceil(d / eps) (notebook 06, exercise 2)."""
    from .perturbation import stopping_rule

    right = stopping_rule(scaled_distance, eps)
    if value is None or value is Ellipsis:
        return _not_done("blocks_needed")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        return CheckResult(False, f"blocks_needed must be a whole number of blocks; got {value!r:.40}")
    value = int(value)
    if value == right:
        return CheckResult(True, f"correct: {value} blocks.")
    if value == right + 1:
        return CheckResult(False, f"{value} is one too many: d / eps is a whole number here, and ceil "
                                  "leaves a whole number as it is (in floats the quotient may show a tiny excess)")
    if value == math.floor(scaled_distance * eps) or value == round(scaled_distance * eps):
        return CheckResult(False, "you multiplied by eps; the rule divides: L = ceil(d / eps)")
    word = "too many" if value > right else "too few"
    return CheckResult(False, f"{value} blocks is {word}: L = ceil(d_scaled / eps)")


# ---------------------------------------------------------------------------- notebook 07
# Spot the bug: published blocks that look right and are not. Each check builds the student's
# fixed class on small 1-D inputs and says what is still wrong.


def _build(cls: object, name: str, *args, **kwargs) -> tuple[nn.Module | None, CheckResult | None]:
    if cls is None or cls is Ellipsis:
        return None, _not_done(name)
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        return None, CheckResult(False, f"pass your fixed class {name} itself (not an instance); got "
                                        f"{type(cls).__name__}")
    try:
        return cls(*args, **kwargs), None
    except NotImplementedError:
        return None, _not_done(name)
    except Exception as err:
        return None, CheckResult(False, f"{name}{args} raised {type(err).__name__}: {err}")


def _forward(block: nn.Module, x: torch.Tensor, name: str, shape: tuple[int, ...] | None = None
             ) -> tuple[torch.Tensor | None, CheckResult | None]:
    """(block(x), None), or (None, what went wrong): an exception, or an output that is not a
    tensor of `shape` when one is given."""
    try:
        out = block(x)
    except NameError as err:
        return None, CheckResult(False, f"{name}.forward raised NameError ({err}): a name from __init__ "
                                        "is only reachable as self.<name> inside forward")
    except NotImplementedError:
        return None, _not_done(name)
    except Exception as err:
        return None, CheckResult(False, f"{name}.forward on a batch of shape {tuple(x.shape)} raised "
                                        f"{type(err).__name__}: {err}")
    if shape is not None and not (isinstance(out, torch.Tensor) and out.shape == shape):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return None, CheckResult(False, f"{name}.forward on a batch of shape {tuple(x.shape)} must "
                                        f"give {shape}; got {got}")
    return out, None


def check_downsample_fix(cls: object) -> CheckResult:
    """The article's ResidualBlock(in_channels, out_channels, stride, downsample) with its
    downsampler really used: a block that halves the length and doubles the channels runs, gives
    (batch, 2 in, length / 2), and its shortcut carries gradient to the downsampler's weights."""
    torch.manual_seed(0)
    down = nn.Sequential(nn.Conv1d(8, 16, 1, stride=2), nn.BatchNorm1d(16))
    block, problem = _build(cls, "ResidualBlock", 8, 16, stride=2, downsample=down)
    if problem is not None:
        return problem
    x = torch.randn(4, 8, 20)
    out, problem = _forward(block, x, "ResidualBlock", (4, 16, 10))
    if problem is not None:
        return problem
    out.sum().backward()
    if down[0].weight.grad is None or down[0].weight.grad.abs().sum() == 0:
        return CheckResult(False, "the downsampler gets no gradient: the shortcut must add "
                                  "self.downsample(x) to the output")
    plain, problem = _build(cls, "ResidualBlock", 8, 8)
    if problem is not None:
        return problem
    out, problem = _forward(plain, x, "ResidualBlock")
    if problem is not None:
        return problem
    return CheckResult(True, "correct: the downsampler is self.downsample, and the shortcut uses it.")


def check_batchnorm_fix(cls: object) -> CheckResult:
    """The article's ResidualBlock with one BatchNorm per convolution: in a training-mode forward
    every BatchNorm module is used once, and there are two of them."""
    block, problem = _build(cls, "ResidualBlock", 8, 8)
    if problem is not None:
        return problem
    norms = [m for m in block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    calls = {id(m): 0 for m in norms}
    handles = [m.register_forward_hook(lambda m, *_: calls.__setitem__(id(m), calls[id(m)] + 1)) for m in norms]
    block.train()
    try:
        _, problem = _forward(block, torch.randn(16, 8, 20) * 3 + 1, "ResidualBlock")
    finally:
        for h in handles:
            h.remove()
    if problem is not None:
        return problem
    shared = [m for m in norms if calls[id(m)] > 1]
    if shared:
        return CheckResult(False, "one BatchNorm normalizes both convolutions: it learns one scale for "
                                  "two layers, and its running mean and variance mix two different "
                                  "layers' statistics, so eval mode normalizes neither correctly")
    used = [m for m in norms if calls[id(m)] == 1]
    if len(used) < 2:
        return CheckResult(False, f"{len(used)} BatchNorm used in forward; each convolution needs its own (two)")
    return CheckResult(True, "correct: each convolution has its own BatchNorm and its own running statistics.")


def check_conv2_fix(cls: object) -> CheckResult:
    """The lecture's SkipBlock(in_ch, out_ch) with conv2 built for what it receives: conv1's
    out_ch channels."""
    block, problem = _build(cls, "SkipBlock", 8, 16)
    if problem is not None:
        return problem
    conv2 = getattr(block, "conv2", None)
    if not isinstance(conv2, nn.Conv1d):
        return CheckResult(False, "SkipBlock needs its second convolution as self.conv2 (an nn.Conv1d)")
    if conv2.in_channels != 16:
        return CheckResult(False, f"conv2 takes {conv2.in_channels} channels, but it receives conv1's "
                                  "out_ch = 16: build it as Conv1d(out_ch, out_ch, ...). In the lecture "
                                  "this never failed, because conv2 only ran when in_ch == out_ch")
    same, problem = _build(cls, "SkipBlock", 8, 8)
    if problem is not None:
        return problem
    _, problem = _forward(same, torch.randn(4, 8, 20), "SkipBlock")
    return problem if problem is not None else CheckResult(True, "correct: conv2 maps out_ch to out_ch channels.")


def check_channel_skip_fix(cls: object) -> CheckResult:
    """The lecture's SkipBlock(in_ch, 2 in_ch): the input is added to both halves of the doubled
    channels (out[:, :in_ch] and out[:, in_ch:]), not to one channel."""
    torch.manual_seed(0)
    block, problem = _build(cls, "SkipBlock", 8, 16)
    if problem is not None:
        return problem
    block.eval()
    x = torch.randn(4, 8, 20, requires_grad=True)
    out, problem = _forward(block, x, "SkipBlock", (4, 16, 20))
    if problem is not None:
        return problem
    with torch.no_grad():
        branch = torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))))
        added = out - branch
    if torch.allclose(added, torch.cat([x, x], 1), atol=1e-5):
        return CheckResult(True, "correct: the input reaches both halves of the doubled channels.")
    if torch.allclose(added[:, :8], x, atol=1e-5) and added[:, 8:].abs().max() < 1e-5:
        return CheckResult(False, "the input is added to the first half only; add it to out[:, in_ch:] too")
    if torch.allclose(added[:, 8:], x, atol=1e-5) and added[:, :8].abs().max() < 1e-5:
        return CheckResult(False, "the input is added to the second half only; add it to out[:, :in_ch] too")
    if added.abs().max() < 1e-5:
        return CheckResult(False, "nothing is added: the block has no skip connection left")
    return CheckResult(False, "what the block adds to its branch is not the input on both halves: "
                              "out[:, :in_ch] += x and out[:, in_ch:] += x")


def check_scaled_distance(fn: object, seed: int = 0) -> CheckResult:
    """Your scaled_distance(states) -> float: d_scaled of one section from its hidden states
    [x_0, ..., x_L], each (batch, ...): per block the per-example |x_(l+1) - x_l| / |x_l|,
    averaged over the examples, summed over the blocks (notebook 06, exercise 1)."""
    seed = check_seed("seed", seed)
    g = torch.Generator().manual_seed(seed)
    states = [torch.randn(5, 3, 8, generator=g) * torch.arange(1.0, 6.0).view(5, 1, 1)]
    for _ in range(4):
        states.append(states[-1] + 0.2 * torch.randn(5, 3, 8, generator=g))
    flat = [s.flatten(1) for s in states]
    steps = [(b - a).norm(dim=1) for a, b in zip(flat, flat[1:])]
    right = sum((st / a.norm(dim=1)).mean().item() for st, a in zip(steps, flat))
    value, problem = _call_number(fn, "scaled_distance(states)", [s.clone() for s in states])
    if problem is not None:
        return problem
    mistakes = {
        "that is the mean over the blocks, d_scaled / L: sum them instead": right / 4,
        "that is the absolute distance d: divide each step by |x_l| first":
            sum(st.mean().item() for st in steps),
        "you took one ratio of the whole batch's norms per block; average the per-example ratios":
            sum(((b - a).norm() / a.norm()).item() for a, b in zip(flat, flat[1:])),
        "you divided by |x_(l+1)|; each step is measured against the block's input |x_l|":
            sum((st / b.norm(dim=1)).mean().item() for st, b in zip(steps, flat[1:])),
    }
    return _check_number(value, "d_scaled", right, mistakes, rel=1e-4)
