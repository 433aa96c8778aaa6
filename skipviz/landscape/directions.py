"""Directions in weight space for loss landscapes (Li et al. 2018; notebook 04 derives filter
normalization): a direction is a list of tensors, one per tensor of `model.parameters()`, in that
order. Also the centred coordinate grid of a slice and the flat view of a model's weights that
surfaces and curvature maps are computed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .._validation import check_choice, check_int, check_model, check_positive, check_seed, show
from ..errors import SkipvizTypeError, SkipvizValueError

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

    Filter normalization is written out in notebook 04, §2 (`filter_normalized`).
    """
    _check_weights(model)
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
    _check_weights(model)
    if isinstance(state, nn.Module):
        raise SkipvizTypeError(f"state must be a state_dict, e.g. other.state_dict(); got the model "
                               f"{type(state).__name__} itself")
    if not isinstance(state, Mapping):
        raise SkipvizTypeError(f"state must be a state_dict {{name: tensor}}; got {show(state)}")
    direction = []
    for name, p in model.named_parameters():
        t = state.get(name)
        if not isinstance(t, torch.Tensor) or t.shape != p.shape or t.device.type != "cpu" \
                or not (t.is_floating_point() and torch.isfinite(t).all()):
            raise SkipvizValueError(f"state must hold a finite float CPU tensor of shape {tuple(p.shape)} "
                                    f"for model's parameter {name!r}; got {show(t)}")
        direction.append(state[name].detach().to(p.dtype) - p.detach())
    return direction


def _check_weights(model: object) -> None:
    check_model("model", model)
    if not any(True for _ in model.parameters()):
        raise SkipvizValueError(f"model {type(model).__name__} has no parameters: its loss landscape "
                                "has no directions")


def check_direction(model: nn.Module, direction: Sequence[torch.Tensor], name: str = "direction") -> None:
    """Raise ValueError unless `direction` has one finite tensor per parameter of `model`, each of
    the parameter's shape."""
    _check_weights(model)
    if not isinstance(name, str) or not name.strip():
        raise SkipvizValueError(f"name must be a non-empty string (what messages call the direction); "
                                f"got {show(name)}")
    shapes = [tuple(p.shape) for p in model.parameters()]
    if isinstance(direction, torch.Tensor) or not isinstance(direction, Sequence):
        raise SkipvizValueError(f"{name} must be a list of {len(shapes)} tensors, one per parameter "
                         f"of the model (see random_direction); got {type(direction).__name__}")
    if len(direction) != len(shapes):
        raise SkipvizValueError(f"{name} must have one tensor per parameter of the model ({len(shapes)}); "
                         f"got {len(direction)}")
    for i, (d, shape) in enumerate(zip(direction, shapes)):
        if not isinstance(d, torch.Tensor) or tuple(d.shape) != shape:
            got = tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__
            raise SkipvizValueError(f"{name}[{i}] must have the shape of model's parameter {i}, {shape}; got {got}")
        if d.device.type != "cpu" or not d.is_floating_point():
            raise SkipvizValueError(f"{name}[{i}] must be a floating-point CPU tensor; got {show(d)}")
        if not torch.isfinite(d).all():
            raise SkipvizValueError(f"{name}[{i}] contains inf or nan")


# A grid finer than this is not a picture but hours of evaluation (points x points points in 2-D).
MAX_POINTS = 1001


def grid(points: int, span: float) -> torch.Tensor:
    """`points` coordinates from -span to span; an odd count puts 0 exactly in the middle."""
    points = check_int("points", points, minimum=2, maximum=MAX_POINTS)
    span = check_positive("span", span)
    coords = torch.linspace(-span, span, points, dtype=torch.float64)
    if points % 2:
        coords[points // 2] = 0.0  # exact, not linspace's rounding
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
