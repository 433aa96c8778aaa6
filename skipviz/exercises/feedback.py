"""The feedback core every exercise check shares.

A check never reads a student's source: it calls the answer and compares what it does with a
reference. These helpers turn every way that can go wrong into one line of feedback:

- `CheckResult`: the verdict (`ok`) and its one-line message; shown as ✅/❌ in a notebook.
- `as_number` / `check_number`: a number answer (Python, numpy or torch scalar, 0-d tensor),
  right within a tolerance, or the named mistake it matches.
- `call`: calls a student's function; an exception becomes one line naming the call.
- `build` and `compare_modules`: a student's nn.Module against a reference *with the same
  weights*, in train and eval mode and through `backward()`; `first_mistake` names the typical
  mistake whose reference behaves like the student's module.

Every helper leaves the global random state alone (inputs come from local generators; modules
are built inside `torch.random.fork_rng`).
"""

from __future__ import annotations

import copy
import decimal
import functools
import html
import itertools
import math
import numbers
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

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


# ---------------------------------------------------------------------------- modules


def build(cls: object, name: str, *args, seed: int = 0, **kwargs) -> tuple[nn.Module | None, CheckResult | None]:
    """(cls(*args, **kwargs), None), built with the torch seed `seed` and the global random state
    restored; or (None, the verdict)."""
    if cls is None or cls is Ellipsis:
        return None, not_done(name)
    if isinstance(cls, nn.Module):
        return None, CheckResult(False, f"pass your class {name} itself, not an instance of it")
    if not isinstance(cls, type) or not issubclass(cls, nn.Module):
        return None, CheckResult(False, f"pass your class {name} (a subclass of nn.Module); got "
                                        f"{type(cls).__name__} {cls!r:.40}")
    shown = ", ".join([repr(a) for a in args] + [f"{k}=..." for k in kwargs])
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = cls(*args, **kwargs)
    except NotImplementedError:
        return None, not_done(name)
    except Exception as err:
        return None, CheckResult(False, f"{name}({shown}) raised {_explain(err)}")
    for sub in module.modules():   # layers PyTorch cannot see: no weights for the optimizer, none moved by .to()
        for attr, value in vars(sub).items():
            held = value.values() if isinstance(value, dict) else value if isinstance(value, (list, tuple)) else ()
            if not attr.startswith("_") and any(isinstance(v, nn.Module) for v in held):
                return None, CheckResult(False, f"{name}.{attr} keeps layers in a plain Python "
                                                f"{type(value).__name__}, so PyTorch does not register them "
                                                "(their weights are not the block's parameters): use "
                                                "nn.ModuleList / nn.ModuleDict, or one attribute per layer")
    return module, None


def _leaf_order(module: nn.Module, inputs: Sequence[torch.Tensor], skip: set[int]) -> list[int] | None:
    """Positions, in `module.modules()`, of the submodules holding weights or buffers (but those
    at the positions in `skip`), in the order a forward pass first calls them (found on a copy,
    so `module` is not touched); None when the forward pass raises."""
    twin = copy.deepcopy(module).double()
    position = {id(m): i for i, m in enumerate(twin.modules())}
    order: list[int] = []
    holders = [m for m in twin.modules() if position[id(m)] not in skip
               and (list(m.parameters(recurse=False)) or list(m.buffers(recurse=False)))]
    hooks = [m.register_forward_pre_hook(
        lambda m, _: order.append(position[id(m)]) if position[id(m)] not in order else None)
        for m in holders]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            twin(*[x.detach().double() for x in inputs])
    except Exception:
        return None
    finally:
        for h in hooks:
            h.remove()
    return order


def _signature(m: nn.Module) -> tuple:
    return (type(m), tuple((k, tuple(v.shape)) for k, v in m.state_dict().items()))


