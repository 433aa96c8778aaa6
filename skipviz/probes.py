"""Per-layer measurements at a given input: activation statistics, activation and weight gradients,
and the Glorot-Bengio prediction of how fast gradients shrink per layer (notebook 01); the
gradient of a model along a line of inputs and its autocorrelation (notebook 08)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

from ._validation import check_bool, check_choice, check_int, float_array, show
from .errors import SkipvizValueError
from .models import ACTIVATIONS, INITS, ModelConfig
from .training import check_input_fits, check_inputs, loss_for_targets

__all__ = ["ACTIVATION_GAIN", "N_VAR_W", "LayerProbe", "autocorrelation", "autocovariance", "frozen_statistics",
           "glorot_factor", "input_gradient", "per_layer_factor", "probe"]

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
    # Every argument is checked before a hook is attached or a mode changed.
    batch_stats = check_bool("batch_stats", batch_stats)
    check_input_fits(model, x, y)
    layers = getattr(model, "probe_layers", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise SkipvizValueError(f"model must have a non-empty `probe_layers` ModuleList, the layers probe "
                                f"reads (skipviz's PlainMLP, TelescopeMLP, ResidualMLP, HighwayMLP, SkipConvNet "
                                f"and ResNet1d have one); {type(model).__name__} has none")
    if batch_stats and len(x) < 2 and _has_batch_norm(model):
        raise SkipvizValueError("x must hold at least 2 examples with batch_stats=True: batch norm "
                                "normalizes by the batch's own statistics")
    states: list[torch.Tensor] = []

    def keep(_module, _inputs, output):
        states.append(output)

    weights = [[m.weight for m in layer.modules() if isinstance(m, (nn.Linear, nn.Conv1d))
                and m.weight.requires_grad] for layer in layers]
    handles = [layer.register_forward_hook(keep) for layer in layers]
    was_training = model.training
    saved_buffers = {name: buf.clone() for name, buf in model.named_buffers()}
    model.train(batch_stats)
    try:
        # A copy that requires grad: the hidden states get a graph even when no weight trains.
        out = model(x.detach().clone().requires_grad_(True))
        if len(states) != len(layers) or not all(isinstance(h, torch.Tensor) for h in states):
            raise SkipvizValueError(f"model {type(model).__name__}: each of its probe_layers must run "
                                    "once per forward pass and return a tensor")
        loss = loss_for_targets(out, y)
        flat = [w for ws in weights for w in ws]
        # autograd.grad, not backward: the caller's .grad fields stay as they were.
        grads = torch.autograd.grad(loss, states + flat, allow_unused=True)
        state_grads, weight_grads = grads[:len(states)], list(grads[len(states):])
        weight_rms = []
        for ws in weights:
            mine = [g for g in (weight_grads.pop(0) for _ in ws) if g is not None]
            weight_rms.append(_rms(torch.cat([g.flatten() for g in mine])) if mine else math.nan)
        result = LayerProbe(
            activation_mean=torch.tensor([h.detach().mean().item() for h in states]),
            activation_std=torch.tensor([h.detach().std().item() for h in states]),
            activation_grad=torch.tensor([_rms(g) if g is not None else 0.0 for g in state_grads],
                                         dtype=torch.float64),
            weight_grad=torch.tensor(weight_rms, dtype=torch.float64),
        )
    finally:
        for h in handles:
            h.remove()
        with torch.no_grad():
            for name, buf in model.named_buffers():
                buf.copy_(saved_buffers[name])
        model.train(was_training)
    return result


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def per_layer_factor(values: torch.Tensor, skip_ends: int = 2) -> float:
    """The factor by which `values` (one per layer, input to output) shrink per layer toward the input.

    Fits log(values[l]) = a + b*l by least squares over the layers left after dropping `skip_ends`
    at each end (the first layer has a different fan-in, the last sits next to the loss) and
    returns exp(-b): 0.5 means each step back toward the input halves the value, 1.0 means flat.
    """
    skip_ends = check_int("skip_ends", skip_ends, minimum=0)
    array = float_array(values)
    if array is None:
        raise SkipvizValueError(f"values must be one number per layer (a 1-D tensor, array or list); "
                                f"got {show(values)}")
    v = torch.as_tensor(array)
    if v.dim() == 2 and 1 in v.shape:
        v = v.reshape(-1)  # (L, 1) or (1, L): one value per layer all the same
    if v.dim() != 1:
        raise SkipvizValueError(f"values must be one number per layer, shape (L,); got shape {tuple(v.shape)}")
    if len(v) - 2 * skip_ends < 2:
        raise SkipvizValueError(f"values must keep at least 2 layers after dropping skip_ends={skip_ends} "
                                f"at each end; got {len(v)} values")
    if skip_ends:
        v = v[skip_ends:-skip_ends]
    if not torch.all(v > 0) or not torch.isfinite(v).all():
        raise SkipvizValueError("values must be positive and finite to take their logarithm")
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


# ---------------------------------------------------------------------------- notebook 08

def input_gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """dy/dx of a model with one input and one output at every point of a line of inputs.

    x: (n, 1), the points (e.g. 256 points on [-2, 2]); returns (n,), the derivative of the
    model's output at each point, in x's dtype. Written out in notebook 08, §1.

    Batch normalization: a model in train mode normalizes with the statistics of its batch, here
    the whole line x; they are computed once and held fixed while differentiating
    (`frozen_statistics`), so every value is the derivative of the function the network computes
    on this line, at that point (without it, each value would also carry how moving one point
    shifts the statistics of all). In eval mode the running statistics are used. Dropout is off.
    The model is not changed: the derivative is taken on a copy.
    """
    twin = frozen_statistics(model, x)
    xs = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        y = _run(twin, xs)
        if y.shape not in ((len(x),), (len(x), 1)):
            raise SkipvizValueError(f"model must give one output per point, shape ({len(x)}, 1) or ({len(x)},); "
                                    f"got shape {tuple(y.shape)}")
        # Every output depends on its own point only (eval mode), so the gradient of the sum holds
        # each point's own derivative.
        (g,) = torch.autograd.grad(y.sum(), xs)
    return g[:, 0].detach()


def _check_line(model: nn.Module, x: torch.Tensor) -> None:
    check_inputs(model, x)
    if x.dim() != 2 or x.shape[1] != 1:
        raise SkipvizValueError(f"x must have shape (n, 1): points on a line of one-dimensional inputs; got "
                                f"shape {tuple(x.shape)}")
    config = getattr(model, "config", None)
    if isinstance(config, ModelConfig) and config.input_size()[1] != 1:
        key, size = config.input_size()
        raise SkipvizValueError(f"model {type(model).__name__}({key}={size}) takes {size} inputs; the gradient "
                                f"along a line needs a model of one input ({key}=1)")


def _run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    try:
        return model(x)
    except Exception as err:
        raise SkipvizValueError(f"model cannot take x of shape {tuple(x.shape)} (one input per point): "
                                f"{type(err).__name__}: {err}") from None


def frozen_statistics(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """A copy of `model` in eval mode that computes, at each point of x (n, 1) alone, what `model`
    computes on the batch x: a model in train mode normalizes with the batch's statistics, so each of the
    copy's batch-norm layers gets the mean and (biased) variance of its input over x, held fixed;
    a model in eval mode keeps its running statistics. Dropout is off. `model` is not changed."""
    _check_line(model, x)
    twin = copy.deepcopy(model)
    norms = [m for m in twin.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if twin.training and norms:
        if len(x) < 2:
            raise SkipvizValueError("x must hold at least 2 points when the model normalizes with batch "
                                    "statistics (train mode): one point has no variance")
        seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

        def record(module, inputs):
            z = inputs[0].detach()
            dims = [0, *range(2, z.dim())]
            seen[module] = (z.mean(dims), z.var(dims, unbiased=False))

        hooks = [m.register_forward_pre_hook(record) for m in norms]
        try:
            with torch.no_grad():
                _run(twin, x)
        finally:
            for h in hooks:
                h.remove()
        for m in norms:
            m.running_mean, m.running_var = seen[m]
            m.track_running_stats = True
    return twin.eval()


def _series(g: object, max_lag: object) -> tuple[torch.Tensor, int]:
    array = float_array(g)
    if array is None or array.ndim != 1 or len(array) < 2:
        raise SkipvizValueError(f"g must be a 1-D sequence of at least 2 numbers (a gradient along a line); "
                                f"got {show(g)}")
    if not math.isfinite(float(abs(array).sum())):
        raise SkipvizValueError("g holds inf or nan")
    max_lag = check_int("max_lag", max_lag, minimum=0, maximum=len(array) - 1)
    return torch.as_tensor(array, dtype=torch.float64), max_lag


def autocovariance(g: object, max_lag: int) -> torch.Tensor:
    """C(k) = mean over i of (g_i - mean g)(g_{i+k} - mean g) for k = 0..max_lag: how alike the
    gradient is at points k steps apart on the line. g: (n,) values; returns (max_lag + 1,)
    float64. The mean is over the n - k pairs at each lag."""
    g, max_lag = _series(g, max_lag)
    d = g - g.mean()
    return torch.stack([(d[:len(d) - k] * d[k:]).mean() for k in range(max_lag + 1)])


def autocorrelation(g: object, max_lag: int) -> torch.Tensor:
    """rho(k) = C(k) / C(0) for k = 0..max_lag (`autocovariance`): 1 at lag 0; near 1 at small
    lags for a smooth ("brown noise") gradient, near 0 for one that looks like white noise.
    g: (n,) values; returns (max_lag + 1,) float64. Raises for a constant g, whose
    autocorrelation is undefined. Written out in notebook 08, §1."""
    c = autocovariance(g, max_lag)
    if not c[0] > 0:
        raise SkipvizValueError("g is constant along the line: its autocorrelation is undefined (0 / 0)")
    return c / c[0]
