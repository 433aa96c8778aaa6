"""The unraveled view of residual networks (Veit et al. 2016): path counts, lesions, block
reordering, and the gradient split by path length, sampled (Veit's way) and exact.

A residual block computes x' = skip(x) + branch(x) (V1: x' = act(x + F(x))). Its Jacobian is
S + B, the skip part plus the branch part, so the Jacobian of n blocks is a sum over 2^n
products: one per path, a path of length k taking the branch in k blocks.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from ._validation import (
    check_bool,
    check_index,
    check_int,
    check_model,
    check_number,
    check_seed,
    show,
)
from .data import Dataset
from .errors import SkipvizValueError
from .models import HighwayMLP, PlainMLP, ResidualMLP, ResNet1d, SkipConvNet, TinyTransformer
from .training import check_fits, check_input_fits, evaluate, loss_for_targets

__all__ = ["central_range", "deleted", "fraction_in_range", "gradient_by_path_length",
           "kendall_tau", "lesion", "path_counts", "path_length_distribution", "reordered",
           "residual_blocks", "sampled_path_gradients"]

# ---------------------------------------------------------------------------- counting paths


# Beyond these the counts leave float64's range (2^1024) or take seconds of big-integer work.
MAX_BLOCKS_COUNTED = 1000
MAX_BLOCKS = 10_000


def path_counts(n: int) -> torch.Tensor:
    """Number of paths of each length 0..n through n residual blocks: binomial(n, k), shape (n+1,).

    Exact (float64 holds every count exactly up to n = 55 and approximates beyond); n <= 1000.

    Derived in notebook 03, §1.
    """
    n = check_int("n", n, minimum=0, maximum=MAX_BLOCKS_COUNTED)
    return torch.tensor([float(math.comb(n, k)) for k in range(n + 1)], dtype=torch.float64)


def path_length_distribution(n: int) -> torch.Tensor:
    """Fraction of the 2^n paths that have each length 0..n: Binomial(n, 1/2), shape (n+1,)."""
    n = check_int("n", n, minimum=0, maximum=MAX_BLOCKS)
    return torch.tensor([math.comb(n, k) / 2**n for k in range(n + 1)], dtype=torch.float64)


def fraction_in_range(n: int, low: int, high: int) -> float:
    """Exact fraction of the 2^n paths whose length lies in [low, high] (inclusive)."""
    n = check_int("n", n, minimum=0, maximum=MAX_BLOCKS)
    low = check_int("low", low, minimum=0, maximum=n)
    high = check_int("high", high, minimum=low, maximum=n)
    return sum(math.comb(n, k) for k in range(low, high + 1)) / 2**n


def central_range(n: int, mass: float = 0.95) -> tuple[int, int]:
    """The narrowest range [low, high] centred on n/2 holding at least `mass` of the paths."""
    n = check_int("n", n, minimum=0, maximum=MAX_BLOCKS)
    mass = check_number("mass", mass)
    if not 0 < mass <= 1:
        raise SkipvizValueError(f"mass must be in (0, 1]; got {show(mass)}")
    counts = [math.comb(n, k) for k in range(n + 1)]
    prefix = [0]
    for c in counts:
        prefix.append(prefix[-1] + c)  # exact integers: no rounding in the comparison below
    for half in range(n + 1):
        low, high = max(math.floor(n / 2 - half), 0), min(math.ceil(n / 2 + half), n)
        if (prefix[high + 1] - prefix[low]) >= mass * 2 ** n:
            return low, high
    return 0, n


# ---------------------------------------------------------------------------- blocks

# The models that are one chain of residual blocks, model.blocks, between embed and readout.
RESIDUAL_FAMILIES = (ResidualMLP, SkipConvNet, ResNet1d)


def residual_blocks(model: nn.Module, same_shape: bool = False) -> nn.ModuleList:
    """The residual blocks of a skipviz ResidualMLP, SkipConvNet or ResNet1d.

    Raises ValueError for a model without skips, and, with same_shape=True, for a model with a
    block that changes the shape of its input (such blocks cannot trade places).
    """
    check_model("model", model)
    same_shape = check_bool("same_shape", same_shape)
    if not isinstance(model, RESIDUAL_FAMILIES):
        raise SkipvizValueError(f"model must be a skipviz ResidualMLP, SkipConvNet or ResNet1d (a chain "
                                f"of residual blocks); got {type(model).__name__}")
    blocks = model.blocks
    if same_shape:
        for i, block in enumerate(blocks):
            if getattr(block, "changes_shape", False):
                raise SkipvizValueError(f"model's block {i} changes the shape of its input, so the blocks "
                                        "cannot be reordered; use a model whose blocks all keep their shape")
        if isinstance(model, ResNet1d) and model.config.sections > 1:
            raise SkipvizValueError(f"model is a ResNet1d with {model.config.sections} sections, whose "
                                    "blocks have different widths and cannot trade places; use sections=1")
    return blocks


def _deletable_layers(model: nn.Module) -> tuple[nn.ModuleList, int]:
    """(the layers a lesion may delete, the first deletable index). A TinyTransformer's are its
    sublayers' branches, numbered as its skips: attention 0, MLP 0, attention 1, ..."""
    check_model("model", model)
    if isinstance(model, (*RESIDUAL_FAMILIES, HighwayMLP)):
        return model.blocks, 0
    if isinstance(model, PlainMLP):
        return model.layers, 1  # a plain net's first layer maps the input to the width: no identity
    if isinstance(model, TinyTransformer):
        return nn.ModuleList(branch for block in model.blocks for branch in (block.attention, block.mlp)), 0
    raise SkipvizValueError(f"model must be a skipviz PlainMLP, ResidualMLP, SkipConvNet, ResNet1d, HighwayMLP or "
                            f"TinyTransformer (whose layers, blocks or sublayers can be deleted); got "
                            f"{type(model).__name__}")


