"""Checks for notebook 07 (beyond addition), exercises 3-5 (exercises 1-2, spot the bug, are in
`nb07_bugs.py`): a highway layer with its gate bias, a dense block's forward pass, one U-Net level
with its long skip. Every check builds the student's class, gives a reference the same weights
(`modules.compare_modules`) and compares the two in train and eval mode and through backward();
a wrong answer is named by the typical mistake that behaves like it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .._validation import check_int, check_seed
from .feedback import CheckResult, call, exercise_check, not_done
from .modules import build, compare_modules, first_mistake, nudged


def _input(*shape: int, seed: int = 11) -> torch.Tensor:
    """A seeded input, shifted and spread so that ReLUs and batch norms see both signs."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 1.5 + 0.2


# ---------------------------------------------------------------------------- exercise 3


class _Highway(nn.Module):
    def __init__(self, width, gate_bias=-2.0, mistake=None):
        super().__init__()
        self.transform, self.gate = nn.Linear(width, width), nn.Linear(width, width)
        self.mistake = mistake

    def forward(self, x):
        m = self.mistake
        if m == "residual":   # the gate is never called
            return torch.relu(self.transform(x)) + x
        t = self.gate(x) if m == "no sigmoid" else torch.tanh(self.gate(x)) if m == "tanh gate" else \
            torch.sigmoid(self.gate(x))
        h = self.transform(x) if m == "no relu" else torch.relu(self.transform(x))
        if m == "carry t":
            return t * h + t * x
        if m == "swapped":
            return (1 - t) * h + t * x
        if m == "residual, gate ignored":
            return h + x
        return t * h + (1 - t) * x


HIGHWAY_MISTAKES = {
    "carry t": "the carry is weighted by T; it is weighted by 1 - T, so that T decides between transform and carry",
    "swapped": "transform and carry are swapped: y = T H(x) + (1 - T) x, so T near 0 carries the input",
    "no sigmoid": "the gate is not squashed: T = sigmoid(W_T x + b_T), between 0 and 1",
    "tanh gate": "the gate uses tanh, which runs from -1 to 1; T is a share between 0 and 1: sigmoid",
    "no relu": "H has no ReLU: H(x) = relu(W_H x + b_H)",
    "residual": "that is a residual layer, H(x) + x: the gate T is missing",
    "residual, gate ignored": "that is a residual layer, H(x) + x: the gate T is computed but never used",
}


@exercise_check
def check_highway_layer(cls: object) -> CheckResult:
    """Your HighwayLayer(width, gate_bias=-2.0): y = T H(x) + (1 - T) x with H(x) = relu(W_H x + b_H)
    and T = sigmoid(W_T x + b_T), b_T starting at gate_bias. Compared with the reference (same
    weights, train and eval mode, gradients), then the gate's starting bias is read."""
    name = "HighwayLayer"
    block, problem = build(cls, name, 12, gate_bias=-3.0)
    if problem is not None:
        return problem
    x = _input(10, 12)
    reference = _Highway(12)
    started = block
    block = nudged(block)   # off its starting values, so that a forward that resets them is seen
    differs, pairing, problem = compare_modules(block, reference, [x], name)
    if problem is not None:
        return problem
    if differs is not None:
        mistakes = {message: (lambda m=m: _Highway(12, mistake=m)) for m, message in HIGHWAY_MISTAKES.items()}
        known = first_mistake(block, mistakes, [x], name)
        return CheckResult(False, known or f"{differs} (compared with T H(x) + (1 - T) x, same weights); it "
                                           "matches none of the usual mistakes")
    gate = next(student for student, ref in pairing if ref is reference.gate)
    gate = dict(started.named_modules())[next(n for n, m in block.named_modules() if m is gate)]
    if gate.weight.detach().std() == 0:
        return CheckResult(False, "the gate's weights start all equal: only its bias is set to gate_bias; "
                                  "its weights keep nn.Linear's random initialization")
    if not torch.allclose(gate.bias.detach().float(), torch.full((12,), -3.0)):
        return CheckResult(False, "the gate's bias does not start at gate_bias (HighwayLayer(12, gate_bias=-3.0) "
                                  "starts elsewhere): nn.init.constant_(<gate layer>.bias, gate_bias)")
    return CheckResult(True, "correct: T H(x) + (1 - T) x with the gate's bias starting at gate_bias; same "
                             "outputs and gradients as the reference.")


