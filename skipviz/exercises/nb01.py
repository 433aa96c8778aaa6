"""Checks for notebook 01 (vanishing gradients): the per-layer factor of exercise 1 (also notebook
05's), Adam's first step of exercise 4."""

from __future__ import annotations

import math

from .._validation import check_choice
from .._validation import check_number as check_float
from ..errors import SkipvizValueError
from .feedback import (
    CheckResult,
    as_number,
    call_number,
    check_number,
    exercise_check,
    not_done,
    value_or_nan,
)


@exercise_check
def check_glorot_factor(value: object, activation: str = "sigmoid", init: str = "default") -> CheckResult:
    """Your predicted per-layer factor ρ = sqrt(n Var[w] E[f'(s)²]) for a plain net with one of the
    activation/init pairs of notebook 01's table (not used by the notebooks' own exercises, whose
    answers must not be one package call away; for a course's own questions). activation: 'tanh',
    'relu' or 'sigmoid'; init: 'default', 'xavier', 'he', 'small'."""
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


def _adam(g: float, lr: float, eps: float) -> float:
    return lr * g / (math.sqrt(g ** 2) + eps)


ADAM_MISTAKES = {
    "that is plain gradient descent's step lr·g; Adam divides by sqrt(v̂) + ε": lambda g, lr, eps: lr * g,
    "ε is left out: then the step is lr·sign(g) whatever the gradient's size": lambda g, lr, eps: lr * math.copysign(1, g),
    "the square root is missing: Adam divides by sqrt(v̂) + ε, and v̂ = g² on the first step":
        lambda g, lr, eps: lr * g / (g ** 2 + eps),
    "ε is inside the square root; Adam adds it after: sqrt(v̂) + ε": lambda g, lr, eps: lr * g / math.sqrt(g ** 2 + eps),
    "the bias correction is missing: after one step m = (1 - β₁) g and v = (1 - β₂) g²; Adam divides them by "
    "1 - β₁ and 1 - β₂": lambda g, lr, eps: lr * 0.1 * g / (math.sqrt(0.001 * g ** 2) + eps),
    "the step has lost the gradient's sign": lambda g, lr, eps: lr * abs(g) / (abs(g) + eps),
    "√(g²) is |g|, not g: for a negative gradient your denominator g + ε is not √v̂ + ε":
        lambda g, lr, eps: lr * g / (g + eps),
}


@exercise_check
def check_adam_step(answer: object, grad: float = 1e-15, lr: float = 1e-4, eps: float = 1e-8) -> CheckResult:
    """Your Adam first step (notebook 01, exercise 4): a function adam_first_step(g, lr, eps) ->
    lr * m̂ / (sqrt(v̂) + eps) with m̂ = g and v̂ = g² after bias correction, checked at gradients
    from 1e-15 to 2 of both signs (`lr` and `eps` set those of four of the cases)."""
    grad = check_float("grad", grad)
    lr, eps = check_float("lr", lr, 0, strict=True), check_float("eps", eps, 0, strict=True)
    if answer is None or answer is Ellipsis:
        return not_done("adam_first_step")
    if not callable(answer):   # the exercise asks for the function; one number cannot be checked
        return CheckResult(False, f"write a function adam_first_step(g, lr, eps) that returns the step; "
                                  f"got {type(answer).__name__} {answer!r:.40}")
    cases = [(g, lr, eps) for g in (1e-15, 1e-3, -0.5, 2.0)] + [(1e-6, 3e-3, 1e-6), (-0.2, 1e-2, 1e-3)]
    for g, rate, e in cases:
        value, problem = call_number(answer, "adam_first_step", f"adam_first_step({g:g}, {rate:g}, {e:g})", g, rate, e)
        if problem is not None:
            return problem
        if math.isclose(value, _adam(g, rate, e), rel_tol=1e-6):
            continue
        call_text = f"adam_first_step({g:g}, {rate:g}, {e:g})"
        if all(math.isclose(value_or_nan(answer, *c), -_adam(*c), rel_tol=1e-6) for c in cases):
            return CheckResult(False, f"{call_text} has the wrong sign: the question asks for the step's size "
                                      "lr·m̂/(√v̂ + ε), not the update Δw = −step")
        if all(math.isclose(value_or_nan(answer, *c), _adam(c[0], lr, eps), rel_tol=1e-6) for c in cases):
            return CheckResult(False, f"{call_text} is not right: your function ignores its lr and eps arguments")
        for hint, f in ADAM_MISTAKES.items():   # the first mistake that matches in every case
            if all(math.isclose(value_or_nan(answer, *c), f(*c), rel_tol=1e-6) for c in cases):
                return CheckResult(False, f"{call_text} is not right: {hint}")
        return CheckResult(False, f"{call_text} = {value:.3g} is not right, and it matches none of the usual "
                                  "mistakes: write out m̂ and v̂ after one step")
    return CheckResult(True, "correct: your step matches Adam's first step for tiny, small and large gradients "
                             "of both signs.")


@exercise_check
def check_leaky_relu_factor(value: object, slope: float = 0.2) -> CheckResult:
    """Your predicted per-layer factor ρ for a plain leaky-ReLU net (negative slope `slope`) with
    PyTorch's default init (notebook 01, exercise 1)."""
    slope = check_float("slope", slope, 0.0)
    if slope >= 1:
        raise SkipvizValueError(f"slope must be a number in [0, 1); got {slope!r}")
    n_var, gain = 1 / 3, (1 + slope ** 2) / 2   # default init; half the units with slope 1, half with `slope`
    rho = math.sqrt(n_var * gain)
    mistakes = {
        "you averaged the slopes; the factor needs the mean of the squared slopes":
            math.sqrt(n_var * (1 + slope) / 2),
        "you squared the mean slope; the factor needs the mean of the squared slopes, E[f'²], not E[f']²":
            math.sqrt(n_var * ((1 + slope) / 2) ** 2),
        "you added the two halves' squared slopes without weighting them: each half holds half of the units":
            math.sqrt(n_var * (1 + slope ** 2)),
        "that is the plain ReLU's factor: with a leaky ReLU the negative half passes some gradient too":
            math.sqrt(n_var / 2),
        "that is n Var[w] E[f'²] without the square root: ρ is the factor of the RMS, the square "
        "root of the variance factor": n_var * gain,
        "you left out n Var[w] = 1/3, the default init's share of the factor": math.sqrt(gain),
        "that is √(n Var[w]) alone: the activation's share E[f'(s)²] is missing": math.sqrt(n_var),
        "you used He's n Var[w] = 2; PyTorch's default init gives 1/3": math.sqrt(2 * gain),
        "that is the factor after 30 layers; the question asks for one layer": rho ** 30,
    }
    # The plain ReLU's factor is only 2% away: compare to rounding at three digits, not 2%.
    verdict = check_number(value, "the factor", rho, mistakes, rel=0.003)
    number, _ = as_number(value, "the factor")
    if not verdict.ok and number is not None and "matches none" in verdict.message and abs(number / rho - 1) < 0.02:
        return CheckResult(False, f"the factor = {number:.3g} is close, but give three significant digits or "
                                  "more: the plain ReLU's factor is only 2% away")
    return verdict
