"""Checks for notebook 08 (shattered gradients): the lag-k autocorrelation of a gradient along a
line, and the factor by which the input's share of a pre-activation shrinks per layer."""

from __future__ import annotations

import math

import torch

from .._validation import check_seed
from .feedback import CheckResult, call_number, check_number, exercise_check, value_or_nan


def _reference(g: torch.Tensor, k: int, center: bool = True, pairs: bool = True) -> float:
    """rho(k): mean over the n - k pairs of (g_i - mean)(g_{i+k} - mean), over the mean square."""
    d = g - g.mean() if center else g
    top = (d[:len(d) - k] * d[k:])
    return float(top.mean() / (d * d).mean()) if pairs else float(top.sum() / (d * d).sum())


def _pearson(g: torch.Tensor, k: int) -> float:
    a, b = g[:len(g) - k], g[k:]
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def _series(seed: int) -> list[torch.Tensor]:
    """Test gradients: a random walk (smooth, with a mean far from 0), white noise, and a walk
    with a jump, each of its own length."""
    gen = torch.Generator().manual_seed(1000 + seed)
    walk = 3.0 + torch.randn(64, generator=gen, dtype=torch.float64).cumsum(0) * 0.2
    noise = torch.randn(50, generator=gen, dtype=torch.float64) + 0.5
    jump = torch.cat([torch.full((20,), 1.0), torch.full((20,), -2.0)]).double() \
        + 0.05 * torch.randn(40, generator=gen, dtype=torch.float64)
    return [walk, noise, jump]


@exercise_check
def check_autocorrelation(fn: object, seed: int = 0) -> CheckResult:
    """Your lag_autocorrelation(g, k): for g (n,) float64 and 0 <= k < n, the mean over the n - k
    pairs of (g_i - mean g)(g_{i+k} - mean g), divided by the mean of (g_i - mean g)^2 (notebook 08,
    exercise 1). Tested at lags 0, 1, 3 and 7 on a smooth series, white noise and a series with a
    jump; `seed` draws other series."""
    seed = check_seed("seed", seed)
    series = _series(seed)
    mistakes = {
        "you did not subtract the mean first: a gradient with a large mean then looks correlated even when "
        "its ups and downs are not":
            lambda g, k: _reference(g, k, center=False),
        "that is np.correlate on the raw gradient, normalized by lag 0: subtract the mean first, and average "
        "the products of the n - k pairs rather than summing them":
            lambda g, k: _reference(g, k, center=False, pairs=False),
        "you divided a sum over the n - k pairs by a sum over all n points, which shrinks rho(k) by (n - k)/n; "
        "take the mean of each instead":
            lambda g, k: _reference(g, k, pairs=False),
        "that is the Pearson correlation of the two shifted pieces, each with its own mean and spread; use the "
        "mean and the mean square of the whole g":
            _pearson,
        "that is the covariance: divide by the lag-0 value (the mean square about the mean) so that rho(0) = 1":
            lambda g, k: float(((g - g.mean())[:len(g) - k] * (g - g.mean())[k:]).mean()),
        "off by one in the lag: points k apart are g[i] and g[i + k]":
            lambda g, k: _reference(g, k + 1) if k + 1 < len(g) else math.nan,
        "off by one in the lag, one too few: points k apart are g[i] and g[i + k]":
            lambda g, k: _reference(g, k - 1) if k >= 1 else math.nan,
    }
    for g in series:
        for k in (0, 1, 3, 7):
            text = f"lag_autocorrelation(g, {k}) for a series of {len(g)} values"
            value, problem = call_number(fn, "lag_autocorrelation", text, g.clone(), k)
            if problem is not None and k == 0 and ("size" in problem.message or "broadcast" in problem.message):
                return CheckResult(False, "lag_autocorrelation(g, 0) failed: at lag 0, g[:-k] is g[:0], which is "
                                          "empty; slice with g[:len(g) - k]")
            if problem is not None:
                return problem
            if abs(value - _reference(g, k)) <= 1e-6 + 1e-6 * abs(_reference(g, k)):
                continue
            for hint, wrong in mistakes.items():
                if all(abs(value_or_nan(fn, s.clone(), j) - wrong(s, j)) <= 1e-6 + 1e-6 * abs(wrong(s, j))
                       for s in series for j in (1, 3)):
                    return CheckResult(False, hint)
            if k == 0:
                return CheckResult(False, f"{text} is {value:.3g}: at lag 0 every point is paired with itself, "
                                          "so the autocorrelation is 1")
            return CheckResult(False, f"{text} is wrong and matches none of the usual mistakes: compute the "
                                      "numerator and the denominator for a short series by hand")
    return CheckResult(True, "correct: your autocorrelation matches at every lag and on every series tested.")


@exercise_check
def check_shrink_factor(value: object) -> CheckResult:
    """Your prediction for Prince's set-up (ReLU layers, weight variance 1/D, D units per layer):
    the factor by which the variance of the part of a pre-activation that depends on the input x
    shrinks from one layer to the next (notebook 08, exercise 2)."""
    mistakes = {
        "is that a factor for the standard deviation? The question asks about the variance":
            1 / math.sqrt(2),
        "that is the inverse: a factor below 1 shrinks the signal":
            2.0,
        "that is what He initialization gives; here the weights have variance 1/D, not 2/D":
            1.0,
        "count each factor once: one for the D weights of the next layer, one for the ReLU":
            0.25,
        "that is the weight variance 1/D itself; the question asks how the variance of z changes from one "
        "layer to the next":
            1 / 200,
    }
    return check_number(value, "shrink_factor", 0.5, mistakes)
