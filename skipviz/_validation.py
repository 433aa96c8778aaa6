"""Argument checks shared by every public function: each failure is a SkipvizValueError naming
the argument, what was given and what is allowed. numpy scalars and 0-d torch tensors are
accepted wherever Python numbers are (a student's answer is often a np.float32 or a tensor)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from .errors import SkipvizTypeError, SkipvizValueError


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return the entry of `allowed` that `value` equals (of the same kind: an integer for an
    integer, a string for a string, never True for 1), else raise ValueError listing them."""
    allowed = tuple(allowed)
    for a in allowed:
        same_kind = ((_is_int(a) and _is_int(value)) or type(a) is type(value)
                     or (isinstance(a, str) and isinstance(value, str)))
        try:
            if same_kind and value == a:
                return a
        except Exception:  # an == without a single truth value (e.g. a tensor)
            pass
    choices = ", ".join(repr(a) for a in allowed)
    raise SkipvizValueError(f"{name} must be one of {choices}; got {show(value)}")


def _scalar(value: Any) -> Any:
    """A 0-d tensor as the Python number or bool it holds; anything else unchanged."""
    if isinstance(value, torch.Tensor) and value.dim() == 0 and value.device.type != "meta":
        return value.item()
    return value


def _is_int(value: Any) -> bool:
    value = _scalar(value)
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_number(value: Any) -> bool:
    value = _scalar(value)
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, (bool, np.bool_)))


def show(value: Any) -> str:
    """How an error message shows what the caller gave: short, with its type when repr hides it."""
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, np.ndarray):
        return f"a numpy array of shape {value.shape}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return text if isinstance(value, (int, float, str, bool, type(None), np.generic)) \
        else f"{text} ({type(value).__name__})"


# No count, size or number of steps above this can be allocated or run on a laptop.
MAX_COUNT = 10 ** 9


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = MAX_COUNT) -> int:
    """Return `value` as an int if it is an integer (Python, numpy or a 0-d tensor, not a bool)
    >= minimum and <= maximum (None: no upper bound), else raise ValueError."""
    number = _scalar(value)
    if not _is_int(number) or number < minimum or (maximum is not None and number > maximum):
        # The generic ceiling is named only to the caller who went above it.
        quiet = maximum is None or (maximum == MAX_COUNT and not (_is_int(number) and number > maximum))
        bound = f">= {minimum}" if quiet else f"in {minimum}..{maximum}"
        raise SkipvizValueError(f"{name} must be an integer {bound}; got {show(value)}")
    return int(number)


def check_seed(name: str, value: Any, allow_none: bool = False) -> int | None:
    """Return a seed as an int (an integer >= 0; None too when allow_none), else raise ValueError."""
    if value is None and allow_none:
        return None
    number = _scalar(value)
    if not _is_int(number) or not 0 <= number < 2 ** 32:  # numpy's generators stop at 2**32 - 1
        extra = " or None" if allow_none else ""
        raise SkipvizValueError(f"{name} must be an integer in 0..2**32-1{extra}; got {show(value)}")
    return int(number)


def check_number(name: str, value: Any, minimum: float | None = None, *,
                 strict: bool = False) -> float:
    """Return `value` as a float if it is a finite number (>= minimum, or > minimum when strict),
    else raise ValueError."""
    number = _scalar(value)
    ok = _is_number(number) and math.isfinite(number)
    if ok and minimum is not None:
        ok = number > minimum if strict else number >= minimum
    if not ok:
        bound = "" if minimum is None else f" {'>' if strict else '>='} {minimum:g}"
        raise SkipvizValueError(f"{name} must be a finite number{bound}; got {show(value)}")
    return float(number)


def check_positive(name: str, value: Any) -> float:
    """Return `value` as a float if it is a finite number > 0, else raise ValueError."""
    return check_number(name, value, 0, strict=True)


def check_bool(name: str, value: Any) -> bool:
    """Return `value` as a bool if it is True or False (numpy's too), else raise ValueError: a
    string such as 'no' would otherwise count as True."""
    truth = _scalar(value)
    if not isinstance(truth, (bool, np.bool_)):
        raise SkipvizValueError(f"{name} must be True or False; got {show(value)}")
    return bool(truth)


def check_index(name: str, value: Any, low: int, high: int) -> int:
    """Return `value` as an int if it is an integer (Python or numpy, not a bool) in low..high
    inclusive, else raise ValueError naming the range."""
    number = _scalar(value)
    if not _is_int(number) or not low <= number <= high:
        raise SkipvizValueError(f"{name} must be an integer in {low}..{high}; got {show(value)}")
    return int(number)


def float_array(values: Any) -> np.ndarray | None:
    """values (a tensor, numpy array, number or nested list of numbers) as a float64 numpy array
    of its own shape, or None when it holds something else (text, None, a meta tensor). Callers
    check the shape and finiteness they need and name the argument."""
    if isinstance(values, torch.Tensor):
        if values.device.type == "meta":
            return None
        values = values.detach().cpu()
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError, RuntimeError):
        return None


def check_model(name: str, model: Any) -> torch.dtype | None:
    """Raise unless `model` is a torch module whose weights are on the CPU and share one dtype;
    return that dtype (None for a module without parameters)."""
    from torch import nn

    if isinstance(model, type) and issubclass(model, nn.Module):
        raise SkipvizTypeError(f"{name} must be a model (an instance); got the class {model.__name__}: "
                               f"call it, e.g. {model.__name__}(...)")
    if not isinstance(model, nn.Module):
        raise SkipvizTypeError(f"{name} must be a torch.nn.Module; got {show(model)}")
    params = list(model.parameters())
    devices = {p.device.type for p in params}
    if devices - {"cpu"}:
        raise SkipvizValueError(f"{name} must have its weights on the CPU; got {', '.join(sorted(devices))}")
    dtypes = {p.dtype for p in params}
    if len(dtypes) > 1:
        raise SkipvizValueError(f"{name} mixes weight dtypes {sorted(map(str, dtypes))}: convert it with "
                                f"{name}.float()")
    return dtypes.pop() if dtypes else None
