"""Checks for notebook 05 (telescope MLP): E|w| under He initialization."""

from __future__ import annotations

import math
import random

from .._validation import check_int, check_seed
from .feedback import CheckResult, check_number, exercise_check


@exercise_check
def check_mean_abs_weight(value: object, n: int = 64) -> CheckResult:
    """Your E|w| for He initialization, w ~ N(0, 2/n), at fan-in n (notebook 05, exercise 1: the
    value the blog's mean-|W| plot would start from with He init)."""
    n = check_int("n", n)
    std = math.sqrt(2 / n)
    mistakes = {
        "that is the standard deviation sqrt(2/n); E|w| of a zero-mean Gaussian is smaller than its standard deviation": std,
        "that is the variance 2/n, not the mean of |w|": 2 / n,
        "that is E|w| for PyTorch's default U(-1/√n, 1/√n), 1/(2√n); He init draws from N(0, 2/n)":
            1 / (2 * math.sqrt(n)),
        "either you used Var[w] = 1/n (Xavier's; He init has 2/n) or the wrong factor between E|w| and the "
        "standard deviation": math.sqrt(1 / n) * math.sqrt(2 / math.pi),
        "you divided where the factor multiplies: E|w| of a zero-mean Gaussian is smaller than its standard "
        "deviation, not larger": std * math.sqrt(math.pi / 2),
    }
    return check_number(value, "E|w|", std * math.sqrt(2 / math.pi), mistakes)


def _quiet(spread: float, factor: float, threshold: float) -> int:
    """The first layer l >= 1 with spread * factor**(l - 1) < threshold, by stepping (no logs)."""
    layer, s = 1, spread
    while s >= threshold:
        layer, s = layer + 1, s * factor
    return layer


QUIET_CASES = [(1.0, 0.408, 1e-6), (2.2, 0.939, 0.05), (0.85, 0.5, 1e-3), (1e-7, 0.4, 1e-6), (3.0, 0.9, 0.2)]


@exercise_check
def check_quiet_layer(fn: object, seed: int | None = None) -> CheckResult:
    """Your quiet_layer(spread, factor, threshold=1e-6): the first layer l (counting from 1) whose
    predicted spread, spread · factor^(l-1) with `spread` that of layer 1, is below `threshold`
    (notebook 05, exercise 2). Tested on five cases, one where layer 1 is already below it, and with
    a `seed` on five more drawn from it."""
    seed = check_seed("seed", seed, allow_none=True)
    cases = list(QUIET_CASES)
    if seed is not None:
        rng = random.Random(seed)
        cases += [(round(10 ** rng.uniform(-3, 1), 4), round(rng.uniform(0.3, 0.95), 3),
                   10.0 ** rng.randint(-6, -1)) for _ in range(5)]
    from .feedback import call_number, value_or_nan

    mistakes = {
        "off by one, one layer too late: layer l has spread · factor^(l-1), so layer 1 has the spread itself":
            lambda s, f, t: _quiet(s, f, t) + 1,
        "off by one, one layer too early: layer 1 has the spread itself, layer l has spread · factor^(l-1)":
            lambda s, f, t: max(_quiet(s, f, t) - 1, 0),
        "you left out the starting spread: the layer depends on how far spread is above the threshold":
            lambda s, f, t: _quiet(1.0, f, t),
        "you used factor², the variance's factor; the spread (a standard deviation) shrinks by the factor itself":
            lambda s, f, t: _quiet(s, f * f, t),
        "you rounded the layer count to the nearest whole number; the first quiet layer needs it rounded up":
            lambda s, f, t: 1 + round(math.log(t / s) / math.log(f)) if s >= t else 1,
    }
    for spread, factor, threshold in cases:
        value, problem = call_number(fn, "quiet_layer", f"quiet_layer({spread:g}, {factor:g}, {threshold:g})",
                                     spread, factor, threshold)
        if problem is not None:
            return problem
        right = _quiet(spread, factor, threshold)
        if value == right:
            continue
        if value != int(value):
            return CheckResult(False, f"quiet_layer({spread:g}, {factor:g}, {threshold:g}) = {value:g}: a layer "
                                      "is a whole number (round up the layer count, not the spread)")
        # the typical mistakes, recognized on the cases where layer 1 is not yet quiet (an answer
        # may treat that edge on its own)
        usual = [case for case in cases if case[0] >= case[2]]
        if spread < threshold and all(value_or_nan(fn, *case) == _quiet(*case) for case in usual):
            return CheckResult(False, f"quiet_layer({spread:g}, {factor:g}, {threshold:g}) = {value:g}: here "
                                      "layer 1 is already below the threshold, so the answer is layer 1")
        for hint, wrong in mistakes.items():
            if all(value_or_nan(fn, *case) == wrong(*case) for case in usual):
                return CheckResult(False, hint)
        return CheckResult(False, f"quiet_layer({spread:g}, {factor:g}, {threshold:g}) is wrong and matches none "
                                  "of the usual mistakes: step through the layers by hand for that case")
    return CheckResult(True, "correct: the first quiet layer matches for every case tested.")
