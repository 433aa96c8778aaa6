"""The error contract, as a harness the fuzz test (tests/test_fuzz.py) and a survey share.

Contract: a public callable of skipviz returns a result, or raises a `skipviz.errors.SkipvizError`
(a ValueError or TypeError) whose message names an argument it was given wrong; nothing the caller
passed, and no global random state, is changed unless the callable says so.

How a case is made: every public callable (from the modules' `__all__`) has a valid call, built
from VALID (by parameter name) and OVERRIDES (by callable). A case replaces one or two of its
arguments with an odd value: a value from ODD (any type), or a variation of the valid value
(the same number as a numpy or torch scalar, the tensor as float64 or on the meta device...).

    python tests/fuzz_contract.py          # every callable x argument x odd value, once: a survey
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import math
import random
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from fuzz_values import (  # noqa: E402
    ODD,
    parameters,
    valid_arguments,
    variations,
)
from torch import nn  # noqa: E402

from skipviz import data, exercises, models  # noqa: E402
from skipviz.claims import ClaimFailed  # noqa: E402
from skipviz.errors import SkipvizError  # noqa: E402
from skipviz.perturbation import SweepError  # noqa: E402

# Modules without a public API of their own, and why; every other module of skipviz must have an
# __all__, and all of it is fuzzed (tests/test_fuzz.py checks that the two lists cover skipviz).
INTERNAL = {}

# Modules inside the packages with a public API of their own (the packages' own __init__ lists
# what they re-export; their other modules are internal: the fast engine is reached through
# skipviz.landscape, the model families through skipviz.models).
NESTED = ["landscape.fast.rop"]


def public_modules() -> list[str]:
    """Every module of skipviz with a public API: the top-level ones that are not private
    (_name) and not INTERNAL, and NESTED."""
    import pkgutil

    import skipviz

    names = [m.name for m in pkgutil.iter_modules(skipviz.__path__) if not m.name.startswith("_")]
    return sorted([n for n in names if n not in INTERNAL] + NESTED)


MODULES = public_modules()

# Public names that are not called with arguments a user chooses, and why.
EXEMPT = {
    "models.SkipList": "made by model.skips; its item assignment is tested in test_bad_input",
    "models.SkipNet": "a base class to subclass, never built on its own",
    "training.History": "a record fit() fills and returns",
    "probes.LayerProbe": "a record probe() fills and returns",
    "perturbation.Perturbations": "a record block_perturbations() fills and returns",
    "landscape.HessianExtremes": "a record hessian_extremes() fills and returns",
    "landscape.Slice1D": "a record surface_1d() fills and returns",
    "landscape.Surface2D": "a record surface_2d() fills and returns (its center_loss is fuzzed there)",
    "landscape.CurvatureMap": "a record curvature_map() fills and returns",
    "landscape.Direction": "a type alias (a list of tensors)",
    "exercises.CheckResult": "a record the checks return",
    "claims.Margin": "a record the margin_* functions return",
    "claims.Tally": "the notebook's count of claims, made once",
    "claims.ClaimFailed": "an exception",
    "perturbation.SweepError": "an exception",
    "errors.SkipvizError": "an exception",
    "errors.SkipvizTypeError": "an exception",
    "errors.SkipvizValueError": "an exception",
}

# Exceptions that are a callable's documented answer, not a refusal of an argument.
ALLOWED = {"claims.claim": (ClaimFailed,), "perturbation.sweep": (SweepError,)}

# Arguments a callable says it changes.
MUTATES = {"training.fit": {"model"}, "models.init_weights": {"model"}, "claims.claim": set(),
           "plots.use_style": set()}

# Arguments whose messages call them by the value of another argument: check_direction(model,
# direction, name) says "dir_x[0] must ..." when name="dir_x".
NAMED_BY = {("landscape.check_direction", "direction"): "name"}

# Callables whose first argument is a student's answer: any value there gives a CheckResult.
ANSWER_CHECKS = {f"exercises.{n}": p for n, p in [
    ("check_glorot_factor", "value"), ("check_leaky_relu_factor", "value"),
    ("check_adam_step", "answer"), ("check_block", "block_class"), ("check_bn_block", "cls"),
    ("check_two_branch_paths", "fn"), ("check_tau_after_swaps", "fn"),
    ("check_filter_normalization", "fn"), ("check_power_iteration", "fn"),
    ("check_mean_abs_weight", "value"), ("check_quiet_layer", "fn"),
    ("check_scaled_distance", "fn"), ("check_stopping_rule", "answer"),
    ("check_residual_block", "cls"), ("check_skip_block", "cls"), ("check_highway_layer", "cls"),
    ("check_dense_block", "fn"), ("check_unet_level", "cls"), ("check_autocorrelation", "fn"),
    ("check_shrink_factor", "value"), ("check_causal_attention", "fn"), ("check_pre_ln_block", "fn")]}


def public_callables() -> dict[str, Callable]:
    """{'module.name': callable} for every callable in a public module's __all__ (exception
    classes are raised, not called)."""
    found = {}
    for m in MODULES:
        mod = importlib.import_module(f"skipviz.{m}")
        for name in mod.__all__:
            value = getattr(mod, name)
            if isinstance(value, type) and issubclass(value, BaseException):
                continue
            if callable(value) and not isinstance(value, (dict, tuple)):
                found[f"{m}.{name}"] = value
    return found



# --- snapshots: what must not change -----------------------------------------------------------

def snapshot(value: Any, depth: int = 0) -> Any:
    """A comparable record of everything a caller could notice changed in `value`."""
    if depth > 4:
        return None
    if isinstance(value, torch.Tensor):
        if value.device.type == "meta":
            return ("meta", value.dtype, tuple(value.shape), value.requires_grad)
        t = value.detach()
        return ("T", t.dtype, tuple(t.shape), value.requires_grad,
                t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"",
                None if value.grad is None else snapshot(value.grad, depth + 1))
    if isinstance(value, nn.Module):
        return ("M", tuple((n, snapshot(p, depth + 1)) for n, p in value.named_parameters()),
                tuple((n, snapshot(b, depth + 1)) for n, b in value.named_buffers()),
                tuple((n, m.training, len(m._forward_hooks), len(m._forward_pre_hooks),
                       len(m._backward_hooks), len(getattr(m, "_backward_pre_hooks", {})))
                      for n, m in value.named_modules()),
                tuple(getattr(value, "_skips", ()) or ()), type(value).forward)
    if isinstance(value, data.Dataset):
        return ("D", value.name, value.task, value.num_classes,
                tuple(snapshot(getattr(value, k), depth + 1)
                      for k in ("x_train", "y_train", "x_test", "y_test")))
    if isinstance(value, np.ndarray):
        return ("A", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(snapshot(v, depth + 1) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple((repr(k), snapshot(v, depth + 1)) for k, v in value.items()))
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if isinstance(value, (int, float, str, bool, type(None), np.generic)):
        return ("V", repr(value))
    return ("id", id(value))


def global_random_state() -> tuple:
    return (torch.get_rng_state().numpy().tobytes(), repr(np.random.get_state()[1][:4]),
            np.random.get_state()[2], random.getstate()[1][:4])


# --- one case ----------------------------------------------------------------------------------

@dataclass
class Failure:
    qualname: str
    replaced: dict[str, str]  # argument -> label of the odd value
    kind: str  # 'escaped', 'unnamed', 'changed', 'raised on an answer', 'refused a spelling'
    detail: str
    where: str  # the innermost frame, for grouping failures with one cause

    def key(self) -> tuple:
        return (self.qualname, self.kind, self.where if self.kind == "escaped" else self.detail[:60])

    def __str__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.replaced.items())
        return f"{self.qualname}({args}): {self.kind}: {self.detail} [{self.where}]"


SAME_VALUE_LABELS = {"np.int64 / np.float64 of it", "np.float32 of it", "0-d tensor of it", "np.bool_",
                     "0-d bool tensor", "as tuple"}


def run_case(qualname: str, fn: Callable, replaced: dict[str, tuple[str, Any]]) -> Failure | None:
    """Call fn with its valid arguments, `replaced` ({name: (label, value)}) swapped in, and check
    the contract. None when it holds."""
    kwargs = valid_arguments(qualname, fn)
    for name, (_, value) in replaced.items():
        kwargs[name] = value
    labels_ = {k: lab for k, (lab, _) in replaced.items()}
    before = {k: snapshot(v) for k, v in kwargs.items()}
    rng_before = global_random_state()
    answer = ANSWER_CHECKS.get(qualname)
    try:
        result = call(fn, kwargs)
    except SkipvizError as err:
        message = str(err)
        if answer in replaced and not any(_names(message, k) for k in replaced if k != answer):
            return Failure(qualname, labels_, "raised on an answer", message, _where(err))
        aliases = {k: [k] + [str(kwargs.get(NAMED_BY.get((qualname, k)), k))] for k in replaced}
        if not any(_names(message, a) for k in replaced for a in aliases[k]):
            return Failure(qualname, labels_, "unnamed", message, _where(err))
        if set(labels_.values()) <= SAME_VALUE_LABELS:
            return Failure(qualname, labels_, "refused a spelling", message, _where(err))
    except ALLOWED.get(qualname, ()):
        pass
    except Exception as err:  # the contract is broken: report where
        return Failure(qualname, labels_, "escaped", f"{type(err).__name__}: {str(err)[:160]}",
                       _where(err))
    else:
        if answer is not None and not isinstance(result, exercises.CheckResult):
            return Failure(qualname, labels_, "escaped", f"returned {type(result).__name__}", "")
    finally:
        plt.close("all")
    mutable = MUTATES.get(qualname, set())
    for k, v in kwargs.items():
        if k not in mutable and k in before and snapshot(v) != before[k]:
            return Failure(qualname, labels_, "changed", f"changed its argument {k}", "")
    if global_random_state() != rng_before and not draws_from_global_rng(fn, kwargs):
        return Failure(qualname, labels_, "changed", "changed the global random state", "")
    return None


def draws_from_global_rng(fn: Callable, kwargs: dict[str, Any]) -> bool:
    """Whether fn says it draws from torch's global RNG: a layer without a seed argument (as
    torch's own layers do), a model given seed=None, init_weights."""
    if fn is models.init_weights:
        return True
    if isinstance(fn, type) and issubclass(fn, nn.Module):
        params = inspect.signature(fn).parameters
        return "seed" not in params or kwargs.get("seed", params["seed"].default) is None
    return False


