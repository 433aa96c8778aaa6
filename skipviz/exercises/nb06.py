"""Checks for notebook 06 (perturbation from identity): the scaled distance of a section run
block by block (exercise 1), the stopping rule by hand (exercise 2)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .._validation import check_number as _check_arg
from .._validation import check_seed
from .feedback import CheckResult, as_number, call_number, exercise_check

# The last: a section whose blocks do nothing (d_scaled = 0) still holds one block.
STOPPING_CASES = [(2.35, 0.05), (2.1, 0.3), (2.36, 0.05), (0.3, 0.1), (4.11, 0.1), (0.05, 0.1), (0.0, 0.1)]


@exercise_check
def check_stopping_rule(answer: object, scaled_distance: float = 2.35, eps: float = 0.05) -> CheckResult:
    """Your stopping rule (notebook 06, exercise 2): a function blocks_for(d_scaled, eps) -> Hauser's
    L = ceil(d_scaled / eps), checked on seven cases — a quotient that is a whole number (where
    floats show a tiny excess), fractional ones, one below a single block and d_scaled = 0; or one whole number,
    the blocks for `scaled_distance` and `eps`."""
    from ..perturbation import stopping_rule

    if callable(answer):
        for d, e in STOPPING_CASES:
            value, problem = call_number(answer, "blocks_for", f"blocks_for({d:g}, {e:g})", d, e)
            if problem is not None:
                return problem
            verdict = _stopping_verdict(value, d, e, stopping_rule(d, e), f"blocks_for({d:g}, {e:g})")
            if not verdict.ok:
                return verdict
        return CheckResult(True, "correct: the rule's answer in every case tested, whole-number quotients included.")
    scaled_distance = _check_arg("scaled_distance", scaled_distance, 0, strict=True)
    eps = _check_arg("eps", eps, 0, strict=True)
    number, problem = as_number(answer, "blocks_needed")
    if problem is not None:
        return problem
    return _stopping_verdict(number, scaled_distance, eps, stopping_rule(scaled_distance, eps), "blocks_needed")


def _stopping_verdict(number: float, d: float, eps: float, right: int, name: str) -> CheckResult:
    if number != int(number):
        return CheckResult(False, f"{name} must be a whole number of blocks; got {number!r}")
    number = int(number)
    if number == right:
        return CheckResult(True, f"correct: {number} blocks.")
    if number < 1:
        return CheckResult(False, f"{name} = {number}: a section holds at least one block")
    exact = math.isclose(d / eps, round(d / eps))
    if number == right + 1 and exact:
        return CheckResult(False, f"{name} is too many: d / eps is a whole number here, and ceil leaves a whole "
                                  "number as it is (in floats the quotient may show a tiny excess: round it "
                                  "before ceil)")
    if number == right - 1 and not exact:
        return CheckResult(False, f"{name} is too few: round up (ceil) — a fraction of a block still needs a "
                                  "whole block")
    if number in (math.floor(d * eps), math.ceil(d * eps)):
        return CheckResult(False, f"{name}: you multiplied by eps; the rule divides, d_scaled / eps")
    word = "too many" if number > right else "too few"
    return CheckResult(False, f"{name} is {word}: L = ceil(d_scaled / eps)")


class _Block(nn.Module):
    """A residual block x + 0.2 tanh(W x) on (batch, 2, 6) states, for the check."""

    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(12, 12, generator=generator) / 12 ** 0.5)

    def forward(self, x):
        return x + 0.2 * torch.tanh(x.flatten(1) @ self.weight.T).view_as(x)


def _section(g: torch.Generator) -> tuple[nn.ModuleList, torch.Tensor]:
    """4 blocks and a batch (5, 2, 6) whose examples differ in size (1x to 5x)."""
    blocks = nn.ModuleList(_Block(g) for _ in range(4))
    x = torch.randn(5, 2, 6, generator=g) * torch.arange(1.0, 6.0).view(5, 1, 1)
    return blocks, x


def _mistakes(blocks: nn.ModuleList, x: torch.Tensor) -> tuple[float, dict[str, float]]:
    """d_scaled of the section, and what each typical mistake computes instead."""
    with torch.no_grad():
        states = [x]
        for block in blocks:
            states.append(block(states[-1]))
    flat = [s.flatten(1) for s in states]
    steps = [(b - a).norm(dim=1) for a, b in zip(flat, flat[1:])]
    ratios = [(st / a.norm(dim=1)).mean().item() for st, a in zip(steps, flat)]
    right = sum(ratios)
    return right, {
        "that is the mean over the blocks, d_scaled / L: sum them instead": right / len(blocks),
        "you left out the last block: the section's L blocks give L steps, x_0 -> x_1 ... x_(L-1) -> x_L":
            sum(ratios[:-1]),
        "you left out the first block: the first step is x_0 -> x_1": sum(ratios[1:]),
        "that is the absolute distance d: divide each step by |x_l| first":
            sum(st.mean().item() for st in steps),
        "you took one ratio of the whole batch's norms per block; average the per-example ratios":
            sum(((b - a).norm() / a.norm()).item() for a, b in zip(flat, flat[1:])),
        "you divided by |x_(l+1)|; each step is measured against the block's input |x_l|":
            sum((st / b.norm(dim=1)).mean().item() for st, b in zip(steps, flat[1:])),
        "you measured every block against the section's input x_0; each step is |x_(l+1) - x_l| / |x_l|":
            sum(((b - flat[0]).norm(dim=1) / flat[0].norm(dim=1)).mean().item() for b in flat[1:]),
        "that is |x_L - x_0| / |x_0|, the net displacement; d_scaled adds up every step's size":
            ((flat[-1] - flat[0]).norm(dim=1) / flat[0].norm(dim=1)).mean().item(),
        "your norms run over the last axis only: flatten each example (x.flatten(1)) and take one norm "
        "per example": sum(((b - a).norm(dim=-1) / a.norm(dim=-1)).mean().item()
                           for a, b in zip(states, states[1:])),
        "your norms run over the batch (dim=0): take one norm per example, over all its other axes":
            sum(((b - a).norm(dim=0) / a.norm(dim=0)).mean().item() for a, b in zip(flat, flat[1:])),
        "your norms run over dim 1 only: an example here is (2, 6), so flatten it (x.flatten(1)) and take "
        "one norm over all its numbers": sum(((b - a).norm(dim=1) / a.norm(dim=1)).mean().item()
                                             for a, b in zip(states, states[1:])),
        "you divided the mean step by the mean norm, one ratio per block; average the per-example ratios instead":
            sum(((b - a).norm(dim=1).mean() / a.norm(dim=1).mean()).item() for a, b in zip(flat, flat[1:])),
        "every block ran on the section's input x_0: feed each block the previous block's output (x = block(x))":
            sum(((block(states[0]) - states[0]).flatten(1).norm(dim=1) / flat[0].norm(dim=1)).mean().item()
                for block in blocks),
    }


@exercise_check
def check_scaled_distance(fn: object, seed: int = 0) -> CheckResult:
    """Your scaled_distance(blocks, x) -> float: run x (batch, ...) through the blocks (callables)
    in order and return d_scaled = sum over blocks of the per-example |x_(l+1) - x_l| / |x_l|,
    averaged over the examples (notebook 06, exercise 1). Tested on two sections of 4 blocks, so
    that an answer fixed in advance cannot pass."""
    seed = check_seed("seed", seed)
    g = torch.Generator().manual_seed(seed)
    for _ in range(2):
        blocks, x = _section(g)
        right, mistakes = _mistakes(blocks, x)
        before = [p.detach().clone() for p in blocks.parameters()]
        value, problem = call_number(fn, "scaled_distance", "scaled_distance(blocks, x)", blocks, x.clone())
        if problem is not None:
            return problem
        if any(not torch.equal(a, b) for a, b in zip(before, blocks.parameters())):
            return CheckResult(False, "your function changed the blocks' weights; only run them forward")
        if abs(value - right) <= 1e-4 * right:
            continue
        for hint, wrong in mistakes.items():
            if abs(value - wrong) <= 1e-4 * abs(wrong):
                return CheckResult(False, f"d_scaled = {value:.3g} is not right: {hint}")
        word = "too large" if value > right else "too small"
        return CheckResult(False, f"d_scaled = {value:.3g} is {word} and matches none of the usual mistakes: "
                                  "print each block's ratio per example and check one by hand")
    return CheckResult(True, "correct: d_scaled matches on both test sections.")
