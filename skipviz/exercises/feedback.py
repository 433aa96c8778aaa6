"""The feedback core every exercise check shares.

A check never reads a student's source: it calls the answer and compares what it does with a
reference. These helpers turn every way that can go wrong into one line of feedback:

- `CheckResult`: the verdict (`ok`) and its one-line message; shown as ✅/❌ in a notebook.
- `as_number` / `check_number`: a number answer (Python, numpy or torch scalar, 0-d tensor),
  right within a tolerance, or the named mistake it matches.
- `call`: calls a student's function; an exception becomes one line naming the call.
- `modules.build` and `modules.compare_modules` (in `modules.py`): a student's nn.Module
  against a reference *with the same weights*, in train and eval mode and through
  `backward()`; `modules.first_mistake` names the typical mistake whose reference behaves like
  the student's module.

Every helper leaves the global random state alone (inputs come from local generators; modules
are built inside `torch.random.fork_rng`).
"""

from __future__ import annotations

import decimal
import functools
import html
import math
import numbers
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import SkipvizError


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
        # Black text (readable on any background: WCAG contrast), the verdict in the mark and in an
        # Okabe-Ito bluish green or vermilion bar beside it: the colour is never the only cue.
        color = "#009E73" if self.ok else "#D55E00"
        mark = "✅" if self.ok else "❌"
        return (f'<div style="color:#000;background:#fff;border-left:4px solid {color};padding-left:6px">'
                f'{mark} {html.escape(self.message)}</div>')


    def assert_ok(self) -> None:
        """The verdict as a graded test: shows it, then raises CheckFailed if the answer is wrong.

        nbgrader gives a test cell its points unless the cell raises, so a graded cell ends in
        `.assert_ok()`; the error the student (and the feedback) sees is this same one line."""
        try:
            from IPython.display import display
        except ImportError:  # outside IPython the verdict is printed
            display = print
        if not self.ok:
            raise CheckFailed(self.message)
        display(self)


class CheckFailed(AssertionError):
    """A failed graded check. It shows as its one line of feedback, without a traceback: the
    feedback must not reveal a hidden test's code, and the student needs the message, not the
    check's internals."""

    def _render_traceback_(self) -> list[str]:   # IPython shows this in place of a traceback
        return ["❌ " + str(self)]


def exercise_check(check: Callable) -> Callable:
    """Every public check is wrapped in this:
    - the global random states (torch's, numpy's, Python's) are the same afterwards, so that
      building modules, drawing inputs and running the student's code inside the check leave the
      student's random stream where it was;
    - whatever the student's answer does, the check returns a CheckResult: an exception that
      escapes the check's own handling becomes one line. A SkipvizError about the check's other
      arguments (a misspelt `block=`) is still raised: that is not the student's answer.
    """
    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                return check(*args, **kwargs)
        except SkipvizError:
            raise
        except Exception as err:
            return CheckResult(False, f"could not check this answer: {describe(err)}")
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
    return wrapper


def not_done(name: str) -> CheckResult:
    return CheckResult(False, f"not done yet: {name} is still the stub (replace it with your answer)")


def describe(err: BaseException) -> str:
    """An exception as one short line: 'TypeError (what it said)'."""
    text = " ".join(str(err).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(err).__name__} ({text})" if text else type(err).__name__


INPLACE_HINT = ("an in-place write (+=, or out[...] = ...) changed a tensor that autograd still "
                "needs for backward(); write the sum as a new tensor (out = out + ..., torch.cat)")


def _explain(err: BaseException) -> str:
    if isinstance(err, RuntimeError) and "modified by an inplace operation" in str(err):
        return INPLACE_HINT
    if isinstance(err, RuntimeError) and "leaf Variable that requires grad" in str(err):
        return ("a write into the input x in place (x += ..., x.mul_(...)): the caller's x must stay as it "
                "was, so compute a new tensor")
    return describe(err)


# ---------------------------------------------------------------------------- numbers