# ---------------------------------------------------------------------------- exercise 4


class _FunctionBlock(nn.Module):
    """Wraps fn(x, layers) as a module, so a function is compared like a module."""

    def __init__(self, fn, layers: nn.ModuleList):
        super().__init__()
        self.fn, self.layers = fn, layers

    def forward(self, x):
        return self.fn(x, self.layers)


def _dense_reference(x, layers, mistake=None):
    features = [x]
    for layer in layers:
        if mistake == "newest first":
            features.append(layer(torch.cat(features[::-1], dim=1)))
        else:
            features.append(layer(torch.cat(features, dim=1)))
    if mistake == "no input":
        return torch.cat(features[1:], dim=1)
    if mistake == "last only":
        return features[-1]
    return torch.cat(features[::-1] if mistake == "newest first" else features, dim=1)


def dense_layers(k0: int = 4, growth: int = 3, n: int = 3, seed: int = 0) -> nn.ModuleList:
    """n layers of a dense block (BatchNorm, ReLU, 3-tap convolution to `growth` channels); layer
    l reads k0 + l * growth channels (l = 0, 1, ...). For the check and the notebook's exercise."""
    k0, growth = check_int("k0", k0, maximum=4096), check_int("growth", growth, maximum=4096)
    n, seed = check_int("n", n, maximum=1000), check_seed("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.ModuleList(nn.Sequential(nn.BatchNorm1d(k0 + j * growth), nn.ReLU(),
                                           nn.Conv1d(k0 + j * growth, growth, 3, padding=1))
                             for j in range(n))


DENSE_MISTAKES = {
    "no input": "the block's input is missing from its output: return the concatenation of x and every layer's output",
    "last only": "that is the last layer's output alone; a dense block returns every feature map, concatenated",
    "newest first": "the feature maps are concatenated newest first; keep the order [x, x_1, ..., x_l] that the "
                    "layers' weights expect",
}


@exercise_check
def check_dense_block(fn: object, seed: int = 0) -> CheckResult:
    """Your dense_block(x, layers): x (batch, k0, length); layer l reads the concatenation of x and
    all earlier layers' outputs along the channels, and the block returns x and every output
    concatenated, (batch, k0 + n growth, length). Compared with the reference on the same layers
    (`seed` draws them and the input)."""
    seed = check_seed("seed", seed)
    name = "dense_block"
    if fn is None or fn is Ellipsis:
        return not_done(name)
    if not callable(fn):
        return CheckResult(False, f"pass your function {name} itself; got {type(fn).__name__}")
    layers = nudged(dense_layers(seed=seed))
    x = _input(6, 4, 10, seed=11 + seed)
    received: dict[int, int] = {}   # layer index -> the channels it was first given

    def record(j):
        def hook(module, inputs):   # returns None: the layer's input is left as it is
            received.setdefault(j, inputs[0].shape[1])
        return hook

    hooks = [layer.register_forward_pre_hook(record(j)) for j, layer in enumerate(layers)]
    try:
        _, problem = call(fn, name, x.clone(), layers)
    finally:
        for h in hooks:
            h.remove()
    if problem is not None:
        if "Sizes of tensors must match" in problem.message:
            return CheckResult(False, "the feature maps are concatenated along the wrong axis: they share the "
                                      "batch and the length, and stack along the channels (dim=1)")
        wrong = next((j for j in sorted(received) if received[j] != 4 + 3 * j), None)
        if wrong is not None:
            return CheckResult(False, f"layer {wrong + 1} received {received[wrong]} channels, where it reads "
                                      f"{4 + 3 * wrong}: layer l reads the concatenation of x and the outputs of "
                                      "the layers before it, in order")
        return problem
    student = _FunctionBlock(fn, layers)
    differs, _, problem = compare_modules(student, _FunctionBlock(_dense_reference, dense_layers()), [x], name)
    if problem is not None:
        return problem
    if differs is None:
        return CheckResult(True, "correct: every layer reads all earlier feature maps and the block returns them "
                                 "all; same outputs and gradients as the reference.")
    mistakes = {message: (lambda m=m: _FunctionBlock(lambda x, ls, m=m: _dense_reference(x, ls, m), dense_layers()))
                for m, message in DENSE_MISTAKES.items()}
    known = first_mistake(student, mistakes, [x], name)
    return CheckResult(False, known or f"{differs} (compared with the reference on the same layers); it "
                                       "matches none of the usual mistakes")