def call(fn: Callable, kwargs: dict[str, Any]) -> Any:
    """fn(**kwargs), with *args spread and context managers entered and left."""
    params = {p.name: p for p in parameters(fn)}
    args, kw = [], {}
    for name, value in kwargs.items():
        p = params[name]
        if p.kind == p.VAR_POSITIONAL:
            args += list(value) if isinstance(value, (list, tuple)) else [value]
        elif p.kind == p.POSITIONAL_ONLY or (p.kind == p.POSITIONAL_OR_KEYWORD and any(
                q.kind == q.VAR_POSITIONAL for q in params.values())):
            args.append(value)
        else:
            kw[name] = value
    result = fn(*args, **kw)
    if isinstance(result, contextlib._GeneratorContextManager):  # eval_mode, deleted, reordered
        with result as inner:
            return inner
    if qualname_of(fn) == "landscape.surface_2d":
        result.center_loss  # noqa: B018 - a property that must work for every result
    return result


def qualname_of(fn: Callable) -> str:
    return f"{fn.__module__.split('.')[-1]}.{fn.__name__}"


def _names(message: str, argument: str) -> bool:
    return argument in message


def _where(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return "?"
    f = frames[-1]
    return f"{f.filename.split('site-packages/')[-1].split('skipviz/')[-1]}:{f.lineno}"


def cases_for(qualname: str, fn: Callable) -> list[dict[str, tuple[str, Callable]]]:
    """Every single-argument replacement: each parameter x (ODD + variations of its valid value)."""
    valid = valid_arguments(qualname, fn)
    out = []
    for p in parameters(fn):
        base = valid.get(p.name, p.default)
        for label, factory in ODD + variations(base):
            out.append({p.name: (label, factory)})
    return out


def survey(names: list[str] | None = None, seconds: int = 20) -> list[Failure]:
    """Every case of every callable (or of `names`), each stopped after `seconds`."""
    import io
    import signal
    import time

    def stop(*_):
        raise TimeoutError(f"still running after {seconds} s")

    signal.signal(signal.SIGALRM, stop)
    found: dict[tuple, Failure] = {}
    for qualname, fn in public_callables().items():
        if qualname in EXEMPT or (names and qualname not in names):
            continue
        start = time.perf_counter()
        for case in cases_for(qualname, fn):
            replaced = {k: (lab, f()) for k, (lab, f) in case.items()}
            signal.alarm(seconds)
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    failure = run_case(qualname, fn, replaced)
            except TimeoutError as err:
                failure = Failure(qualname, {k: v[0] for k, v in replaced.items()}, "hung",
                                  str(err), "")
            finally:
                signal.alarm(0)
            if failure is not None and failure.key() not in found:
                found[failure.key()] = failure
                print(failure, flush=True)
        print(f"{qualname}: {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return list(found.values())


if __name__ == "__main__":
    import resource

    # A huge allocation fails as an exception here instead of waking the kernel's OOM killer.
    resource.setrlimit(resource.RLIMIT_AS, (12 * 2 ** 30, resource.RLIM_INFINITY))
    torch.set_num_threads(1)
    failures = survey(sys.argv[1:] or None)
    print(f"{len(failures)} distinct failures")