def as_number(value: object, name: str) -> tuple[float | None, CheckResult | None]:
    """(value as a float, None), or (None, the verdict): accepts int, float, numpy scalars and
    0-d arrays, torch 0-d or one-element tensors, any numbers.Real (Fraction, Decimal); not bools
    or strings."""
    if value is None or value is Ellipsis:
        return None, not_done(name)
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            return None, CheckResult(False, f"{name} must be one number; got a tensor of shape "
                                            f"{tuple(value.shape)}")
        value = value.detach().reshape(()).item()
    elif isinstance(value, np.ndarray):
        if value.size != 1:
            return None, CheckResult(False, f"{name} must be one number; got an array of shape {value.shape}")
        value = value.reshape(()).item()
    if not isinstance(value, (bool, np.bool_, str, numbers.Real, decimal.Decimal, np.integer, np.floating)) \
            and hasattr(value, "__float__") and not isinstance(value, numbers.Complex):
        try:   # an exact answer from sympy and the like: its float is what is compared
            value = float(value)
        except (TypeError, ValueError):
            pass
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, decimal.Decimal, np.integer, np.floating)):
        return None, CheckResult(False, f"{name} must be a number; got {type(value).__name__} {value!r:.40}")
    value = float(value)
    if not math.isfinite(value):
        return None, CheckResult(False, f"{name} is {value}: a finite number is expected")
    return value, None


def check_number(value: object, name: str, expected: float, mistakes: dict[str, float],
                 rel: float = 0.02) -> CheckResult:
    """Right within `rel`, else the named mistake it matches, else too large or too small (the
    reference value is never printed)."""
    value, problem = as_number(value, name)
    if problem is not None:
        return problem
    if abs(value - expected) <= rel * abs(expected):
        return CheckResult(True, f"correct: {name} = {value:.3g}.")
    for hint, wrong in mistakes.items():
        if abs(value - wrong) <= rel * abs(wrong) or (wrong == 0 and value == 0):
            return CheckResult(False, f"{name} = {value:.3g} is not right: {hint}")
    if value == 0:
        return CheckResult(False, f"{name} is 0: that cannot be right")
    ratio = value / expected if expected else math.inf
    if ratio <= 0:
        return CheckResult(False, f"{name} = {value:.3g} has the wrong sign")
    word = "too large" if ratio > 1 else "too small"
    how = "far" if max(ratio, 1 / ratio) > 1.25 else "a little"
    return CheckResult(False, f"{name} = {value:.3g} is {how} {word} (and matches none of the usual "
                              "mistakes): go through the formula factor by factor")


# ---------------------------------------------------------------------------- functions


def call(fn: object, name: str, *args) -> tuple[object, CheckResult | None]:
    """(fn(*args), None), or (None, the verdict): the stub, a non-callable, or one line for any
    exception the student's code raised."""
    if fn is None or fn is Ellipsis:
        return None, not_done(name)
    if not callable(fn):
        return None, CheckResult(False, f"pass your function {name} itself (without calling it); got "
                                        f"{type(fn).__name__} {fn!r:.40}")
    try:
        with torch.random.fork_rng(devices=[]):
            return fn(*args), None
    except NotImplementedError:
        return None, not_done(name)
    except Exception as err:
        return None, CheckResult(False, f"calling {name} raised {_explain(err)}")


def value_or_nan(fn: Callable, *args) -> float:
    """fn(*args) as a float, or nan when it raises or returns no number: for comparing an answer
    with each typical mistake over many cases, after the first call has been checked properly."""
    try:
        return float(fn(*args))
    except Exception:
        return math.nan


def call_number(fn: object, name: str, call_text: str, *args) -> tuple[float | None, CheckResult | None]:
    """(fn(*args) as a float, None), or (None, what went wrong); `call_text` names the call."""
    out, problem = call(fn, name, *args)
    if problem is not None:
        return None, problem
    if out is None:
        return None, CheckResult(False, f"{call_text} returned None: did you forget `return`?")
    value, problem = as_number(out, call_text)
    if problem is not None:
        return None, CheckResult(False, problem.message.replace("must be", "must return"))
    return value, None