def _identity_output(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What a block outputs with its branch removed: the skip alone."""
    if getattr(block, "block", None) == "v1":
        return block.act(x)  # V1: act(x + 0)
    if getattr(block, "changes_shape", False):
        return block.shortcut(x)
    return x


@contextlib.contextmanager
def deleted(model: nn.Module, indices: Sequence[int]) -> Iterator[nn.Module]:
    """Temporarily delete blocks: a residual block keeps only its skip, a plain layer becomes the
    identity; for a TinyTransformer, `indices` count sublayers as its skips do (2 l: layer l's
    attention, 2 l + 1: its MLP) and a deleted sublayer's branch outputs zeros (post-LN then
    gives LN(x), not x). The model is unchanged afterwards."""
    layers, first = _deletable_layers(model)
    chosen = _indices("indices", indices, first, len(layers) - 1, model)
    if isinstance(model, TinyTransformer):
        def hook(_m, _inputs, out):
            return torch.zeros_like(out)
    else:
        def hook(m, inputs, _out):
            return _identity_output(m, inputs[0])
    handles = [layers[i].register_forward_hook(hook) for i in chosen]
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


def lesion(model: nn.Module, dataset: Dataset, deleted_blocks: Sequence[int]) -> float:
    """Test accuracy (0..1) with the listed blocks deleted (see `deleted`), in eval mode; the
    model is unchanged afterwards."""
    check_fits(model, dataset)
    if dataset.task != "classification":
        raise SkipvizValueError("dataset must be a classification data set: lesion reports test accuracy")
    layers, first = _deletable_layers(model)
    deleted_blocks = _indices("deleted_blocks", deleted_blocks, first, len(layers) - 1, model)
    with deleted(model, deleted_blocks):
        return evaluate(model, dataset, "test").metric


@contextlib.contextmanager
def reordered(model: nn.Module, order: Sequence[int]) -> Iterator[nn.Module]:
    """Temporarily run the residual blocks (a TinyTransformer's layers) in another order, a
    permutation of 0..n-1; skips stay with their positions."""
    blocks = model.blocks if isinstance(model, TinyTransformer) else residual_blocks(model, same_shape=True)
    n = len(blocks)
    # Every entry checked before a block is moved: a failure halfway would leave the model mixed up.
    order = _indices("order", order, 0, n - 1, model)
    if sorted(order) != list(range(n)):
        raise SkipvizValueError(f"order must be a permutation of 0..{n - 1} (each once); got {order!r}")
    original = list(blocks)
    for position, i in enumerate(order):
        blocks[position] = original[i]
    try:
        yield model
    finally:
        for position, block in enumerate(original):
            blocks[position] = block


def kendall_tau(order: Sequence[int]) -> float:
    """Kendall's rank correlation between `order` and 0..n-1: 1 unchanged, -1 reversed.

    order: n >= 2 distinct integers (a permutation, or any ranks); ties are refused, since with
    ties the plain tau is not the rank correlation (3, 3, 3 would count as reversed)."""
    order = _indices("order", order, -(2 ** 62), 2 ** 62)
    n = len(order)
    if n < 2:
        raise SkipvizValueError(f"order must hold at least 2 entries; got {n}")
    if len(set(order)) != n:
        raise SkipvizValueError(f"order must hold distinct values (a ranking without ties); got {order!r}")
    concordant = sum(1 if order[i] < order[j] else -1 for i in range(n) for j in range(i + 1, n))
    return concordant / (n * (n - 1) / 2)


# ---------------------------------------------------------------------------- gradients by path


def _indices(name: str, values: object, low: int, high: int, model: nn.Module | None = None) -> list[int]:
    """values as a list of ints in low..high: a list, tuple, range, 1-D array or tensor of
    integers. With `model`, the messages say that the range is that model's blocks."""
    if isinstance(values, (torch.Tensor, np.ndarray)) and values.ndim == 1:
        values = values.tolist()
    of = "" if model is None else f" (the blocks of model {type(model).__name__})"
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise SkipvizValueError(f"{name} must be a list of integers in {low}..{high}{of}; got {show(values)}")
    return [check_index(f"{name}[{i}]{of}", v, low, high) for i, v in enumerate(values)]


def _repeat(x: torch.Tensor, k: int) -> torch.Tensor:
    """k stacked copies of the batch x, as one batch (k * batch, ...) that requires grad."""
    return x.detach().unsqueeze(0).expand(k, *x.shape).reshape(k * x.shape[0], *x.shape[1:]).requires_grad_(True)


def _split_vjps(block: nn.Module, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(S^T u, B^T u) for one block at its input x (batch, ...), cotangents u (K, batch, ...) at
    its output; both results have shape (K, *x.shape). Each copy of the batch is independent, so
    one backward pass through K stacked copies gives all K vector-Jacobian products."""
    k = u.shape[0]
    xs = _repeat(x, k)
    flat_u = u.reshape(k * x.shape[0], *u.shape[2:])
    branch = block.branch(xs)
    if getattr(block, "block", None) == "v1":
        # x' = act(x + F(x)): S = D and B = D J_F, with D the derivative of act at x + F(x).
        pre = (branch + xs).detach().requires_grad_(True)
        (gated,) = torch.autograd.grad(block.act(pre), pre, flat_u)
        skip_part = gated
        (branch_part,) = torch.autograd.grad(branch, xs, gated)
    else:
        # x' = shortcut(x) + branch(x): S is the shortcut's Jacobian (the identity, or a linear map
        # when the block changes the shape), B the branch's.
        shortcut = block.shortcut(xs) if hasattr(block, "shortcut") else xs
        (skip_part,) = torch.autograd.grad(shortcut, xs, flat_u) if shortcut is not xs else (flat_u,)
        (branch_part,) = torch.autograd.grad(branch, xs, flat_u)
    return skip_part.reshape(k, *x.shape), branch_part.reshape(k, *x.shape)


def _forward_parts(model: nn.Module, x: torch.Tensor, y: torch.Tensor):
    """Block inputs x_0..x_{n-1}, dL/dx_n, and a function mapping cotangents at x_0 to the input."""
    blocks = residual_blocks(model)
    if isinstance(model, ResNet1d) and model.config.sections > 1:
        raise SkipvizValueError(f"model is a ResNet1d with {model.config.sections} sections: the "
                                "split by path length needs one chain of blocks; use sections=1")
    check_input_fits(model, x, y)
    if not all(model.skips):
        raise SkipvizValueError("switch every skip on first: the decomposition needs the skips "
                         f"(model.skips = [True] * {model.num_skips})")
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) and model.training:
        raise SkipvizValueError("put the model in eval mode: in train mode batch norm mixes the examples")
    with torch.no_grad():
        h = model.embed(x)
        inputs = []
        for block in blocks:
            inputs.append(h)
            h = block(h, True)
    h_last = h.requires_grad_(True)
    (g,) = torch.autograd.grad(loss_for_targets(model.readout(h_last), y), h_last)

    def to_input(u: torch.Tensor) -> torch.Tensor:
        """Carry cotangents (K, *x_0.shape) at x_0 back through the embedding: (K, *x.shape)."""
        k = u.shape[0]
        xs = _repeat(x, k)
        (grad,) = torch.autograd.grad(model.embed(xs), xs, u.reshape(k * x.shape[0], *u.shape[2:]))
        return grad.reshape(k, *x.shape)

    return inputs, g, to_input


def gradient_by_path_length(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The exact split of dL/dx by path length: shape (n+1, *x.shape), entry k = length-k part.

    L is the mean cross-entropy for integer labels y, else the mean squared error. The entries
    sum to autograd's gradient. A dynamic program from the last block to the first,
    u_k <- S^T u_k + B^T u_{k-1}, needs one batched vector-Jacobian product per block instead of
    2^n paths. The model must be in eval mode if it has batch norm, and have all skips on.

    Written out in notebook 03, §2 (`gradient_by_length`), for V2 and pre-activation blocks.
    """
    inputs, g, to_input = _forward_parts(model, x, y)
    n = len(inputs)
    u = g.unsqueeze(0)  # u[k]: the part of dL/dx_l that took the branch in k of blocks l..n-1
    for layer in range(n - 1, -1, -1):
        skip_part, branch_part = _split_vjps(model.blocks[layer], inputs[layer], u)
        u = torch.zeros(len(u) + 1, *inputs[layer].shape, dtype=g.dtype)
        u[:-1] += skip_part    # through the skip: the length stays
        u[1:] += branch_part   # through the branch: one block longer
    return to_input(u)


def sampled_path_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                           samples: int = 20, lengths: Sequence[int] | None = None,
                           seed: int = 0) -> torch.Tensor:
    """Veit et al.'s measurement: the mean gradient norm at the input of one path of each length.

    For each length k, `samples` random sets of k blocks are drawn; the backward pass goes
    through the branch of those blocks and the skip of the others. Returns (n+1,) float64: the
    mean over samples and examples of the per-example L2 norm of that path's gradient (NaN for
    lengths not asked for). Multiply by `path_counts(n)` for Veit's "total gradient magnitude".
    """
    samples = check_int("samples", samples)
    seed = check_seed("seed", seed)
    inputs, g, to_input = _forward_parts(model, x, y)
    n = len(inputs)
    lengths = list(range(n + 1)) if lengths is None else _indices("lengths", lengths, 0, n)
    gen = torch.Generator().manual_seed(seed)
    takes_branch = torch.zeros(len(lengths) * samples, n, dtype=torch.bool)
    for row, k in enumerate(k for k in lengths for _ in range(samples)):
        takes_branch[row, torch.randperm(n, generator=gen)[:k]] = True
    u = g.unsqueeze(0).expand(len(takes_branch), *g.shape)
    for layer in range(n - 1, -1, -1):
        skip_part, branch_part = _split_vjps(model.blocks[layer], inputs[layer], u)
        mask = takes_branch[:, layer].view(-1, *([1] * inputs[layer].dim()))
        u = torch.where(mask, branch_part, skip_part)
    norms = to_input(u).double().flatten(2).norm(dim=2).mean(dim=1)  # squares underflow in float32
    result = torch.full((n + 1,), float("nan"), dtype=torch.float64)
    for i, k in enumerate(lengths):
        result[k] = norms[i * samples: (i + 1) * samples].mean()
    return result
