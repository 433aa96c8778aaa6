"""Checks for notebook 05 (telescope MLP): E|w| under He initialization."""

from __future__ import annotations

import math

from .._validation import check_int
from .feedback import CheckResult, check_number


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
    return check_number(value, "E|w|", std * math.sqrt(2 / math.pi), mistakes)
