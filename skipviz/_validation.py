"""Argument checks shared by every public function: each failure is a ValueError naming the
argument and what is allowed. numpy scalars are accepted wherever Python numbers are."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return the entry of `allowed` that `value` equals (of the same kind: an integer for an
    integer, a string for a string, never True for 1), else raise ValueError listing them."""
    allowed = tuple(allowed)
    for a in allowed:
        same_kind = (_is_int(a) and _is_int(value)) or type(a) is type(value)
        try:
            if same_kind and value == a:
                return a
        except Exception:  # an == without a single truth value (e.g. a tensor)
            pass
    choices = ", ".join(repr(a) for a in allowed)
    raise ValueError(f"{name} must be one of {choices}; got {value!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)))


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """Return `value` as an int if it is an integer (Python or numpy, not a bool) >= minimum (and
    <= maximum), else raise ValueError."""
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{name} must be an integer {bound}; got {value!r}")
    return int(value)


def check_seed(name: str, value: Any, allow_none: bool = False) -> int | None:
    """Return a seed as an int (an integer >= 0; None too when allow_none), else raise ValueError."""
    if value is None and allow_none:
        return None
    if not _is_int(value) or value < 0:
        extra = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an integer >= 0{extra}; got {value!r}")
    return int(value)


def check_number(name: str, value: Any, minimum: float | None = None, *,
                 strict: bool = False) -> float:
    """Return `value` as a float if it is a finite number (>= minimum, or > minimum when strict),
    else raise ValueError."""
    ok = _is_number(value) and math.isfinite(value)
    if ok and minimum is not None:
        ok = value > minimum if strict else value >= minimum
    if not ok:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        raise ValueError(f"{name} must be a finite number{bound}; got {value!r}")
    return float(value)


def check_positive(name: str, value: Any) -> float:
    """Return `value` as a float if it is a finite number > 0, else raise ValueError."""
    return check_number(name, value, 0, strict=True)


def check_bool(name: str, value: Any) -> bool:
    """Return `value` as a bool if it is True or False (numpy's too), else raise ValueError: a
    string such as 'no' would otherwise count as True."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def check_index(name: str, value: Any, low: int, high: int) -> int:
    """Return `value` as an int if it is an integer (Python or numpy, not a bool) in low..high
    inclusive, else raise ValueError naming the range."""
    if not _is_int(value) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in {low}..{high}; got {value!r}")
    return int(value)
