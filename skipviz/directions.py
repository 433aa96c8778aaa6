"""Directions in weight space for loss landscapes (Li et al. 2018; notebook 04 derives filter
normalization): a direction is a list of tensors, one per tensor of `model.parameters()`, in that
order. Also the centred coordinate grid of a slice and the flat view of a model's weights that
surfaces and curvature maps are computed in.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._validation import check_choice, check_int, check_positive, check_seed

NORMALIZATIONS = ("filter", "layer", "none")
IGNORES = ("biasbn", "none")

Direction = list[torch.Tensor]


def random_direction(model: nn.Module, normalize: str = "filter", ignore: str = "biasbn",
                     seed: int = 0) -> Direction:
    """A Gaussian random direction in weight space, one tensor per parameter of `model`.

    normalize='filter' (Li et al.): every filter of a weight tensor with 2 or more dimensions (a
    Linear row, a conv output channel) is rescaled to the norm of the same filter of the model's
    weights, so a step of 1 moves each filter by its own size. 'layer' rescales whole tensors;
    'none' keeps the raw N(0, 1) entries. ignore='biasbn' sets the directions of 1-D parameters
    (biases, normalization scales and shifts) to zero; ignore='none' keeps them, each vector
    rescaled (unless normalize='none') to the norm of its parameter.
    """
    check_choice("normalize", normalize, NORMALIZATIONS)
    check_choice("ignore", ignore, IGNORES)
    seed = check_seed("seed", seed)
    gen = torch.Generator().manual_seed(seed)
    direction = []
    for p in model.parameters():
        w = p.detach()
        d = torch.randn(w.shape, generator=gen, dtype=torch.float32).to(w.dtype)
        if w.dim() <= 1 and ignore == "biasbn":
            d.zero_()
        elif normalize == "layer" or (normalize == "filter" and w.dim() <= 1):
            d.mul_(w.norm() / d.norm())
        elif normalize == "filter":
            # One norm per filter: rows of the (filters, everything else) view.
            w_norms = w.reshape(len(w), -1).norm(dim=1)
            d_norms = d.reshape(len(d), -1).norm(dim=1)
            d.mul_((w_norms / d_norms).view(-1, *[1] * (w.dim() - 1)))
        direction.append(d)
    return direction


def direction_to(model: nn.Module, state: dict[str, torch.Tensor]) -> Direction:
    """The direction from the model's current weights to the weights in `state` (a state_dict,
    e.g. saved at initialization): state[name] - parameter, one tensor per parameter."""
    direction = []
    for name, p in model.named_parameters():
        if name not in state or state[name].shape != p.shape:
            raise ValueError(f"state must hold a tensor of shape {tuple(p.shape)} for {name!r}")
        direction.append(state[name].detach().to(p.dtype) - p.detach())
    return direction


def check_direction(model: nn.Module, direction: Sequence[torch.Tensor], name: str = "direction") -> None:
    """Raise ValueError unless `direction` has one finite tensor per parameter of `model`, each of
    the parameter's shape."""
    shapes = [tuple(p.shape) for p in model.parameters()]
    if isinstance(direction, torch.Tensor) or not isinstance(direction, Sequence):
        raise ValueError(f"{name} must be a list of {len(shapes)} tensors, one per parameter "
                         f"of the model (see random_direction); got {type(direction).__name__}")
    if len(direction) != len(shapes):
        raise ValueError(f"{name} must have one tensor per parameter of the model ({len(shapes)}); "
                         f"got {len(direction)}")
    for i, (d, shape) in enumerate(zip(direction, shapes)):
        if not isinstance(d, torch.Tensor) or tuple(d.shape) != shape:
            got = tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__
            raise ValueError(f"{name}[{i}] must have the shape of parameter {i}, {shape}; got {got}")
        if not torch.isfinite(d).all():
            raise ValueError(f"{name}[{i}] contains inf or nan")


def grid(steps: int, span: float) -> torch.Tensor:
    """`steps` coordinates from -span to span; an odd count puts 0 exactly in the middle."""
    check_int("steps", steps, minimum=2)
    check_positive("span", span)
    coords = torch.linspace(-span, span, steps, dtype=torch.float64)
    if steps % 2:
        coords[steps // 2] = 0.0  # exact, not linspace's rounding
    return coords


class Flat:
    """The model's parameters as one flat vector, and the directions flattened the same way."""

    def __init__(self, model: nn.Module):
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for p in model.parameters()]
        self.sizes = [p.numel() for p in model.parameters()]
        self.vector = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        self.buffers = {n: b.detach() for n, b in model.named_buffers()}

    def flatten(self, direction: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([d.detach().reshape(-1).to(self.vector.dtype) for d in direction])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of `flat` (..., n) as a {name: (..., *shape)} parameter dict."""
        lead = flat.shape[:-1]
        parts = torch.split(flat, self.sizes, dim=-1)
        return {n: t.reshape((*lead, *s)) for n, t, s in zip(self.names, parts, self.shapes)}
