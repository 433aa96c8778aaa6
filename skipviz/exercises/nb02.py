"""Checks for notebook 02 (V1 vs V2): a two-layer residual block of the kind asked for."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._validation import check_choice, check_int, check_seed
from .feedback import CheckResult

relu = torch.relu
# What a two-layer block might compute, given its two Linear layers f1, f2 (applied in order).
FORMULAS: dict[str, tuple[str, Callable]] = {
    "v1": ("σ(W₂ σ(W₁x) + x)", lambda x, f1, f2: relu(f2(relu(f1(x))) + x)),
    "v2": ("σ(W₂ σ(W₁x)) + x", lambda x, f1, f2: relu(f2(relu(f1(x)))) + x),
    "preact": ("x + W₂ σ(W₁ σ(x))", lambda x, f1, f2: x + f2(relu(f1(relu(x))))),
    "linear end": ("W₂ σ(W₁x) + x", lambda x, f1, f2: f2(relu(f1(x))) + x),
    "no skip": ("σ(W₂ σ(W₁x))", lambda x, f1, f2: relu(f2(relu(f1(x))))),
    "no skip, linear end": ("W₂ σ(W₁x)", lambda x, f1, f2: f2(relu(f1(x)))),
}
HINTS = {
    "no skip": "The skip is missing: the output is the branch alone. Add the block's input x.",
    "no skip, linear end": "The skip is missing: the output is the branch alone. Add the block's input x.",
    "v1": "The ReLU comes after the addition, so the skip joins before the last nonlinearity.",
    "linear end": "There is no ReLU after the second layer.",
    "preact": "The ReLUs come before each layer (pre-activation), not after.",
    "v2": "The ReLU is applied to the branch, and the skip is added after it.",
}
BLOCK_NAMES = {"v1": "a V1 block", "v2": "a V2 block", "preact": "a pre-activation block"}


def check_block(block_class: type, block: str = "v2", width: int = 16, seed: int = 0) -> CheckResult:
    """Check that `block_class(width)` is a two-layer residual block of the given kind.

    The student's two nn.Linear(width, width) layers are used in both possible orders; the
    output on a random batch (64, width) is compared with every formula in FORMULAS, so a wrong
    block is named ("the skip is missing", "the ReLU comes after the addition", ...).
    block: 'v1', 'v2' or 'preact'.
    """
    block = check_choice("block", block, ("v1", "v2", "preact"))
    width = check_int("width", width, minimum=2)
    seed = check_seed("seed", seed)
    expected_formula = FORMULAS[block][0]
    if isinstance(block_class, nn.Module):  # an instance: check it as it is
        module, label = block_class, type(block_class).__name__
        linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
        if linears and linears[0].weight.shape[0] == linears[0].weight.shape[1]:
            width = linears[0].weight.shape[0]
    elif callable(block_class):  # a class, or a function that builds the block from its width
        label = getattr(block_class, "__name__", type(block_class).__name__)
        if isinstance(block_class, type) and not issubclass(block_class, nn.Module):
            return CheckResult(False, f"{label} must be a subclass of nn.Module (class {label}(nn.Module): ...)")
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                module = block_class(width)
        except NotImplementedError:
            return CheckResult(False, f"not done yet: {label} still raises NotImplementedError")
        except Exception as err:
            return CheckResult(False, f"{label}({width}) raised {type(err).__name__}: {err}")
        if not isinstance(module, nn.Module):
            return CheckResult(False, f"{label}({width}) must give an nn.Module; it gave "
                                      f"{type(module).__name__}")
    else:
        return CheckResult(False, f"pass your block's class (e.g. check_block(MyV2Block)); got "
                                  f"{type(block_class).__name__} {block_class!r:.60}")
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    shapes = [tuple(m.weight.shape) for m in linears]
    if shapes != [(width, width)] * 2:
        return CheckResult(False, f"{BLOCK_NAMES[block]} has exactly two nn.Linear(width, width) "
                                  f"layers; {label}({width}) has weights of shapes {shapes}")
    x = torch.randn(64, width, generator=torch.Generator().manual_seed(seed + 1))
    try:
        with torch.no_grad():
            out = module(x.clone())  # a copy: `x += f(x)` in the block must not change our x
    except NotImplementedError:
        return CheckResult(False, f"not done yet: {label}.forward still raises NotImplementedError")
    except Exception as err:
        return CheckResult(False, f"calling the block on a batch of shape {tuple(x.shape)} raised "
                                  f"{type(err).__name__}: {err}")
    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        return CheckResult(False, f"the output has shape {got}; a residual block must return the "
                                  f"shape of its input, {tuple(x.shape)}")
    with torch.no_grad():
        for name, (formula, compute) in FORMULAS.items():
            for f1, f2 in (linears, linears[::-1]):
                if torch.allclose(out, compute(x, f1, f2), atol=1e-5, rtol=1e-4):
                    if name == block:
                        return CheckResult(True, f"correct: your block computes {formula}.")
                    return CheckResult(False, f"your block computes {formula}, but {BLOCK_NAMES[block]} "
                                              f"computes {expected_formula}. {HINTS[name]}")
        err = (out - FORMULAS[block][1](x, *linears)).abs().max().item()
    return CheckResult(False, f"the output differs from {expected_formula} by up to {err:.3g} and "
                              f"matches none of the usual mistakes; print the shapes and values step by step.")
