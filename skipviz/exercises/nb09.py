"""Checks for notebook 09 (transformers): causal self-attention with its mask (exercise 1), and the
pre-LN block (exercise 2). Both answers are functions of a package module and an input,
`fn(module, x)`; each is run on the same weights as the reference, in train and eval mode and
through backward(), and compared with the reference and with each typical mistake."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch

from .._validation import check_seed
from ..models.transformer import CausalSelfAttention, TransformerBlock
from .feedback import CheckResult, _explain, call, exercise_check

# ---------------------------------------------------------------------------- running an answer


def _refuse(name: str, method: str, use: str) -> Callable:
    def refused(*args, **kwargs):
        raise _Bypass(f"{name} called the package's own {method}(), which it is to write out; compute it "
                      f"from {use}")
    return refused


class _Bypass(Exception):
    """Raised when an answer calls the very forward pass it is asked to write."""


def _run(fn: Callable, name: str, module: torch.nn.Module, x: torch.Tensor, guard: dict[str, str] | None = None
         ) -> tuple[list[torch.Tensor] | None, CheckResult | None]:
    """fn(module, x) on float64 copies, in train then eval mode: [output, d/dx, d/dparameters...]
    for each mode (the backward of a fixed random weighting of the output); or the verdict.
    `guard` {method: what to use instead}: methods of the module the answer may not call (the
    package's forward, which it is asked to write out)."""
    found = []
    for train in (True, False):
        twin = copy.deepcopy(module).double().train(train)
        for method, use in (guard or {}).items():
            setattr(twin, method, _refuse(name, method, use))
        xs = x.detach().clone().double().requires_grad_(True)
        kept = xs.detach().clone()
        mode = "train" if train else "eval"
        try:
            out, problem = call(fn, name, twin, xs)
        finally:
            for method in guard or {}:
                delattr(twin, method)
        if problem is not None:
            bypass = problem.message.partition("_Bypass (")[2]
            return None, CheckResult(False, bypass[:-1]) if bypass else problem
        if not isinstance(out, torch.Tensor):
            return None, CheckResult(False, f"{name} must return a tensor; it returned {type(out).__name__}"
                                     + (": did you forget `return`?" if out is None else ""))
        if out.dtype != torch.float64:
            return None, CheckResult(False, f"{name} returned {out.dtype} for a float64 input: keep x's dtype "
                                            "(no .float() or float32 constants that change it)")
        if tuple(out.shape) != tuple(x.shape):
            return None, CheckResult(False, f"{name} on x of shape {tuple(x.shape)} returned shape "
                                            f"{tuple(out.shape)}: it must keep x's shape (batch, T, d_model)")
        if not torch.equal(xs.detach(), kept):
            return None, CheckResult(False, f"{name} changed its input x in place; compute a new tensor")
        grads = [torch.zeros_like(xs)] + [torch.zeros_like(p) for p in twin.parameters()]
        if out.requires_grad and torch.isfinite(out).all():
            weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=out.dtype)
            leaves = [xs, *twin.parameters()]
            try:
                got = torch.autograd.grad((out * weight).sum(), leaves, allow_unused=True)
            except Exception as err:
                return None, CheckResult(False, f"backward() through {name} ({mode} mode) failed: {_explain(err)}")
            grads = [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(got, leaves)]
        found += [out.detach(), *grads]
    return found, None


def _same(a: list[torch.Tensor], b: list[torch.Tensor], outputs_only: bool = False) -> bool:
    if outputs_only and len(a) == len(b):  # [train output, its gradients..., eval output, its gradients...]
        half = len(a) // 2
        a, b = [a[0], a[half]], [b[0], b[half]]
    return len(a) == len(b) and all(
        u.shape == v.shape and torch.allclose(u, v, rtol=1e-6, atol=1e-8, equal_nan=True) for u, v in zip(a, b))