# ---------------------------------------------------------------------------- exercise 5


class UNetLevelBase(nn.Module):
    """The layers of a one-level U-Net on (batch, length) signals, for notebook 07's exercise 5:
    `down` (1 -> c channels at full length), `bottom` (c -> 2c at half length), `upsample`
    (2c -> c, back to full length), `up` (reads 2c = [upsampled, encoder] channels, gives c),
    `out` (c -> 1). The forward pass is the exercise."""

    def __init__(self, channels: int = 8):
        super().__init__()
        c = check_int("channels", channels, maximum=4096)
        self.down = nn.Sequential(nn.Conv1d(1, c, 3, padding=1), nn.BatchNorm1d(c), nn.ReLU())
        self.bottom = nn.Sequential(nn.Conv1d(c, 2 * c, 3, padding=1), nn.BatchNorm1d(2 * c), nn.ReLU())
        self.upsample = nn.ConvTranspose1d(2 * c, c, 2, stride=2)
        self.up = nn.Sequential(nn.Conv1d(2 * c, c, 3, padding=1), nn.BatchNorm1d(c), nn.ReLU())
        self.out = nn.Conv1d(c, 1, 1)


class _UNetLevel(UNetLevelBase):
    def __init__(self, channels=8, mistake=None):
        super().__init__(channels)
        self.mistake = mistake

    def forward(self, x):
        skip = self.down(x.unsqueeze(1))
        pool = F.avg_pool1d if self.mistake == "avg pool" else F.max_pool1d
        y = self.upsample(self.bottom(pool(skip, 2)))
        if self.mistake == "zeros":
            skip = torch.zeros_like(skip)
        merged = torch.cat([skip, y] if self.mistake == "swapped" else [y, skip], dim=1)
        return self.out(self.up(merged)).squeeze(1)


UNET_MISTAKES = {
    "swapped": "the concatenation is [encoder, upsampled]; `up` was built to read [upsampled, encoder]",
    "zeros": "the long skip carries zeros: concatenate the encoder's features, down(x), as they are",
    "avg pool": "the encoder is average-pooled; this U-Net max-pools by 2 (F.max_pool1d(features, 2))",
}


@exercise_check
def check_unet_level(cls: object) -> CheckResult:
    """Your UNetLevel (a subclass of UNetLevelBase) with its forward pass: x (batch, length) ->
    down -> max-pool by 2 -> bottom -> upsample -> concatenate [upsampled, encoder features]
    -> up -> out -> (batch, length). Compared with the reference on the same weights."""
    name = "UNetLevel"
    net, problem = build(cls, name, 8)
    if problem is not None:
        return problem
    net = nudged(net)
    for x in (_input(6, 16), _input(1, 16)):   # a batch of one catches a squeeze() that drops it
        verdict = _compare_unet(net, x, name)
        if verdict is not None:
            return verdict
    return CheckResult(True, "correct: the encoder's features reach the decoder through the long skip; same "
                             "outputs and gradients as the reference.")


def _compare_unet(net: nn.Module, x: torch.Tensor, name: str) -> CheckResult | None:
    differs, _, problem = compare_modules(net, _UNetLevel(8), [x], name)
    if problem is not None:
        if "Sizes of tensors must match" in problem.message:
            return CheckResult(False, "the tensors you concatenate have different lengths: the long skip carries "
                                      "the encoder's features before pooling, at full length")
        if "channels" in problem.message:
            return CheckResult(False, "`up` received the wrong number of channels: it reads the upsampled "
                                      f"features and the encoder's, concatenated ({problem.message})")
        return problem
    if differs is None:
        return None
    if differs.startswith("its output has shape") and len(x) == 1:
        return CheckResult(False, f"{differs}: squeeze() without a dim also drops a batch of one; squeeze(1) "
                                  "removes only the channel")
    mistakes = {message: (lambda m=m: _UNetLevel(8, mistake=m)) for m, message in UNET_MISTAKES.items()}
    known = first_mistake(net, mistakes, [x], name)
    return CheckResult(False, known or f"{differs} (compared with the reference, same weights); it matches "
                                       "none of the usual mistakes")