def pairings(source: nn.Module, target: nn.Module, inputs: Sequence[torch.Tensor],
             shared: Sequence[nn.Module] = (), limit: int = 24) -> list[list[tuple[nn.Module, nn.Module]]]:
    """Ways to pair the weight-holding submodules of `source` with those of `target`: same type
    and shapes, in the order a forward pass first calls them, and within a group of alike layers
    (two BatchNorms of one width) in any order (names and definition order never matter).
    Submodules of `shared` (given to both, e.g. a downsampler) are left out. [] when they do not
    pair up."""
    ids = {id(m) for s in shared for m in s.modules()}
    skip_s = {i for i, m in enumerate(source.modules()) if id(m) in ids}
    skip_t = {i for i, m in enumerate(target.modules()) if id(m) in ids}
    a, b = _leaf_order(source, inputs, skip_s), _leaf_order(target, inputs, skip_t)
    if a is None or b is None or len(a) != len(b):
        return []
    sources, targets = list(source.modules()), list(target.modules())
    a, b = [sources[i] for i in a], [targets[i] for i in b]
    groups_a: dict[tuple, list[nn.Module]] = {}
    groups_b: dict[tuple, list[nn.Module]] = {}
    for m in a:
        groups_a.setdefault(_signature(m), []).append(m)
    for m in b:
        groups_b.setdefault(_signature(m), []).append(m)
    if {k: len(v) for k, v in groups_a.items()} != {k: len(v) for k, v in groups_b.items()}:
        return []
    options = [[list(zip(group, perm)) for perm in itertools.permutations(groups_b[key])]
               for key, group in groups_a.items()]
    return [sum(choice, []) for choice in itertools.islice(itertools.product(*options), limit)]


def load_pairing(pairing: list[tuple[nn.Module, nn.Module]]) -> None:
    """Copy each source submodule's weights and buffers into its target."""
    with torch.no_grad():
        for s, t in pairing:
            t.load_state_dict({k: v.to(t.state_dict()[k].dtype) for k, v in s.state_dict().items()})


def nudged(module: nn.Module, shared: Sequence[nn.Module] = (), seed: int = 3) -> nn.Module:
    """A copy of `module` whose weights are moved off their initial values by a seeded random
    amount (BatchNorm's 1 and 0 included), so that no two layers agree by accident; the
    submodules of `shared` keep theirs."""
    ids = {id(p) for s in shared for p in s.parameters()}
    keep = [i for i, p in enumerate(module.parameters()) if id(p) in ids]
    twin = copy.deepcopy(module, memo={id(s): s for s in shared})  # the shared modules stay themselves
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i, p in enumerate(twin.parameters()):
            if i not in keep and p.is_floating_point():
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return twin


@dataclass
class Behaviour:
    """What a module did on the check's inputs: train-mode output, gradients, eval-mode output."""

    train: torch.Tensor
    grad_input: torch.Tensor | None
    eval: torch.Tensor


def behaviour(module: nn.Module, inputs: Sequence[torch.Tensor], name: str, dtype: torch.dtype = torch.float64
              ) -> tuple[Behaviour | None, CheckResult | None]:
    """Run a copy of `module` on copies of `inputs`, in `dtype`: a training-mode forward and
    `backward()` (a fixed random weighting of the output), then an eval-mode forward.
    (Behaviour, None), or (None, one line saying which call failed and how)."""
    module = copy.deepcopy(module)
    xs = [x.detach().clone().to(dtype).requires_grad_(True) for x in inputs]
    module.to(dtype)
    before = {k: p.detach().clone() for k, p in module.named_parameters()}
    shapes = ", ".join(str(tuple(x.shape)) for x in xs)
    try:
        module.train()
        with torch.random.fork_rng(devices=[]):
            out = module(*xs)
    except NotImplementedError:
        return None, not_done(name)
    except Exception as err:
        return None, CheckResult(False, f"{name}.forward on inputs of shape {shapes} (train mode) raised "
                                        f"{_explain(err)}")
    if isinstance(out, (list, tuple)) and out and all(isinstance(o, torch.Tensor) for o in out):
        return None, CheckResult(False, f"{name} returned a {type(out).__name__} of tensors; it must return one "
                                        "tensor (concatenate them with torch.cat)")
    if not isinstance(out, torch.Tensor):
        return None, CheckResult(False, f"{name} must return a tensor; it returned {type(out).__name__}")
    changed = [k for k, p in module.named_parameters() if not torch.equal(p.detach(), before[k])]
    if changed:
        return None, CheckResult(False, f"{name}.forward changes its own parameters ({', '.join(changed[:3])}): "
                                        "set starting values once, in __init__; forward only reads them")
    if out.is_floating_point() and not torch.isfinite(out).all():
        return None, CheckResult(False, f"{name}.forward returned NaN or inf values on a random input "
                                        f"of shape {shapes}")
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype)
    if out.requires_grad:
        try:
            (out * weight).sum().backward()
        except Exception as err:
            return None, CheckResult(False, f"backward() through {name} failed: {_explain(err)}")
    grad = xs[0].grad
    try:
        module.eval()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            out_eval = module(*[x.detach() for x in xs])
    except Exception as err:
        return None, CheckResult(False, f"{name}.forward in eval mode raised {_explain(err)}")
    return Behaviour(out.detach(), grad, out_eval.detach() if isinstance(out_eval, torch.Tensor) else None), None


