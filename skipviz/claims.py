"""Claims: a sentence of a notebook's text, checked by the run that prints the numbers behind it.

    claim("the residual net trains to a lower loss than the plain one", res_loss < plain_loss)

prints `✔ the residual net trains ...` when it holds and raises ClaimFailed naming the sentence
when it does not, so a run (any seed, any machine) in which the text would be wrong stops there.
A claim about fully trained models is marked `full_only=True`: in FAST mode, where training is
shortened, it is listed as not checked instead. The printed line holds no measured digits, so a
cell of claims prints the same on every machine and can be compared by nbval.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import torch

from ._validation import check_bool, show
from .errors import SkipvizError, SkipvizTypeError, SkipvizValueError
from .settings import fast_mode

__all__ = ["TALLY", "ClaimFailed", "Margin", "Tally", "claim", "margin_all", "margin_and",
           "margin_compare"]


class ClaimFailed(AssertionError):
    """A claim of the notebook's text does not hold for this run."""


@dataclass
class Tally:
    """How many claims this process checked, found to hold, and left unchecked (FAST mode)."""

    held: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line: 'N claims held, M not checked in FAST mode'."""
        text = f"{len(self.held)} claims held"
        return text + (f", {len(self.skipped)} not checked in FAST mode" if self.skipped else "")


TALLY = Tally()


def claim(statement: str, holds: bool, *, full_only: bool = False, detail: str = "") -> None:
    """Check one sentence of the text: print '✔ statement', or raise ClaimFailed.

    statement: the claim in words, as the text makes it. holds: whether this run's numbers bear
    it out: a truth value (bool, numpy bool, 0-d bool tensor, or a Margin); a number, a string or
    a list is refused, since each has a truth value that is not the claim's. full_only: the claim
    is about FULL-mode training; in FAST mode it is reported as not checked. detail: shown only
    when the claim fails (the measured numbers), so that the printed success line is the same on
    every machine. Returns None, so that a cell ending in a claim shows only its line (what held
    and what was skipped is in TALLY).
    """
    if not isinstance(statement, str) or not statement.strip():
        raise SkipvizValueError(f"statement must be a non-empty string; got {show(statement)}")
    full_only = check_bool("full_only", full_only)
    if not isinstance(detail, str):
        raise SkipvizValueError(f"detail must be a string; got {show(detail)}")
    ok = truth(holds)
    if full_only and fast_mode():
        TALLY.skipped.append(statement)
        print(f"· not checked in FAST mode: {statement}")
        return None
    _record(statement, holds)
    if not ok:
        raise ClaimFailed(f"the notebook's claim does not hold for this run: {statement}"
                          + (f" ({detail})" if detail else ""))
    TALLY.held.append(statement)
    print(f"✔ {statement}")
    return None


def truth(holds: object, name: str = "holds") -> bool:
    """holds as a bool if it is a truth value (bool, numpy bool, 0-d bool tensor, Margin), else
    SkipvizValueError: claim(s, acc - 0.8) or claim(s, [False]) would otherwise print ✔."""
    if isinstance(holds, Margin):
        return holds.holds
    if isinstance(holds, torch.Tensor) and holds.dtype == torch.bool and holds.numel() == 1 \
            and holds.device.type != "meta":
        return bool(holds.item())
    if isinstance(holds, np.ndarray) and holds.dtype == bool and holds.size == 1:
        return bool(holds.item())
    if isinstance(holds, (bool, np.bool_)):
        return bool(holds)
    raise SkipvizValueError(
        f"{name} must be a truth value (True/False, a numpy bool or a 0-d bool tensor), e.g. "
        f"acc > 0.8 rather than acc - 0.8; got {show(holds)}")


# ---------------------------------------------------------------------------- margins
# `make claims` rewrites each claim's condition so that its comparisons return a Margin: true or
# false as before, plus how far the measured side was from the bound, relative to their size.
# A notebook never calls these itself.


@dataclass
class Margin:
    """A comparison's truth and its slack: (bound - value) / max(|bound|, |value|) for value < bound,
    so 0 means on the edge and 1 far inside; None when the comparison has no size (==, is)."""

    holds: bool
    slack: float | None

    def __post_init__(self) -> None:
        self.holds = bool(self.holds)

    def __bool__(self) -> bool:
        return self.holds


def _number(x):
    try:
        return float(x)
    except (TypeError, ValueError, RuntimeError):
        return None


def margin_compare(first, *pairs) -> Margin:
    """first op1 second op2 third ...: pairs alternate an operator ('<', '<=', '>', '>=', '==',
    ...) and the next operand, as in a chained Python comparison."""
    ops = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
           ">=": lambda a, b: a >= b, "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
           "in": lambda a, b: a in b, "not in": lambda a, b: a not in b, "is": lambda a, b: a is b,
           "is not": lambda a, b: a is not b}
    if not pairs or len(pairs) % 2:
        raise SkipvizValueError(f"pairs must alternate operators and operands, as (op, second, ...); "
                                f"got {len(pairs)} values")
    for op in pairs[::2]:
        if not isinstance(op, str) or op not in ops:
            raise SkipvizValueError(f"pairs: each operator must be one of {', '.join(ops)}; got {show(op)}")
    try:
        return _compare(ops, first, pairs)
    except SkipvizError:
        raise
    except Exception as err:
        raise SkipvizValueError(f"first and pairs cannot be compared: {type(err).__name__}: {err}") from None


def _compare(ops: dict, first, pairs: tuple) -> Margin:
    if len(pairs) == 2:
        result = ops[pairs[0]](first, pairs[1])
        if getattr(result, "ndim", 0) > 0:   # an elementwise comparison of tensors: leave it as it is
            return result
    holds, slacks, left = True, [], first
    for op, right in zip(pairs[::2], pairs[1::2]):
        holds = holds and bool(ops[op](left, right))
        a, b = _number(left), _number(right)
        if op in ("<", "<=", ">", ">=") and a is not None and b is not None:
            gap = (b - a) if op in ("<", "<=") else (a - b)
            slacks.append(gap / max(abs(a), abs(b), 1e-300))
        else:
            slacks.append(None)
        left = right
    sized = [s for s in slacks if s is not None]
    return Margin(holds, min(sized) if sized and len(sized) == len(slacks) else None)


def margin_all(values) -> Margin:
    """all(...) of Margins (or plain truths): holds if all hold; slack the smallest known one."""
    if not isinstance(values, Iterable) or isinstance(values, (str, bytes, torch.Tensor)):
        raise SkipvizValueError(f"values must be an iterable of truth values or Margins; got {show(values)}")
    values = list(values)
    for i, v in enumerate(values):
        truth(v, f"values[{i}]")
    slacks = [getattr(v, "slack", None) for v in values]
    sized = [s for s in slacks if s is not None]
    return Margin(all(bool(v) for v in values), min(sized) if sized and len(sized) == len(slacks) else None)


def margin_and(*thunks) -> Margin:
    """a and b and ...: each thunk evaluated in order, stopping at the first false one."""
    for i, thunk in enumerate(thunks):
        if not callable(thunk):
            raise SkipvizTypeError(f"thunks[{i}] must be a function of no arguments; got {show(thunk)}")
    values = []
    for i, thunk in enumerate(thunks):
        try:
            values.append(thunk())
        except Exception as err:
            raise SkipvizValueError(f"thunks[{i}]() raised {type(err).__name__}: {err}") from err
        if not truth(values[-1], f"thunks[{i}]()"):
            break
    result = margin_all(values)
    return result if result.holds or len(values) == len(thunks) else Margin(False, result.slack)


def _record(statement: str, holds) -> None:
    """With SKIPVIZ_CLAIMS_LOG set (by `make claims`), append the claim's slack to that file."""
    path = os.environ.get("SKIPVIZ_CLAIMS_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"statement": statement, "slack": getattr(holds, "slack", None)}) + "\n")
