"""Checks for notebook 01 (vanishing gradients): the per-layer factor of exercise 1 (also notebook
05's), Adam's first step of exercise 4."""

from __future__ import annotations

import math

from .._validation import check_choice
from .feedback import CheckResult, check_number


def check_glorot_factor(value: object, activation: str = "sigmoid", init: str = "default") -> CheckResult:
    """Your predicted per-layer factor ρ = sqrt(n Var[w] E[f'(s)²]) for a plain net (notebook 01,
    exercise 1). activation: 'tanh', 'relu' or 'sigmoid'; init: 'default', 'xavier', 'he', 'small'."""
    from ..probes import ACTIVATION_GAIN, N_VAR_W

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
    return check_number(value, "the factor", rho, mistakes)


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
    return check_number(value, "Adam's step", step, mistakes)