GRADIENT_HINT = ("{name} gives the right output but the wrong gradients: is part of the computation cut off "
                 "from autograd (.detach(), .data, torch.no_grad())?")


def _compare(fn: Callable, name: str, cases: list[tuple[torch.nn.Module, torch.Tensor]], guard: dict[str, str],
             mistakes: dict[str, Callable]) -> tuple[CheckResult | None, tuple | None]:
    """The answer against the package's own forward on each case, in order (the answer runs once
    per case): (None, None) when it agrees on every case; (the verdict, None) when a call fails,
    only the gradients differ, or a typical mistake behaves like it on every case; (None, (module,
    x, what the answer gave)) for the first case on which it differs for none of these reasons."""
    answers: dict[int, tuple] = {}

    def answer(i: int) -> tuple:
        if i not in answers:
            answers[i] = _run(fn, name, *cases[i], guard)
        return answers[i]

    for i, (module, x) in enumerate(cases):
        got, problem = answer(i)
        if problem is not None:
            return problem, None
        reference = _run(lambda m, x: m(x), "reference", module, x)[0]  # the package's forward
        if _same(got, reference):
            continue
        if _same(got, reference, outputs_only=True):
            return CheckResult(False, GRADIENT_HINT.format(name=name)), None
        for hint, wrong in mistakes.items():
            if all(_same(answer(j)[0] or [], _run(wrong, "mistake", *case)[0] or []) for j, case in enumerate(cases)):
                return CheckResult(False, hint), None
        return None, (module, x, got)
    return None, None


# ---------------------------------------------------------------------------- exercise 1: the mask


