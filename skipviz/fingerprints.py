"""What a cache key is made of (`training.fit` and the landscapes' results): a hash of
everything that determines a result, so that a changed model never gets a stale one.

- `code_fingerprint`: the bytecode of the model's classes and the helpers they call;
- `behaviour_fingerprint`: what the model computes now, on a fixed batch (this catches what the
  code cannot: a `forward` that reads a global changed since, a monkey-patched submodule);
- `cache_key`: both, with the configuration, skips, weights, data, settings and torch version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import types

import torch
from torch import nn

from . import _cache
from ._validation import check_model, show
from .data import Dataset
from .errors import SkipvizTypeError

__all__ = ["CACHE_FORMAT", "PROBE_EXAMPLES", "behaviour_fingerprint", "cache_key", "code_fingerprint"]

CACHE_FORMAT = 4  # raised whenever a cached file's key or layout changes meaning


def cache_key(model: nn.Module, dataset: Dataset, settings: dict) -> str:
    """A hex digest of everything that determines the trained weights: the model's code (see
    `code_fingerprint`) and what it computes (see `behaviour_fingerprint`: this catches a forward
    that reads a global changed since, which the code alone cannot), configuration, skips, weights
    and which of them train; the data; the settings; and the torch version."""
    from .training import check_fits  # training imports this module

    check_fits(model, dataset)
    if not isinstance(settings, dict):
        raise SkipvizTypeError(f"settings must be a dict of the run's arguments; got {show(settings)}")
    h = hashlib.sha256()
    # The constructor's config names what the weights alone cannot (v1 and v2 blocks share shapes).
    config = getattr(model, "config", None)
    config = sorted(dataclasses.asdict(config).items()) if dataclasses.is_dataclass(config) else repr(config)
    h.update(f"format={CACHE_FORMAT}|torch={torch.__version__}|{type(model).__name__}|{config}|"
             f"{model!r}|{sorted(settings.items())}".encode())
    h.update(str(list(getattr(model, "skips", []))).encode())
    h.update(code_fingerprint(model).encode())
    h.update(_behaviour(model, dataset).encode())
    h.update(str([(n, p.requires_grad) for n, p in model.named_parameters()]).encode())
    h.update(dataset.fingerprint().encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(_cache.checksum(t).encode())
    return h.hexdigest()[:32]


PROBE_EXAMPLES = 16  # the fixed batch on which behaviour_fingerprint runs the model
_DIGITS = 4  # relative precision of the fingerprint: far above float rounding, far below a change


def behaviour_fingerprint(model: nn.Module, dataset: Dataset) -> str:
    """A hash of what `model` computes now: its outputs on the first PROBE_EXAMPLES training
    examples, and the gradient of the loss there with respect to every trainable weight, each
    tensor rounded to 4 digits relative to its largest entry (so rounding noise does not change
    it and any real change in the computation does).

    Run in eval mode with the global RNG forked and seeded (dropout and the like give the same
    draw every time); the model, its .grad fields and the caller's random state are untouched.
    """
    from .training import check_fits  # training imports this module

    check_fits(model, dataset)
    return _behaviour(model, dataset)


def _behaviour(model: nn.Module, dataset: Dataset) -> str:
    """`behaviour_fingerprint` of arguments already checked (cache_key checks them first)."""
    from .training import eval_mode, loss_for_targets

    x, y = dataset.x_train[:PROBE_EXAMPLES], dataset.y_train[:PROBE_EXAMPLES]
    params = [p for p in model.parameters() if p.requires_grad]
    h = hashlib.sha256()
    with torch.random.fork_rng(devices=[]), eval_mode(model), torch.enable_grad():
        torch.manual_seed(0)
        out = model(x)
        grads = torch.autograd.grad(loss_for_targets(out, y), params, allow_unused=True) if params else []
    for t in (out, *grads):
        h.update(_rounded(t))
    return h.hexdigest()[:16]


def _rounded(t: torch.Tensor | None) -> bytes:
    """t's entries as integers on a grid of 10^-_DIGITS of its largest |entry|, and that scale."""
    if t is None:
        return b"unused"
    t = t.detach().double()
    scale = t.abs().max().item() if t.numel() else 0.0
    if not math.isfinite(scale) or scale == 0:
        return f"{tuple(t.shape)}:{scale}".encode()
    q = torch.round(t / scale * 10 ** _DIGITS).to(torch.int64)
    return f"{tuple(t.shape)}:{scale:.{_DIGITS}g}:".encode() + q.numpy().tobytes()


def code_fingerprint(model: nn.Module) -> str:
    """A hash of the code that runs in `model`: the bytecode and constants of every method of
    the classes of the model and of its submodules (with their base classes, up to torch's
    own), and of the plain functions those methods call by a global name. Editing a `forward`
    in a notebook cell and re-running the cell changes it; torch's classes are covered by the
    torch version instead."""
    check_model("model", model)
    h = hashlib.sha256()
    seen: set[int] = set()

    def feed_code(code: types.CodeType) -> None:
        h.update(code.co_code)
        h.update(repr(code.co_names).encode() + repr(code.co_varnames).encode())
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                feed_code(const)
            else:
                h.update(repr(const).encode())

    def feed_function(fn: types.FunctionType) -> None:
        if id(fn) in seen or _is_torch(fn.__module__):
            return
        seen.add(id(fn))
        feed_code(fn.__code__)
        h.update(repr(fn.__defaults__).encode())
        for name in fn.__code__.co_names:  # helpers called by a global name, one level at a time
            target = fn.__globals__.get(name)
            if isinstance(target, types.FunctionType):
                feed_function(target)

    for cls in sorted({type(m) for m in model.modules()}, key=lambda c: c.__qualname__):
        for klass in cls.__mro__:
            if klass is object or _is_torch(klass.__module__) or id(klass) in seen:
                continue
            seen.add(id(klass))
            h.update(klass.__qualname__.encode())
            for attr, value in sorted(vars(klass).items()):
                fn = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
                if isinstance(fn, types.FunctionType):
                    h.update(attr.encode())
                    feed_function(fn)
    return h.hexdigest()


def _is_torch(module: str | None) -> bool:
    return module is not None and (module == "torch" or module.startswith("torch."))
