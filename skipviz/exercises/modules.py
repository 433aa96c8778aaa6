"""Checking a student's nn.Module by what it does (the part of the feedback core for classes):
`build` makes it with a fixed seed, `pairings` / `load_pairing` give it the reference's weights
layer by layer, `compare_modules` runs both in train and eval mode and through `backward()`,
and `first_mistake` names the typical mistake whose reference behaves like it. Every helper
leaves the global random state alone.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .feedback import CheckResult, _explain, not_done


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


def _leaf_order(module: nn.Module, inputs: Sequence[torch.Tensor], skip: set[int],
                dtype: torch.dtype = torch.float64) -> list[int] | None:
    """Positions, in `module.modules()`, of the submodules holding weights or buffers (but those
    at the positions in `skip`), in the order a forward pass first calls them (found on a copy in
    `dtype`, so `module` is not touched); None when the forward pass raises."""
    twin = copy.deepcopy(module).to(dtype)
    position = {id(m): i for i, m in enumerate(twin.modules())}
    order: list[int] = []
    holders = [m for m in twin.modules() if position[id(m)] not in skip
               and (list(m.parameters(recurse=False)) or list(m.buffers(recurse=False)))]
    hooks = [m.register_forward_pre_hook(
        lambda m, _: order.append(position[id(m)]) if position[id(m)] not in order else None)
        for m in holders]
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            twin(*[x.detach().to(dtype) for x in inputs])
    except Exception:
        return None
    finally:
        for h in hooks:
            h.remove()
    return order


def _signature(m: nn.Module) -> tuple:
    return (type(m), tuple((k, tuple(v.shape)) for k, v in m.state_dict().items()))


def pairings(source: nn.Module, target: nn.Module, inputs: Sequence[torch.Tensor],
             shared: Sequence[nn.Module] = (), limit: int = 24, dtype: torch.dtype = torch.float64
             ) -> list[list[tuple[nn.Module, nn.Module]]]:
    """Ways to pair the weight-holding submodules of `source` with those of `target`: same type
    and shapes, in the order a forward pass first calls them, and within a group of alike layers
    (two BatchNorms of one width) in any order (names and definition order never matter).
    Submodules of `shared` (given to both, e.g. a downsampler) are left out. [] when they do not
    pair up."""
    ids = {id(m) for s in shared for m in s.modules()}
    skip_s = {i for i, m in enumerate(source.modules()) if id(m) in ids}
    skip_t = {i for i, m in enumerate(target.modules()) if id(m) in ids}
    a, b = _leaf_order(source, inputs, skip_s, dtype), _leaf_order(target, inputs, skip_t, dtype)
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
        return x.shape == y.shape and torch.allclose(x.double(), y.double(), rtol=tol, atol=tol)
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
    computes_in_float32 = problem is None and student_b.train.dtype != torch.float64
    if computes_in_float32 or (problem is not None and any(
            w in problem.message for w in ("dtype", "scalar type", "Double", "Float"))):
        # code written for float32 (a preallocated torch.empty, say) is right too: compare in float32
        dtype, tol = torch.float32, 1e-4
        student_b, problem = behaviour(student, inputs, name, dtype)
    if problem is not None:
        return None, None, problem
    candidates = pairings(student, reference, inputs, shared, dtype=dtype)
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