def _attention(attention: CausalSelfAttention, x: torch.Tensor, weigh: Callable, scale: bool = True) -> torch.Tensor:
    """Causal self-attention with the weights computed from the scores by `weigh`."""
    batch, T, d = x.shape
    h = attention.heads
    q, k, v = attention.qkv(x).view(batch, T, 3, h, d // h).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-2, -1) / (math.sqrt(d // h) if scale else 1.0)
    return attention.proj((weigh(scores) @ v).transpose(1, 2).reshape(batch, T, d))


def _future(scores: torch.Tensor, diagonal: int = 1) -> torch.Tensor:
    T = scores.shape[-1]
    return torch.ones(T, T, dtype=torch.bool).triu(diagonal)


ATTENTION_MISTAKES = {
    "there is no mask: every position reads the whole sequence, later tokens included, so the model can "
    "copy the answer it is meant to predict":
        lambda a, x: _attention(a, x, lambda s: s.softmax(-1)),
    "the mask is transposed: it hides the past and shows the future; position t may read positions 0..t, "
    "itself included, and no later one":
        lambda a, x: _attention(a, x, lambda s: s.masked_fill(_future(s).T, -math.inf).softmax(-1)),
    "the mask is inverted: it hides positions 0..t and shows the later ones (the last position then has no "
    "key left); position t may read positions 0..t, itself included":
        lambda a, x: _attention(a, x, lambda s: s.masked_fill(~_future(s), -math.inf).softmax(-1)),
    "the mask also hides the diagonal: position t must read itself too, and position 0 then has no key "
    "left (its softmax is 0/0)":
        lambda a, x: _attention(a, x, lambda s: s.masked_fill(_future(s, 0), -math.inf).softmax(-1)),
    "the hidden scores were set to 0, not to -inf: exp(0) = 1, so the future still gets weight after the "
    "softmax":
        lambda a, x: _attention(a, x, lambda s: s.masked_fill(_future(s), 0.0).softmax(-1)),
    "the mask was applied after the softmax: the weights of each row then no longer sum to 1; mask the "
    "scores, then take the softmax (or renormalize)":
        lambda a, x: _attention(a, x, lambda s: s.softmax(-1).masked_fill(_future(s), 0.0)),
    "the softmax runs over the wrong dimension: each query's weights over the keys (the last dimension, "
    "dim=-1) must sum to 1":
        lambda a, x: _attention(a, x, lambda s: s.masked_fill(_future(s), -math.inf).softmax(-2)),
    "the mask is right but the scores are not divided by sqrt(d_head)":
        lambda a, x: _attention(a, x, lambda s: s.masked_fill(_future(s), -math.inf).softmax(-1), scale=False),
}


def _attention_cases(seed: int) -> list[tuple[CausalSelfAttention, torch.Tensor]]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(100 + seed)
        cases = []
        for d, heads, batch, T in ((16, 4, 3, 5), (8, 2, 2, 7), (12, 3, 2, 1)):
            attention = CausalSelfAttention(d, heads)
            for p in attention.parameters():  # biases off zero, so that none hides a mistake
                torch.nn.init.normal_(p, std=0.5)
            cases.append((attention, torch.randn(batch, T, d)))
    return cases


def _reads_future(fn: Callable, attention: CausalSelfAttention, x: torch.Tensor) -> bool:
    """Does the output at position 0..T-2 change, in train or eval mode, when only the last
    position's input does?"""
    changed = x.clone()
    changed[:, -1] += 1.0
    for train in (True, False):
        with torch.no_grad():
            a = fn(copy.deepcopy(attention).double().train(train), x.double())
            b = fn(copy.deepcopy(attention).double().train(train), changed.double())
        if not torch.allclose(a[:, :-1], b[:, :-1], atol=1e-9, equal_nan=True):
            return True
    return False


@exercise_check
def check_causal_attention(fn: object, seed: int = 0) -> CheckResult:
    """Your causal_attention(attention, x): for a CausalSelfAttention `attention` and x (batch, T,
    d_model), multi-head self-attention in which position t reads positions 0..t only (notebook 09,
    section 1 and exercise 1). Compared with the reference on the same weights for three sizes
    (T = 5, 7 and 1), in train and eval mode and through backward(); `seed` draws other weights."""
    seed = check_seed("seed", seed)
    cases = _attention_cases(seed)
    name = "causal_attention"
    verdict, differing = _compare(fn, name, cases, {"forward": "attention.qkv and attention.proj"},
                                  ATTENTION_MISTAKES)
    if verdict is not None:
        return verdict
    if differing is not None:
        attention, x, got = differing
        if not torch.isfinite(got[0]).all():
            return CheckResult(False, f"causal_attention returned NaN or inf for T = {x.shape[1]}: a softmax over a "
                                      "row whose every score is -inf (0/0), +inf where -inf is meant, a 0 * inf in "
                                      "building the masked scores, or a softmax over the wrong dimension?")
        try:
            leaks = _reads_future(fn, attention, x) if x.shape[1] > 1 else False
        except Exception:
            leaks = False
        if leaks:
            return CheckResult(False, "an earlier position's output changes when only the last position's input "
                                      "does: the mask lets queries read the future")
        return CheckResult(False, f"causal_attention differs from causal self-attention for T = {x.shape[1]} and "
                                  "matches none of the usual mistakes: no position reads a later one, so check "
                                  "what the masked scores are set to and the steps around the mask")
    return CheckResult(True, "correct: your attention matches the reference for T = 5, 7 and 1, in train and eval "
                             "mode and in its gradients, and no position reads a later one.")


# ---------------------------------------------------------------------------- exercise 2: pre-LN


def _post_ln(block, x):
    x = block.norm_attention(x + block.attention(x))
    return block.norm_mlp(x + block.mlp(x))


def _normed_branch(block, x):
    x = x + block.norm_attention(block.attention(x))
    return x + block.norm_mlp(block.mlp(x))


def _normed_stream(block, x):
    x = block.norm_attention(x)
    x = x + block.attention(x)
    x = block.norm_mlp(x)
    return x + block.mlp(x)


def _no_skips(block, x):
    return block.mlp(block.norm_mlp(block.attention(block.norm_attention(x))))


def _norms_swapped(block, x):
    x = x + block.attention(block.norm_mlp(x))
    return x + block.mlp(block.norm_attention(x))


def _one_norm(block, x):
    x = x + block.attention(block.norm_attention(x))
    return x + block.mlp(block.norm_attention(x))


def _parallel(block, x):
    return x + block.attention(block.norm_attention(x)) + block.mlp(block.norm_mlp(x))


BLOCK_MISTAKES = {
    "that is post-LN, the original Transformer's order (LN after the addition); pre-LN normalizes the "
    "branch's input and leaves the stream x untouched: x + F(LN(x))":
        _post_ln,
    "the LayerNorm is on the branch's output, x + LN(F(x)); pre-LN puts it on the branch's input, x + F(LN(x))":
        _normed_branch,
    "the stream itself is normalized before the addition (x = LN(x), then x + F(x)); only the branch may read "
    "LN(x): the skip must carry x unchanged":
        _normed_stream,
    "the skips are missing: add each sublayer's output to the stream, x + F(LN(x)), rather than replace it":
        _no_skips,
    "the two LayerNorms are swapped: norm_attention goes before the attention, norm_mlp before the MLP":
        _norms_swapped,
    "both branches use norm_attention: the MLP has its own, norm_mlp":
        _one_norm,
    "the MLP reads the block's input instead of the stream after the attention's update (that is the "
    "'parallel' block of some later models, not this one)":
        _parallel,
    "there is no LayerNorm at all: x + F(x)":
        lambda b, x: x + b.attention(x) + b.mlp(x + b.attention(x)),
    "the attention's skip is missing":
        lambda b, x: (lambda h: h + b.mlp(b.norm_mlp(h)))(b.attention(b.norm_attention(x))),
    "the MLP's skip is missing":
        lambda b, x: b.mlp(b.norm_mlp(x + b.attention(b.norm_attention(x)))),
    "the MLP branch is missing: a block is attention, then the MLP":
        lambda b, x: x + b.attention(b.norm_attention(x)),
    "the attention branch is missing: a block is attention, then the MLP":
        lambda b, x: x + b.mlp(b.norm_mlp(x)),
}


def _block_cases(seed: int) -> list[tuple[TransformerBlock, torch.Tensor]]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(200 + seed)
        cases = []
        for d, heads, batch, T in ((16, 4, 3, 5), (8, 2, 2, 3)):
            block = TransformerBlock(d, heads, norm="pre")
            with torch.no_grad():  # the two LayerNorms' gains and shifts made different
                for norm in (block.norm_attention, block.norm_mlp):
                    norm.weight.add_(0.5 * torch.randn(d))
                    norm.bias.add_(0.5 * torch.randn(d))
            cases.append((block, 2.0 + 3.0 * torch.randn(batch, T, d)))  # a stream far from LN's output
    return cases


@exercise_check
def check_pre_ln_block(fn: object, seed: int = 0) -> CheckResult:
    """Your pre_ln_block(block, x): one pre-LN layer, the attention sublayer then the MLP sublayer,
    each x + F(LN(x)) with the block's own `norm_attention` and `norm_mlp` (notebook 09, section 1
    and exercise 2). Compared with the reference on the same weights, for two sizes, in train and
    eval mode and through backward(); `seed` draws other weights."""
    seed = check_seed("seed", seed)
    cases = _block_cases(seed)
    name = "pre_ln_block"
    use = "block.attention, block.mlp, block.norm_attention and block.norm_mlp"
    verdict, differing = _compare(fn, name, cases, {"forward": use, "sublayer": use}, BLOCK_MISTAKES)
    if verdict is not None:
        return verdict
    if differing is not None:
        return CheckResult(False, "pre_ln_block differs from the pre-LN block and matches none of the usual "
                                  "mistakes: check which LayerNorm each branch reads, what each skip carries, and "
                                  "the order of the two sublayers")
    return CheckResult(True, "correct: your pre-LN block matches the reference on the same weights, in train and "
                             "eval mode and in its gradients.")
