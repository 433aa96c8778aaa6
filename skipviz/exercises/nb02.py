"""Checks for notebook 02 (V1 vs V2): a two-layer residual block of the kind asked for."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._validation import check_choice, check_int, check_seed
from .feedback import INPLACE_HINT, CheckResult, exercise_check

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


@exercise_check
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
                        cut = _gradient_problem(module, x, lambda v, c=compute, f1=f1, f2=f2: c(v, f1, f2))
                        if cut is not None:
                            return CheckResult(False, f"your block computes {formula} but {cut}")
                        return CheckResult(True, f"correct: your block computes {formula}.")
                    return CheckResult(False, f"your block computes {formula}, but {BLOCK_NAMES[block]} "
                                              f"computes {expected_formula}. {HINTS[name]}")
        err = (out - FORMULAS[block][1](x, *linears)).abs().max().item()
    return CheckResult(False, f"the output differs from {expected_formula} by up to {err:.3g} and "
                              f"matches none of the usual mistakes; print the shapes and values step by step.")


def _gradient_problem(module: nn.Module, x: torch.Tensor, reference) -> str | None:
    """None when backward() through `module` gives the reference's gradient with respect to x;
    else what is wrong. Only x's gradient is taken: the module's .grad fields stay as they were."""
    weight = torch.randn(x.shape, generator=torch.Generator().manual_seed(11))
    xs, xr = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    with torch.enable_grad():  # the caller compares outputs under no_grad
        out = module(xs.clone())  # not the leaf itself: `x += f(x)` in the block is allowed
        if not out.requires_grad:
            return ("its output does not depend on x through autograd: is a path cut by .detach(), .data "
                    "or torch.no_grad()?")
        try:
            (got,) = torch.autograd.grad((out * weight).sum(), xs, allow_unused=True)
        except RuntimeError as err:
            if "inplace" in str(err):
                return f"backward() through it fails: {INPLACE_HINT}"
            raise
        (want,) = torch.autograd.grad((reference(xr) * weight).sum(), xr)
    if got is None or not torch.allclose(got, want, atol=1e-5, rtol=1e-4):
        return ("backward() through it gives another gradient than the formula's: is a path cut by "
                ".detach(), .data or torch.no_grad()?")
    return None


# ---------------------------------------------------------------------------- exercises 1 and 2
# Blocks with batch normalization, checked by behaviour (feedback.compare_modules): the student's
# layers get seeded, nudged weights, the reference the same ones, and both run in train mode,
# through backward() and in eval mode.

BN_FORMULAS = {"v2": "σ(N₂(W₂ σ(N₁(W₁x)))) + x", "preact": "x + W₂ σ(N₂(W₁ σ(N₁(x))))"}
BN_MISTAKES = {
    "v2": {
        "no skip": "the skip is missing: the output is the branch alone; add the block's input x",
        "relu after sum": "the last ReLU comes after the addition: that is a V1 block; in V2 the skip "
                          "joins after the branch's ReLU",
        "no last relu": "the branch has no ReLU after N₂: V2 applies σ to the branch before adding x",
        "no first relu": "the ReLU between the two layers (after N₁) is missing",
        "bn after relu": "your BatchNorms come after their ReLUs, N(σ(Wx)); the block normalizes each "
                         "layer's output before its ReLU, σ(N(Wx))",
        "bn before linear": "each BatchNorm comes before its weight layer, W(N(·)); in this block it "
                            "normalizes the layer's output, σ(N(Wx))",
        "bn on sum": "N₂ normalizes the sum; it belongs inside the branch, so that x reaches the output "
                     "unchanged",
        "skip from first layer": "the skip adds W₁x; it carries the block's input x itself",
        "no bn": "the BatchNorms are never applied",
    },
    "preact": {
        "no skip": "the skip is missing: the output is the branch alone; add the block's input x",
        "skip from normalized": "the skip adds σ(N₁(x)), the normalized input; the skip must carry x "
                                "itself (keep the original x before you overwrite it)",
        "skip from bn": "the skip adds N₁(x); it must carry x itself, before any normalization",
        "relu after sum": "there is a ReLU after the addition: a pre-activation block applies nothing "
                          "after the sum",
        "post-activation order": "the layers are in the post-activation order W, N, σ; pre-activation "
                                 "puts N and σ before each weight layer",
        "bn after last linear": "N₂ comes after W₂; in a pre-activation block it normalizes W₁'s output, "
                                "before the second ReLU",
        "no first relu": "the first ReLU (after N₁) is missing",
        "no second relu": "the second ReLU (after N₂) is missing",
        "no bn": "the BatchNorms are never applied",
    },
}


class _BNBlock(nn.Module):
    """The two-layer blocks with batch norm as meant (`mistake` for the typical wrong ones). Each
    variant calls every layer exactly once, so that running statistics match a student's."""

    def __init__(self, width, block="v2", mistake=None):
        super().__init__()
        self.block, self.mistake = block, mistake
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)
        self.bn1, self.bn2 = nn.BatchNorm1d(width), nn.BatchNorm1d(width)

    def forward(self, x):
        m = self.mistake
        fc1, fc2 = self.fc1, self.fc2
        bn1, bn2 = (nn.Identity(), nn.Identity()) if m == "no bn" else (self.bn1, self.bn2)
        if self.block == "v2":
            if m == "bn after relu":
                return bn2(relu(fc2(bn1(relu(fc1(x)))))) + x
            if m == "bn before linear":
                return relu(fc2(bn2(relu(fc1(bn1(x)))))) + x
            if m == "skip from first layer":
                a = fc1(x)
                return relu(bn2(fc2(relu(bn1(a))))) + a
            h = bn1(fc1(x)) if m == "no first relu" else relu(bn1(fc1(x)))
            if m == "bn on sum":
                return bn2(relu(fc2(h)) + x)
            out = bn2(fc2(h))
            if m == "no skip":
                return relu(out)
            if m == "relu after sum":
                return relu(out + x)
            if m == "no last relu":
                return out + x
            return relu(out) + x
        if m == "post-activation order":
            return x + relu(bn2(fc2(relu(bn1(fc1(x))))))
        if m == "bn after last linear":
            return x + bn2(fc2(relu(fc1(relu(bn1(x))))))
        n = bn1(x)
        a = n if m == "no first relu" else relu(n)
        h = fc1(a)
        h = bn2(h) if m == "no second relu" else relu(bn2(h))
        out = fc2(h)
        if m == "no skip":
            return out
        if m == "skip from normalized":
            return a + out
        if m == "skip from bn":
            return n + out
        if m == "relu after sum":
            return relu(x + out)
        return x + out


