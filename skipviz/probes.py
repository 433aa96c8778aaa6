"""Per-layer measurements at a given input: activation statistics, activation and weight gradients,
and the Glorot-Bengio prediction of how fast gradients shrink per layer."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ._validation import check_choice, check_int
from .models import ACTIVATIONS, INITS
from .training import check_input_fits, loss_for_targets

# E[f'(s)^2] for small pre-activations s: the factor an activation contributes to the backward
# variance in Glorot & Bengio's linear-regime argument (ReLU: half the units pass the gradient).
ACTIVATION_GAIN = {"tanh": 1.0, "relu": 0.5, "sigmoid": 1.0 / 16.0}
# n * Var[w] for a layer of fan-in n under each init of skipviz.models.init_weights.
N_VAR_W = {"default": 1.0 / 3.0, "xavier": 1.0, "he": 2.0, "small": 0.25}


@dataclass
class LayerProbe:
    """One value per probed layer l = 1..L (L = len(model.probe_layers)), each a (L,) tensor.

    activation_mean / activation_std: mean and standard deviation of h_l over batch and units.
    activation_grad: RMS over batch and units of dL/dh_l (the gradient w.r.t. the hidden state).
    weight_grad: RMS of dL/dW over the weight matrices inside layer l (biases excluded).
    """

    activation_mean: torch.Tensor
    activation_std: torch.Tensor
    activation_grad: torch.Tensor
    weight_grad: torch.Tensor

    @property
    def depth(self) -> int:
        return len(self.activation_grad)


def _rms(t: torch.Tensor) -> float:
    return t.detach().double().pow(2).mean().sqrt().item()


def probe(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_stats: bool = False) -> LayerProbe:
    """Forward and backward once on (x, y) and read every layer of `model.probe_layers`.

    x: (batch, ...) inputs; y: (batch,) int64 class labels (cross-entropy loss) or float targets
    of the output's shape (mean squared error). By default the model runs in eval mode, so
    batch-norm layers use their running averages; batch_stats=True runs it in train mode, so they
    normalize with this batch's statistics, as during training (at initialization the running
    averages are 0 and 1, and eval-mode batch norm does nothing). Either way the model is left as
    it was: gradients cleared, buffers (running averages) and train/eval mode restored.
    """
    layers = getattr(model, "probe_layers", None)
    if layers is None or len(layers) == 0:
        raise ValueError("model must have a non-empty `probe_layers` (every skipviz model has)")
    check_input_fits(model, x, y)
    states: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        output.retain_grad()
        states.append(output)

    handles = [layer.register_forward_hook(keep) for layer in layers]
    was_training = model.training
    saved_buffers = {name: buf.clone() for name, buf in model.named_buffers()}
    model.train(batch_stats)
    try:
        model.zero_grad(set_to_none=True)
        out = model(x)
        loss = loss_for_targets(out, y)
        loss.backward()
        weight_grads = []
        for layer in layers:
            grads = [m.weight.grad for m in layer.modules()
                     if isinstance(m, (nn.Linear, nn.Conv1d)) and m.weight.grad is not None]
            weight_grads.append(_rms(torch.cat([g.flatten() for g in grads])) if grads else math.nan)
        result = LayerProbe(
            activation_mean=torch.tensor([h.detach().mean().item() for h in states]),
            activation_std=torch.tensor([h.detach().std().item() for h in states]),
            activation_grad=torch.tensor([_rms(h.grad) for h in states], dtype=torch.float64),
            weight_grad=torch.tensor(weight_grads, dtype=torch.float64),
        )
    finally:
        for h in handles:
            h.remove()
        model.zero_grad(set_to_none=True)
        with torch.no_grad():
            for name, buf in model.named_buffers():
                buf.copy_(saved_buffers[name])
        model.train(was_training)
    return result


def per_layer_factor(values: torch.Tensor, skip_ends: int = 2) -> float:
    """The factor by which `values` (one per layer, input to output) shrink per layer toward the input.

    Fits log(values[l]) = a + b*l by least squares over the layers left after dropping `skip_ends`
    at each end (the first layer has a different fan-in, the last sits next to the loss) and
    returns exp(-b): 0.5 means each step back toward the input halves the value, 1.0 means flat.
    """
    check_int("skip_ends", skip_ends, minimum=0)
    v = torch.as_tensor(values, dtype=torch.float64)
    if skip_ends:
        v = v[skip_ends:-skip_ends]
    if len(v) < 2:
        raise ValueError(f"need at least 2 layers after dropping {skip_ends} at each end; got {len(v)}")
    if not torch.all(v > 0):
        raise ValueError("values must be positive to take their logarithm")
    layer = torch.arange(len(v), dtype=torch.float64)
    logs = v.log()
    slope = ((layer - layer.mean()) * (logs - logs.mean())).sum() / ((layer - layer.mean()) ** 2).sum()
    return math.exp(-slope.item())


def glorot_factor(activation: str, init: str) -> float:
    """Glorot & Bengio's predicted per-layer backward factor sqrt(n Var[w] E[f'^2]) for a plain net.

    Linear regime (small pre-activations, zero-mean units): tanh with PyTorch's default init gives
    sqrt(1/3), ReLU sqrt(1/6); Xavier + tanh and He + ReLU give 1.
    """
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("init", init, INITS)
    return math.sqrt(N_VAR_W[init] * ACTIVATION_GAIN[activation])
