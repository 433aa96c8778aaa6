"""Hessian-vector products of a model's mean loss, at one or many weight vectors: by the
R-operator (`fast.rop`) for the MLPs it handles, else by autograd (through `fast.points` for
several points where the model is proven for it, else `functional_call`). Notebook 04 writes the
product out as `jvp(grad(...))` before it calls these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from ..data import Dataset
from ..training import loss_for_targets
from .directions import Flat
from .fast import points, rop


def hessian_products(model: nn.Module, dataset: Dataset, split: str, batch_size: int | None,
                     weights: torch.Tensor, autograd: bool = False, check: bool = True,
                     reference: bool = False) -> Products:
    """The Hessian-vector products of `_products`, checked before they are used: the fast products
    (the R-operator or the point-batched pass) are compared on a seeded random probe with the
    reference (autograd through `functional_call`, one point at a time) on up to two points; if
    they disagree, or fail, the reference is used (`.kind` says which). The check is part of the
    call, so a result never depends on what ran before. A caller that has checked the same model
    and data already in this call (`curvature_map`'s later chunks) passes check=False, and
    reference=True when that check chose the reference."""
    if reference:
        return _products(model, dataset, split, batch_size, weights, True, reference=True)
    try:
        fast = _products(model, dataset, split, batch_size, weights, autograd)
    except Exception:  # a model the fast products cannot take (tied weights, an odd layer, ...)
        return _products(model, dataset, split, batch_size, weights, True, reference=True)
    if fast.kind == "reference" or not check:
        return fast
    rows = min(2, len(weights))
    probe = torch.randn(len(weights), weights.shape[1], generator=torch.Generator().manual_seed(0),
                        dtype=weights.dtype)
    want = _products(model, dataset, split, batch_size, weights[:rows], True, reference=True)(probe[:rows])
    try:
        got = fast(probe)[:rows]
        agrees = bool((got - want).norm() <= 1e-4 * want.norm() + 1e-10)
    except Exception:
        agrees = False
    return fast if agrees else _products(model, dataset, split, batch_size, weights, True, reference=True)


def _products(model: nn.Module, dataset: Dataset, split: str, batch_size: int | None,
              weights: torch.Tensor, autograd: bool = False, reference: bool = False
              ) -> Callable[[torch.Tensor], torch.Tensor]:
    """matvec(v (P, n)) -> (P, n), whose row p is H(weights[p]) v[p]: the Hessian of the mean loss
    over the split, taken at that row's weights (weights (P, n), flat like `_Flat.vector`).

    For an MLP (Linear, batch norm, activations, additions) without `batch_size`, the products
    are Pearlmutter's R-operator written out layer by layer (`fast.rop`). Otherwise, or with
    autograd=True (for comparisons), reverse over reverse: the gradient g(w) is built once,
    with its graph, and each product is one more backward pass through it (the gradient of
    g . v), so a Lanczos run pays for the forward pass and the first backward pass only once.
    With `batch_size`, the split is processed in pieces and the graph rebuilt piece by piece for
    every product (memory bounded by one piece); each piece's product is weighted by its share
    of the data, so the result is the mean's Hessian, not a sum over pieces. Several rows run
    together in one point-batched pass (`fast.points`) when the model's layers allow it; a
    single row, or a model they do not allow, through `functional_call`.
    """
    x, y = dataset.split(split)
    flat = Flat(model)
    n = len(x)
    if batch_size is None and not autograd:
        # An MLP's products written out by the R-operator (`fast.rop`): fewer operations
        # than autograd's second backward pass, about twice as fast.
        operator = rop.hessian_operator(model, flat.unflatten(weights), flat.buffers, x, y)
        if operator is not None:
            return Products(operator, "r-operator")
    pieces = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)] \
        if batch_size else [(x, y)]
    # Several points run through one point-batched pass. A single point runs through the
    # model's own layers: the batched pass folds batch norms into the layers before them, and
    # in float32 a ReLU input within rounding of zero can then fall on the other side.
    evaluator = points.evaluator_for(model, x) if len(weights) > 1 and not reference else None
    leaves = [w.detach().clone().requires_grad_(True)
              for w in (weights.split(len(weights)) if evaluator else weights.split(1))]

    def gradient(w: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Each row's gradient of its mean loss on (xb, yb), (rows, n), with its graph."""
        with torch.enable_grad():
            if evaluator is not None:
                out = evaluator(flat.unflatten(w), flat.buffers, xb)
            else:
                out = functional_call(model, (flat.unflatten(w[0]), flat.buffers), (xb,)).unsqueeze(0)
            # The rows' losses are independent, so the gradient of their sum holds each row's own.
            total = loss_for_targets(out, yb, points=True).sum() * (len(xb) / n)
            return torch.autograd.grad(total, w, create_graph=True)[0]

    def product(g: torch.Tensor, w: torch.Tensor, v: torch.Tensor, keep: bool) -> torch.Tensor:
        with torch.enable_grad():
            return torch.autograd.grad(g, w, grad_outputs=v, retain_graph=keep)[0]

    if batch_size is None:
        grads = [gradient(w, x, y) for w in leaves]

        def matvec(v: torch.Tensor) -> torch.Tensor:
            rows = v.to(weights.dtype).split([len(w) for w in leaves])
            return torch.cat([product(g, w, r, True) for g, w, r in zip(grads, leaves, rows)])
    else:
        def matvec(v: torch.Tensor) -> torch.Tensor:
            rows = v.to(weights.dtype).split([len(w) for w in leaves])
            return torch.cat([sum(product(gradient(w, xb, yb), w, r, False) for xb, yb in pieces)
                              for w, r in zip(leaves, rows)])

    return Products(matvec, "batched" if evaluator is not None else "reference")


@dataclass
class Products:
    """A Hessian-vector product function and how it computes: 'r-operator' (`fast.rop`),
    'batched' (autograd through `fast.points`) or 'reference' (autograd, functional_call)."""

    matvec: Callable[[torch.Tensor], torch.Tensor]
    kind: str

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.matvec(v)