BLOCK_ALIASES = {"v2": "v2", "preact": "preact", "pre-act": "preact", "pre-activation": "preact"}


@exercise_check
def check_bn_block(cls: object, block: str = "v2", width: int = 8) -> CheckResult:
    """Your class `cls(width)`, a two-layer block with batch normalization (notebook 02,
    exercises 1-2): block 'v2' is σ(N₂(W₂ σ(N₁(W₁x)))) + x, block 'preact' is
    x + W₂ σ(N₂(W₁ σ(N₁(x)))), with nn.Linear(width, width) layers and nn.BatchNorm1d(width)
    normalizations N. Compared with the reference on the same weights on a batch (32, width), in
    train mode, through backward() and in eval mode; each typical mistake is named."""
    from .modules import build, compare_modules, first_mistake, nudged

    if isinstance(block, str):
        block = BLOCK_ALIASES.get(block.strip().lower(), block)
    block = check_choice("block", block, tuple(BN_FORMULAS))
    width = check_int("width", width, minimum=2)
    name = getattr(cls, "__name__", None) or (type(cls).__name__ if isinstance(cls, nn.Module) else "your class")
    student, problem = build(cls, name, width)
    if problem is not None:
        return problem
    linears = [m for m in student.modules() if isinstance(m, nn.Linear)]
    norms = [m for m in student.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if any(m.bias is None for m in linears):
        return CheckResult(False, "a Linear layer has bias=False: this exercise keeps the biases, "
                                  f"nn.Linear({width}, {width})")
    if len(linears) == 1 or len(norms) == 1:
        kind = "nn.Linear" if len(linears) == 1 else "nn.BatchNorm1d"
        return CheckResult(False, f"{name} holds one {kind}, used twice: each layer needs its own (two of them)")
    student = nudged(student)
    x = torch.randn(32, width, generator=torch.Generator().manual_seed(11))
    differs, _, problem = compare_modules(student, _BNBlock(width, block), [x], name)
    if problem is not None:
        return problem
    if differs is None:
        other = width + 3   # a block written for one width only must not pass
        wider, problem = build(cls, name, other)
        if problem is None:
            x = torch.randn(32, other, generator=torch.Generator().manual_seed(12))
            differs, _, problem = compare_modules(nudged(wider), _BNBlock(other, block), [x], name)
        if problem is not None or differs is not None:
            return CheckResult(False, f"your block is right at width {width} but not at width {other}: build its "
                                      "layers from the width argument, not from a fixed number")
        return CheckResult(True, f"correct: your block computes {BN_FORMULAS[block]}; same outputs and "
                                 "gradients as the reference, in train and eval mode.")
    mistakes = {message: (lambda m=m: _BNBlock(width, block, m)) for m, message in BN_MISTAKES[block].items()}
    known = first_mistake(student, mistakes, [x], name)
    if known:
        return CheckResult(False, known)
    if differs.startswith("its layers do not pair"):
        return CheckResult(False, f"{name} should hold two nn.Linear({width}, {width}) and two "
                                  f"nn.BatchNorm1d({width}), each used once in forward; its layers do not "
                                  "match these")
    if "though" in differs:   # the forward pass in train mode is right: the hint says what else differs
        return CheckResult(False, f"{differs} (compared with {BN_FORMULAS[block]} on the same weights)")
    return CheckResult(False, f"{differs} (compared with {BN_FORMULAS[block]} on the same weights); it "
                              "matches none of the usual mistakes: check the order N, σ, W step by step")
