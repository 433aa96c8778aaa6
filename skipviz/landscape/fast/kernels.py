"""The layers of a model evaluated at P weight vectors at once, shared by `points` (loss
surfaces) and `rop` (Hessian-vector products).

Activations are (P * n, ...): the data repeated once per point along the batch dimension, so
layers without parameters need no change. Every parameter has a leading points dimension P.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_NARROW = 16  # Linear layers with fewer outputs use the W x^T form (see `linear`)


def linear(points: int, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           shared: bool = False, split: bool = False) -> torch.Tensor:
    """x (P*n, ..., in), weight (P, out, in), bias (P, out) or None -> (P*n, ..., out), or with
    split=True (P, n, ..., out). shared=True: x (n, ..., in) is the same for every point."""
    if points == 1:  # the model's own F.linear: the same bits as the model's forward pass
        out = F.linear(x, weight[0], None if bias is None else bias[0])
        return out.unsqueeze(0) if split else out
    xs = x.reshape(1, -1, x.shape[-1]).expand(points, -1, -1) if shared \
        else x.reshape(points, -1, x.shape[-1])
    lead = (points * x.shape[0], *x.shape[1:-1]) if shared else x.shape[:-1]
    if weight.shape[1] < _NARROW:
        # Few outputs (a classifier's 10): W x^T is two to three times faster on CPU than x W^T.
        xt = xs.transpose(1, 2)
        out = (torch.bmm(weight, xt) if bias is None
               else torch.baddbmm(bias.unsqueeze(2), weight, xt)).transpose(1, 2)
    else:
        wt = weight.transpose(1, 2)
        out = torch.bmm(xs, wt) if bias is None else torch.baddbmm(bias.unsqueeze(1), xs, wt)
    if split:
        return out.reshape(points, -1, *lead[1:], weight.shape[1])
    return out.reshape(*lead, weight.shape[1])


def linear_into(points: int, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                target: torch.Tensor) -> bool:
    """target += linear(points, x, weight, bias) in place (a residual block's "+ x" without a pass
    over the activations) when the layout allows; whether it was done."""
    if not target.is_contiguous() or target.shape != (*x.shape[:-1], weight.shape[1]) \
            or target.dtype != weight.dtype:
        return False
    if target.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
        return False  # x is (part of) the target: adding the bias first would change the input
    acc = target.view(points, -1, weight.shape[1])
    if bias is not None:
        acc.add_(bias.unsqueeze(1))
    acc.baddbmm_(x.reshape(points, -1, x.shape[-1]), weight.transpose(1, 2))
    return True


def conv1d(points: int, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
           stride=1, padding=0, dilation=1, groups: int = 1) -> torch.Tensor:
    """x (P*n, C, L), weight (P, O, C/groups, k), bias (P, O) -> (P*n, O, L'): the points become
    groups of one convolution over the channels of all points side by side."""
    n = x.shape[0] // points
    xs = x.reshape(points, n, *x.shape[1:]).transpose(0, 1).reshape(n, points * x.shape[1], -1)
    out = F.conv1d(xs, weight.reshape(-1, *weight.shape[2:]),
                   None if bias is None else bias.reshape(-1), stride, padding, dilation,
                   groups * points)
    return out.reshape(n, points, weight.shape[1], -1).transpose(0, 1).reshape(points * n, weight.shape[1], -1)


def affine(mean: torch.Tensor, var: torch.Tensor, weight: torch.Tensor | None,
           bias: torch.Tensor | None, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode batch norm as y = x * scale + shift: (scale, shift), each (C,) or (P, C)."""
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = weight * scale
    shift = -mean * scale
    return scale, shift if bias is None else shift + bias


def batch_norm(points: int, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
               weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """Eval-mode batch norm of x (P*n, C) or (P*n, C, L); weight, bias (P, C) or None; the
    running mean and var (C,) are shared by the points."""
    if points == 1:
        return F.batch_norm(x, mean, var, None if weight is None else weight[0],
                            None if bias is None else bias[0], False, 0.0, eps)
    scale, shift = affine(mean, var, weight, bias, eps)
    shape = (points if scale.dim() == 2 else 1, 1, -1, *[1] * (x.dim() - 2))
    xs = x.reshape(points, -1, *x.shape[1:])
    return torch.addcmul(shift.view(shape), xs, scale.view(shape)).reshape(x.shape)


def fold(weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor,
         shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch norm y = z * scale + shift folded into the layer z = W x + b before it, per point:
    (scale W, scale b + shift) for weight (P, out, ...), bias (P, out) or None, scale and shift
    (out,) or (P, out)."""
    scale = scale.expand(len(weight), -1)
    shift = shift.expand(len(weight), -1)
    folded = weight * scale.view(*scale.shape, *[1] * (weight.dim() - 2))
    return folded, shift if bias is None else torch.addcmul(shift, bias, scale)
