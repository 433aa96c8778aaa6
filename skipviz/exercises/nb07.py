"""Checks for notebook 07 (beyond addition).

Exercises 1-2 (spot the bug): the article's ResidualBlock and the lecture's SkipBlock, fixed.
Exercises 3-5: a highway layer with its gate bias, a dense block's forward pass, one U-Net level
with its long skip. Every check builds the student's class, gives a reference the same weights
(`feedback.compare_modules`) and compares the two in train and eval mode and through backward();
a wrong answer is named by the typical mistake that behaves like it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .._validation import check_int, check_seed
from .feedback import (
    CheckResult,
    build,
    call,
    compare_modules,
    exercise_check,
    first_mistake,
    not_done,
    nudged,
)


def _input(*shape: int, seed: int = 11) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 1.5 + 0.2


# ---------------------------------------------------------------------------- exercise 1


class _ResidualBlock(nn.Module):
    """The article's block as meant, and its typical wrong fixes (`mistake`)."""

    def __init__(self, in_channels, out_channels, stride=1, downsample=None, mistake=None):
        super().__init__()
        self.mistake = mistake
        self.conv1 = nn.Conv1d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 3, padding=1)
        self.bn2 = self.bn1 if mistake == "shared" else nn.BatchNorm1d(out_channels)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.bn1(self.conv1(x))
        out = out if self.mistake == "no inner relu" else torch.relu(out)
        if self.mistake == "bn on shortcut":
            out = self.conv2(out)
            residual = self.bn2(residual)
        elif self.mistake == "bn after add":
            return torch.relu(self.bn2(self.conv2(out) + residual))
        else:
            out = self.bn2(self.conv2(out))
        if self.mistake == "no skip":
            return torch.relu(out)
        out = out + residual
        return out if self.mistake == "no final relu" else torch.relu(out)


RESIDUAL_MISTAKES = {
    "shared": "one BatchNorm still normalizes both convolutions: give each convolution its own",
    "no inner relu": "the ReLU between the two convolutions is missing: relu(bn1(conv1(x)))",
    "bn on shortcut": "the second BatchNorm sits on the shortcut; it belongs after conv2, on the branch",
    "bn after add": "the second BatchNorm normalizes the sum; it belongs on the branch, bn2(conv2(out)), before "
                    "the shortcut is added",
    "no final relu": "the ReLU after the addition is missing: the article's block ends with relu(out + residual)",
    "no skip": "the shortcut is gone: the block must return relu(out + residual)",
}


def _downsampler() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        return nn.Sequential(nn.Conv1d(8, 16, 1, stride=2), nn.BatchNorm1d(16))


@exercise_check
def check_residual_block(cls: object) -> CheckResult:
    """Your ResidualBlock(in_channels, out_channels, stride=1, downsample=None): the article's block
    with its bugs fixed (notebook 07, exercise 1). Compared with the block as meant, with the same
    weights, once with the same channels and once halving the length and doubling the channels
    through a downsampler; in train and eval mode and through backward()."""
    name = "ResidualBlock"
    if cls is None or cls is Ellipsis:
        return not_done(name)
    for args, x in (((8, 16, 2), _input(6, 8, 20)), ((8, 8), _input(6, 8, 20))):
        down = _downsampler() if len(args) == 3 else None
        block, problem = build(cls, name, *args, downsample=down)
        if problem is not None:
            return problem
        shared = {id(m) for m in down.modules()} if down is not None else set()
        if any(isinstance(m, nn.Conv1d) and m.bias is None and id(m) not in shared for m in block.modules()):
            return CheckResult(False, "your convolutions have bias=False (torchvision's style); this exercise keeps "
                                      "the article's layers, nn.Conv1d with its bias")
        block = nudged(block, [down] if down else [])
        differs, _, problem = compare_modules(block, _ResidualBlock(*args, downsample=down), [x], name,
                                              [down] if down else [])
        if problem is not None:
            if "NameError" in problem.message and "downsample" in problem.message:
                return CheckResult(False, "forward still reads the name `downsample`: inside forward the "
                                          "downsampler is self.downsample")
            if down is not None and "must match the size" in problem.message:
                return CheckResult(False, "with a downsampler the shortcut must be self.downsample(x); "
                                          f"yours does not match the branch's shape ({problem.message})")
            return problem
        if differs is None:
            continue
        where = "with the same channels" if down is None else "with a downsampler (8 -> 16 channels, stride 2)"
        mistakes = {message: (lambda m=m, a=args, d=down: _ResidualBlock(*a, downsample=d, mistake=m))
                    for m, message in RESIDUAL_MISTAKES.items()}
        known = first_mistake(block, mistakes, [x], name, [down] if down else [])
        if known:
            return CheckResult(False, known)
        return CheckResult(False, f"{where}: {differs} (compared with the block as meant, same weights); "
                                  "it matches none of the usual mistakes: compare your forward line by line "
                                  "with the published one")
    return CheckResult(True, "correct: the shortcut uses self.downsample and each convolution has its own "
                             "BatchNorm; same outputs and gradients as the block as meant, in train and eval mode.")