def same(a: Behaviour, b: Behaviour, tol: float = 1e-6) -> str | None:
    """None when two behaviours agree; else which part differs first."""
    def close(x, y):
        if x is None or y is None:
            return x is None and y is None
        return x.shape == y.shape and torch.allclose(x, y, rtol=tol, atol=tol)
    if a.train.shape != b.train.shape:
        return f"its output has shape {tuple(a.train.shape)} where {tuple(b.train.shape)} is expected"
    if not close(a.train, b.train):
        return "its output in train mode differs"
    if not close(a.grad_input, b.grad_input):
        return ("its gradient with respect to the input differs, though its output agrees: is a path cut "
                "by .detach(), .data or torch.no_grad()?")
    if not close(a.eval, b.eval):
        return ("its output in eval mode differs, though train mode agrees: check each BatchNorm's "
                "settings (momentum, eps) and that each is called once per forward")
    return None


def compare_modules(student: nn.Module, reference: nn.Module, inputs: Sequence[torch.Tensor],
                    name: str, shared: Sequence[nn.Module] = ()
                    ) -> tuple[str | None, list[tuple[nn.Module, nn.Module]] | None, CheckResult | None]:
    """Compare a student's module with `reference` given the student's weights, on `inputs`:
    training-mode output, backward(), eval-mode output. Returns (what differs or None, the
    pairing of student to reference layers that agreed, None), or (None, None, verdict) when
    the student's module fails to run. `shared` modules were handed to both constructors."""
    dtype, tol = torch.float64, 1e-6
    student_b, problem = behaviour(student, inputs, name)
    if problem is not None and any(w in problem.message for w in ("dtype", "scalar type", "Double", "Float")):
        # code written for float32 (a preallocated torch.empty, say) is right too: compare in float32
        dtype, tol = torch.float32, 1e-4
        student_b, problem = behaviour(student, inputs, name, dtype)
    if problem is not None:
        return None, None, problem
    candidates = pairings(student, reference, inputs, shared)
    if not candidates:
        return "its layers do not pair with the reference's (other layers, or other shapes)", None, None
    # Of the pairings that fail, report the one that agrees longest (train output, then the
    # gradient, then eval mode): its difference is the one that names the mistake.
    order = ["its output has shape", "its output in train mode", "its gradient", "its output in eval mode"]
    closest = None
    for pairing in candidates:
        load_pairing(pairing)
        reference_b, problem = behaviour(reference, inputs, "the reference", dtype)
        if problem is not None:  # pragma: no cover - the reference always runs
            raise RuntimeError(problem.message)
        differs = same(student_b, reference_b, tol)
        if differs is None:
            return None, pairing, None
        rank = next(i for i, start in enumerate(order) if differs.startswith(start))
        if closest is None or rank > closest[0]:
            closest = (rank, differs)
    return closest[1], None, None


def first_mistake(student: nn.Module, mistakes: dict[str, Callable[[], nn.Module]],
                  inputs: Sequence[torch.Tensor], name: str, shared: Sequence[nn.Module] = ()) -> str | None:
    """The message of the first typical mistake whose reference, given the student's weights,
    behaves exactly like the student's module; None when none does."""
    for message, make in mistakes.items():
        with torch.random.fork_rng(devices=[]):
            wrong = make()
        differs, _, problem = compare_modules(student, wrong, inputs, name, shared)
        if problem is None and differs is None:
            return message
    return None
