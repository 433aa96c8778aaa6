"""Checks for notebook 01 (vanishing gradients): the per-layer factor of exercise 1 (also notebook
05's), Adam's first step of exercise 4."""

from __future__ import annotations

import math

from .._validation import check_choice
from .._validation import check_number as check_float
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


def check_leaky_relu_factor(value: object, slope: float = 0.2) -> CheckResult:
    """Your predicted per-layer factor ρ for a plain leaky-ReLU net (negative slope `slope`) with
    PyTorch's default init, n Var[w] = 1/3 (notebook 01, exercise 1). Half of the units pass the
    gradient with slope 1, the other half with `slope`, so E[f'(s)²] = (1 + slope²) / 2."""
    slope = check_float("slope", slope, 0.0)
    if slope >= 1:
        raise ValueError(f"slope must be a number in [0, 1); got {slope!r}")
    n_var, gain = 1 / 3, (1 + slope ** 2) / 2
    rho = math.sqrt(n_var * gain)
    mistakes = {
        "you averaged the slopes, (1 + a)/2, where their squares belong: E[f'²] = (1 + a²)/2":
            math.sqrt(n_var * (1 + slope) / 2),
        "that is the plain ReLU's factor: the negative half passes a² of the variance, not nothing":
            math.sqrt(n_var / 2),
        "that is n Var[w] E[f'²] without the square root: ρ is the factor of the RMS, the square "
        "root of the variance factor": n_var * gain,
        "you left out n Var[w] = 1/3, the default init's share of the factor": math.sqrt(gain),
        "you used He's n Var[w] = 2; PyTorch's default init gives 1/3": math.sqrt(2 * gain),
        "that is the factor after 30 layers; the question asks for one layer": rho ** 30,
    }
    # The plain ReLU's factor is only 2% away: compare to rounding at three digits, not 2%.
    return check_number(value, "the factor", rho, mistakes, rel=0.003)