# ---------------------------------------------------------------------------- exercise 2


class _SkipBlock(nn.Module):
    """The lecture's SkipBlock as meant (`mistake` for the typical wrong fixes). `second_conv`:
    whether a block that changes the channels also runs conv2 — the lecture runs it only when
    in_ch == out_ch, and either reading is a right fix."""

    def __init__(self, in_ch, out_ch, mistake=None, second_conv=True):
        super().__init__()
        self.in_ch, self.out_ch, self.mistake = in_ch, out_ch, mistake
        self.conv1 = nn.Conv1d(in_ch, out_ch, 3, padding=1)
        self.bn1 = nn.BatchNorm1d(out_ch)
        if second_conv or in_ch == out_ch:
            self.conv2, self.bn2 = nn.Conv1d(out_ch, out_ch, 3, padding=1), nn.BatchNorm1d(out_ch)
        else:
            self.conv2 = None

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        m = self.mistake
        if self.conv2 is not None:
            out = self.bn2(self.conv2(out))
            if m != "relu after sum":
                out = torch.relu(out)
        if self.in_ch == self.out_ch:
            skip = x
        else:
            zeros = torch.zeros_like(x)
            skip = {"first half": torch.cat([x, zeros], 1), "second half": torch.cat([zeros, x], 1),
                    "twice first": torch.cat([2 * x, zeros], 1),
                    "interleaved": torch.repeat_interleave(x, 2, dim=1)}.get(m, torch.cat([x, x], 1))
        if m == "no skip":
            return out
        out = out + skip
        return torch.relu(out) if m == "relu after sum" else out


SKIP_MISTAKES = {
    "first half": "the input reaches only the first half of the doubled channels; add it to out[:, in_ch:] too",
    "second half": "the input reaches only the second half of the doubled channels; add it to out[:, :in_ch] too",
    "twice first": "the input is added twice to the first half; the second copy belongs to out[:, in_ch:]",
    "interleaved": "each input channel is repeated side by side (repeat_interleave); the doubled channels "
                   "are [x, x]: torch.cat([x, x], dim=1)",
    "no skip": "the block has no skip connection left",
    "relu after sum": "the ReLU now comes after the addition; the lecture's block adds the input after its last ReLU",
}


@exercise_check
def check_skip_block(cls: object) -> CheckResult:
    """Your SkipBlock(in_ch, out_ch): the lecture's block with its bugs fixed (notebook 07,
    exercise 2). Compared with the block as meant, with the same weights, for in_ch = out_ch = 8
    and for 8 -> 16 channels, in train and eval mode and through backward()."""
    name = "SkipBlock"
    if cls is None or cls is Ellipsis:
        return not_done(name)
    for args in ((8, 8), (8, 16)):
        x = _input(6, 8, 20)
        block, problem = build(cls, name, *args)
        if problem is not None:
            return problem
        block = nudged(block)
        differs, _, problem = compare_modules(block, _SkipBlock(*args), [x], name)
        if problem is not None:
            if "to have 8 channels, but got 16" in problem.message:
                return CheckResult(False, "conv2 is built for in_ch channels, but it receives conv1's out_ch: "
                                          "build it as Conv1d(out_ch, out_ch, ...)")
            if args == (8, 16) and ("must match the size" in problem.message or "shape" in problem.message):
                return CheckResult(False, "with 8 -> 16 channels, out[:, in_ch] is a single channel and cannot take "
                                          f"the whole input ({problem.message}): the input belongs on each half")
            return problem
        if differs is not None and args == (8, 16):   # the lecture's reading: no conv2 when the channels change
            differs, _, _ = compare_modules(block, _SkipBlock(*args, second_conv=False), [x], name)
        reading_input = [m for m in block.modules() if isinstance(m, nn.Conv1d) and m.in_channels == args[0]]
        if differs is None and args == (8, 16) and len(reading_input) > 1:
            # conv2 built for in_ch channels: unused here, but wrong (the lecture's bug, still in place)
            return CheckResult(False, "conv2 is still built as Conv1d(in_ch, out_ch, ...), though it reads conv1's "
                                      "output: out_ch channels. Build it as Conv1d(out_ch, out_ch, ...)")
        if differs is None:
            continue
        messages = dict(SKIP_MISTAKES)
        if args == (8, 16):  # it passed (8, 8), so its skip is missing only when the channels double
            messages["no skip"] = ("with out_ch = 2 in_ch the block adds no skip: the input, doubled to [x, x] "
                                   "along the channels, must still be added")
        mistakes = {message: (lambda m=m, a=args: _SkipBlock(*a, mistake=m)) for m, message in messages.items()}
        known = first_mistake(block, mistakes, [x], name)
        if known:
            return CheckResult(False, known)
        return CheckResult(False, f"for SkipBlock{args}: {differs} (compared with the block as meant, same "
                                  "weights); it matches none of the usual mistakes")
    return CheckResult(True, "correct: conv2 reads out_ch channels and the input reaches both halves of the "
                             "doubled channels; same outputs and gradients as the block as meant.")


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
