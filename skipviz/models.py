"""The networks of the notebooks, all sharing one skip control: `model.skips`, a list of booleans."""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Iterator, MutableSequence, Sequence

import numpy as np
import torch
from torch import nn

from ._validation import (
    check_choice,
    check_index,
    check_int,
    check_model,
    check_number,
    check_positive,
    check_seed,
    show,
)
from .errors import SkipvizTypeError, SkipvizValueError

__all__ = ["ACTIVATIONS", "BLOCKS", "INITS", "NORMS", "SHORTCUTS", "SPANS", "Dense", "DenseLayer1d",
           "DenseNet1d", "HighwayLayer", "HighwayMLP", "PlainMLP", "PreActBlock1d", "ResNet1d",
           "ResidualBlock", "ResidualMLP", "SkipBlock1d", "SkipConvNet", "SkipList", "SkipNet",
           "TelescopeMLP", "UNet1d", "count_parameters", "init_weights", "make_activation"]

ACTIVATIONS = ("relu", "tanh", "sigmoid")
INITS = ("default", "xavier", "he", "small")
BLOCKS = ("v1", "v2", "preact")
SPANS = (1, 2)
NORMS = ("none", "batch")
SHORTCUTS = ("double", "projection")


# A model above these would not fit in a laptop's memory (or take minutes to build): refused
# before anything is allocated, naming the sizes that make it so.
MAX_PARAMETERS = 500_000_000  # 2 GB of float32 weights
MAX_DEPTH = 10_000  # layers or blocks in one model


def check_budget(model: str, parameters: int, **sizes: int) -> None:
    """Raise SkipvizValueError if a model of about `parameters` weights is too big to build.
    `model` is its class name, `sizes` the arguments that set its size (named in the message)."""
    if parameters > MAX_PARAMETERS:
        given = ", ".join(f"{k}={v:,}" for k, v in sizes.items())
        raise SkipvizValueError(
            f"{model}({given}) would have about {parameters:.2g} weights ({parameters * 4 / 1e9:.0f} GB "
            f"of float32); skipviz models stop at {MAX_PARAMETERS:,}: choose a smaller "
            f"{' or '.join(sizes)}")


def _depth(name: str, value: object) -> int:
    return check_int(name, value, maximum=MAX_DEPTH)


def make_activation(name: str) -> nn.Module:
    """nn.ReLU, nn.Tanh or nn.Sigmoid by name."""
    name = check_choice("activation name", name, ACTIVATIONS)
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[name]()


def init_weights(model: nn.Module, init: str) -> None:
    """Re-initialize every Linear and Conv1d of `model` in place.

    'default': PyTorch's own U(+-1/sqrt(fan_in)) for weights and biases, i.e. Var[w] = 1/(3 fan_in).
    'xavier': Glorot normal, Var[w] = 2/(fan_in + fan_out); biases 0.
    'he':     Kaiming normal for ReLU, Var[w] = 2/fan_in; biases 0.
    'small':  N(0, 1/(4 fan_in)), so n Var[w] = 1/4; biases 0 (a deliberately vanishing init).
    """
    check_model("model", model)
    init = check_choice("init", init, INITS)
    if init == "default":
        return
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d)):
            fan_in = m.weight[0].numel()
            if init == "xavier":
                nn.init.xavier_normal_(m.weight)
            elif init == "he":
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            else:
                nn.init.normal_(m.weight, std=0.5 / math.sqrt(fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SkipList(MutableSequence):
    """`model.skips`: the model's skip switches as a list-like view that writes through.

    `net.skips[3] = False` and `net.skips[2:5] = [False] * 3` change the model; every write is
    checked (booleans only, the length fixed). Compares equal to a list of the same booleans.
    """

    def __init__(self, model: SkipNet):
        self._model = model

    def __len__(self) -> int:
        return len(self._model._skips)

    def __getitem__(self, index):
        return self._model._skips[self._index(index)]

    def __iter__(self) -> Iterator[bool]:
        return iter(list(self._model._skips))

    def __setitem__(self, index, value) -> None:
        for v in (value if isinstance(index, slice) else [value]):
            if not isinstance(v, (bool, np.bool_)):
                raise SkipvizValueError(f"skips[{index!r}] must be True or False; got {v!r}")
        new = list(self._model._skips)
        new[self._index(index)] = value
        self._model.skips = new

    def __delitem__(self, index) -> None:
        raise SkipvizValueError("a model's number of skips is fixed; to switch one off, set "
                         "model.skips[i] = False")

    def insert(self, index, value) -> None:
        self.__delitem__(index)

    def _index(self, index):
        if isinstance(index, slice):
            return index
        n = len(self)
        if not isinstance(index, (int, np.integer)) or isinstance(index, (bool, np.bool_)) \
                or not -n <= index < n:
            raise SkipvizValueError(f"skip index must be an integer in 0..{n - 1} (or -{n}..-1); got {index!r}")
        return int(index)

    def __eq__(self, other) -> bool:
        if isinstance(other, (SkipList, list, tuple)):
            return list(self) == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return repr(list(self))


# Who wants to hear of a change of a model's skips (SkipToggles): model -> weak callbacks.
_SKIP_LISTENERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class SkipNet(nn.Module):
    """Base class of every model: one boolean per skip connection in `self.skips`.

    Subclasses call `self._init_skips(n)` and read `self._skips[i]` in their forward pass.
    """

    @property
    def probe_layers(self) -> nn.ModuleList:
        """The modules whose outputs are "the hidden state after layer l", from the input."""
        return self.blocks

    def _init_skips(self, n: int) -> None:
        self._skips = [True] * n

    @property
    def skips(self) -> SkipList:
        """One boolean per skip connection, in order from the input; True = the skip is used.

        A view: `model.skips[i] = False` switches skip i off; `list(model.skips)` is a copy.
        """
        return SkipList(self)

    @skips.setter
    def skips(self, values: Sequence[bool]) -> None:
        n = len(self._skips)
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise SkipvizValueError(f"skips must be a list of {n} booleans; got {values!r}")
        values = list(values)
        if len(values) != n:
            raise SkipvizValueError(f"skips must have length {n} (one boolean per skip connection); "
                             f"got length {len(values)}")
        if not all(isinstance(v, (bool, np.bool_)) for v in values):
            raise SkipvizValueError(f"skips must be a list of {n} booleans (True/False); got {values!r}")
        self._skips = [bool(v) for v in values]
        for listener in list(_SKIP_LISTENERS.get(self, [])):
            callback = listener()
            if callback is not None:
                callback(list(self._skips))

    def on_skips_change(self, callback) -> None:
        """Call `callback(new_skips)` after every change of `skips`. A bound method (a widget's)
        is held weakly and stops being called once its object is gone; a plain function or
        lambda is held for the model's lifetime."""
        if not callable(callback):
            raise SkipvizTypeError(f"callback must be a function of the new skips; got {show(callback)}")
        if hasattr(callback, "__self__") and hasattr(callback, "__func__"):
            ref = weakref.WeakMethod(callback)
        else:
            ref = (lambda f: lambda: f)(callback)  # a strong reference, called like a weakref
        _SKIP_LISTENERS.setdefault(self, []).append(ref)

    @property
    def num_skips(self) -> int:
        """How many skip connections the model has (0 for a plain network)."""
        return len(self._skips)

    @contextlib.contextmanager
    def skips_off(self, indices: Sequence[int] | None = None) -> Iterator[SkipNet]:
        """Temporarily switch off the listed skips (all of them when `indices` is None)."""
        saved = list(self._skips)
        chosen = range(self.num_skips) if indices is None else indices
        mask = list(saved)
        for i in chosen:
            mask[check_index("skip index", i, 0, self.num_skips - 1)] = False
        self.skips = mask
        try:
            yield self
        finally:
            self.skips = saved

    def extra_repr(self) -> str:
        off = [i for i, s in enumerate(self._skips) if not s]
        return f"skips off: {off}" if off else ""


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run a constructor's random draws on their own seed, leaving the global RNG untouched."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class Dense(nn.Sequential):
    """One hidden layer of a plain MLP: Linear, then the activation. Output (batch, out)."""

    def __init__(self, n_in: int, n_out: int, activation: str):
        n_in, n_out = check_int("n_in", n_in), check_int("n_out", n_out)
        check_budget("Dense", n_in * n_out, n_in=n_in, n_out=n_out)
        super().__init__(nn.Linear(n_in, n_out), make_activation(activation))


class PlainMLP(SkipNet):
    """`depth` hidden layers h_l = act(W_l h_{l-1} + b_l) of equal width, then a linear output.

    Input (batch, in_dim) -> output (batch, out_dim). No skips: `skips == []`.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 64, depth: int = 10,
                 activation: str = "relu", init: str = "default", seed: int | None = 0):
        super().__init__()
        in_dim, out_dim = check_int("in_dim", in_dim), check_int("out_dim", out_dim)
        width, depth = check_int("width", width), _depth("depth", depth)
        activation = check_choice("activation", activation, ACTIVATIONS)
        init = check_choice("init", init, INITS)
        check_budget(type(self).__name__, width * (in_dim + out_dim + depth * width), width=width,
                     depth=depth, in_dim=in_dim)
        seed = check_seed("seed", seed, allow_none=True)
        self.config = dict(in_dim=in_dim, out_dim=out_dim, width=width, depth=depth,
                           activation=activation, init=init, seed=seed)
        with _seeded(seed):
            sizes = [in_dim] + [width] * depth
            self.layers = nn.ModuleList(Dense(a, b, activation) for a, b in zip(sizes, sizes[1:]))
            self.head = nn.Linear(width, out_dim)
            init_weights(self, init)
        self._init_skips(0)

    @property
    def probe_layers(self) -> nn.ModuleList:
        return self.layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


class ResidualBlock(nn.Module):
    """One residual block on vectors of size `width`; forward(x, skip) -> same shape as x.

    With F(x) = W_2 act(W_1 x) for span 2, or F(x) = W_1 x for span 1, and branch scale a:
      v1:     x' = act(a F(x) + x)              (He et al. 2015: skip joins before the last act)
      v2:     x' = a act(F(x)) + x              (skip joins after it)
      preact: x' = x + a W_2 act(N(W_1 act(N(x))))  (He et al. 2016; span 1: x + a W_1 act(N(x)))
    With skip=False the `+ x` is dropped and nothing else changes.
    """

    def __init__(self, width: int, block: str = "v2", span: int = 2, activation: str = "relu",
                 branch_scale: float = 1.0, norm: str = "none"):
        super().__init__()
        width = check_int("width", width)
        block = check_choice("block", block, BLOCKS)
        span = check_choice("span", span, SPANS)
        check_budget("ResidualBlock", span * width ** 2, width=width)
        activation = check_choice("activation", activation, ACTIVATIONS)
        norm = check_choice("norm", norm, NORMS)
        branch_scale = check_positive("branch_scale", branch_scale)
        self.block, self.span, self.branch_scale = block, span, branch_scale
        self.linears = nn.ModuleList(nn.Linear(width, width) for _ in range(span))
        self.act = make_activation(activation)
        make_norm = (lambda: nn.BatchNorm1d(width)) if norm == "batch" else nn.Identity
        self.norms = nn.ModuleList(make_norm() for _ in range(span))

    def extra_repr(self) -> str:
        return f"block={self.block!r}, span={self.span}, branch_scale={self.branch_scale:g}"

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch, before the skip is added (and, for v1, before the last act)."""
        if self.block == "preact":
            for norm, linear in zip(self.norms, self.linears):
                x = linear(self.act(norm(x)))
            return self._scaled(x)
        for i, (norm, linear) in enumerate(zip(self.norms, self.linears)):
            x = norm(linear(x))
            if i < self.span - 1:
                x = self.act(x)
        if self.block == "v2":
            x = self.act(x)
        return self._scaled(x)

    def _scaled(self, x: torch.Tensor) -> torch.Tensor:
        # A scale of 1 returns x itself: the same numbers without a pass over the activations.
        return x if self.branch_scale == 1 else self.branch_scale * x

    def forward(self, x: torch.Tensor, skip: bool = True) -> torch.Tensor:
        out = self.branch(x)
        if skip:
            out = out + x
        return self.act(out) if self.block == "v1" else out


class ResidualMLP(SkipNet):
    """A linear stem, `depth` residual blocks of equal width, then a linear output.

    Input (batch, in_dim) -> output (batch, out_dim). One skip per block: `len(skips) == depth`.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 64, depth: int = 10,
                 block: str = "v2", span: int = 2, activation: str = "relu", init: str = "default",
                 branch_scale: float = 1.0, norm: str = "none", seed: int | None = 0):
        super().__init__()
        in_dim, out_dim = check_int("in_dim", in_dim), check_int("out_dim", out_dim)
        width, depth = check_int("width", width), _depth("depth", depth)
        block, span = check_choice("block", block, BLOCKS), check_choice("span", span, SPANS)
        activation = check_choice("activation", activation, ACTIVATIONS)
        init, norm = check_choice("init", init, INITS), check_choice("norm", norm, NORMS)
        branch_scale = check_positive("branch_scale", branch_scale)
        seed = check_seed("seed", seed, allow_none=True)
        check_budget("ResidualMLP", width * (in_dim + out_dim + depth * span * width), width=width,
                     depth=depth, in_dim=in_dim)
        self.config = dict(in_dim=in_dim, out_dim=out_dim, width=width, depth=depth, block=block,
                           span=span, activation=activation, init=init,
                           branch_scale=branch_scale, norm=norm, seed=seed)
        with _seeded(seed):
            self.stem = nn.Linear(in_dim, width)
            self.blocks = nn.ModuleList(
                ResidualBlock(width, block, span, activation, branch_scale, norm) for _ in range(depth))
            self.head = nn.Linear(width, out_dim)
            init_weights(self, init)
        self._init_skips(depth)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Input (batch, in_dim) -> the first hidden state x_0 (batch, width)."""
        return self.stem(x)

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Last hidden state (batch, width) -> output (batch, out_dim)."""
        return self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block, skip in zip(self.blocks, self._skips):
            x = block(x, skip)
        return self.readout(x)


class SkipBlock1d(nn.Module):
    """The lecture's SkipBlock for 1-D signals: (conv-BN-ReLU) twice, then add the shortcut.

    Input (batch, in_ch, length) -> (batch, out_ch, length // stride). There is no nonlinearity
    after the addition. When the shape changes, the shortcut is either 'double' (DLStudio's
    trick: subsample, then add the input to both halves of the doubled channels; no parameters)
    or 'projection' (a 1x1 convolution with the stride, as He et al. use).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, shortcut: str = "double"):
        super().__init__()
        in_ch, out_ch = check_int("in_ch", in_ch), check_int("out_ch", out_ch)
        check_budget("SkipBlock1d", 6 * in_ch * out_ch, in_ch=in_ch, out_ch=out_ch)
        stride = check_choice("stride", stride, (1, 2))
        shortcut = check_choice("shortcut", shortcut, SHORTCUTS)
        if shortcut == "double" and out_ch not in (in_ch, 2 * in_ch):
            raise SkipvizValueError(f"the 'double' shortcut needs out_ch == in_ch or 2 * in_ch; got {in_ch} -> {out_ch}")
        self.in_ch, self.out_ch, self.stride, self.shortcut_kind = in_ch, out_ch, stride, shortcut
        self.conv1 = nn.Conv1d(in_ch, out_ch, 3, stride=stride, padding=1)
        self.bn1 = nn.BatchNorm1d(out_ch)
        self.conv2 = nn.Conv1d(out_ch, out_ch, 3, padding=1)
        self.bn2 = nn.BatchNorm1d(out_ch)
        self.changes_shape = stride != 1 or in_ch != out_ch
        self.projection = (nn.Conv1d(in_ch, out_ch, 1, stride=stride)
                           if self.changes_shape and shortcut == "projection" else None)

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """What the skip adds: x itself, its doubled subsample, or its 1x1 projection."""
        if not self.changes_shape:
            return x
        if self.projection is not None:
            return self.projection(x)
        x = x[..., :: self.stride]
        return torch.cat([x, x], dim=1) if self.out_ch == 2 * self.in_ch else x

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The two conv-BN-ReLU layers, before the shortcut is added."""
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)))

    def forward(self, x: torch.Tensor, skip: bool = True) -> torch.Tensor:
        out = self.branch(x)
        if skip:
            out = out + self.shortcut(x)
        return out


class SkipConvNet(SkipNet):
    """A BMEnet-style 1-D CNN built from SkipBlock1d, for inputs (batch, length) such as MNIST-1D.

    Stem conv(1 -> channels) + BN + ReLU; `depth` SkipBlocks in two stages, the first block of
    the second stage halving the length and doubling the channels; global average pool; linear
    output (batch, num_classes). One skip per block: `len(skips) == depth`.
    """

    def __init__(self, in_len: int = 40, num_classes: int = 10, channels: int = 32, depth: int = 8,
                 shortcut: str = "double", seed: int | None = 0):
        super().__init__()
        in_len = check_int("in_len", in_len, minimum=2)
        num_classes = check_int("num_classes", num_classes, minimum=2)
        channels, depth = check_int("channels", channels), check_int("depth", depth, minimum=2, maximum=MAX_DEPTH)
        shortcut = check_choice("shortcut", shortcut, SHORTCUTS)
        seed = check_seed("seed", seed, allow_none=True)
        check_budget("SkipConvNet", 24 * depth * channels ** 2, channels=channels, depth=depth)
        self.config = dict(in_len=in_len, num_classes=num_classes, channels=channels, depth=depth,
                           shortcut=shortcut, seed=seed)
        with _seeded(seed):
            self.stem = nn.Sequential(nn.Conv1d(1, channels, 5, padding=2),
                                      nn.BatchNorm1d(channels), nn.ReLU())
            first = depth // 2
            blocks = [SkipBlock1d(channels, channels) for _ in range(first)]
            blocks.append(SkipBlock1d(channels, 2 * channels, stride=2, shortcut=shortcut))
            blocks += [SkipBlock1d(2 * channels, 2 * channels) for _ in range(depth - first - 1)]
            self.blocks = nn.ModuleList(blocks)
            self.head = nn.Linear(2 * channels, num_classes)
        self._init_skips(depth)
        # Checked in a pre-hook, not in forward, so that torch.fx can still trace forward.
        self.register_forward_pre_hook(_check_signal_length)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Input (batch, length) -> the first hidden state (batch, channels, length)."""
        return self.stem(x.unsqueeze(1))

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Last hidden state (batch, channels, length) -> logits (batch, num_classes)."""
        return self.head(h.mean(dim=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for block, skip in zip(self.blocks, self._skips):
            x = block(x, skip)
        return self.readout(x)


def _check_signal_length(net: SkipNet, inputs: tuple) -> None:
    x = inputs[0] if inputs else None
    length = net.config["in_len"]
    if isinstance(x, torch.Tensor) and (x.dim() != 2 or x.shape[1] != length):
        raise SkipvizValueError(f"x must have shape (batch, {length}) for model {type(net).__name__}(in_len={length}); "
                                f"got {tuple(x.shape)}")


class PreActBlock1d(nn.Module):
    """Hauser's block (his eq. 13; He et al. 2016's pre-activation):
    x' = x + W_2 * relu(BN_2(W_1 * relu(BN_1(x)))), with * a 3-tap convolution.

    Input and output (batch, channels, length). With skip=False the `x +` is dropped.
    """

    def __init__(self, channels: int):
        super().__init__()
        channels = check_int("channels", channels)
        check_budget("PreActBlock1d", 6 * channels ** 2, channels=channels)
        self.bn1, self.bn2 = nn.BatchNorm1d(channels), nn.BatchNorm1d(channels)
        self.conv1 = nn.Conv1d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """f(x), what the block adds to its input."""
        return self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x))))))

    def forward(self, x: torch.Tensor, skip: bool = True) -> torch.Tensor:
        out = self.branch(x)
        return out + x if skip else out


class ResNet1d(SkipNet):
    """Hauser's network for 1-D signals such as MNIST-1D: a conv stem, then `sections` sections
    of `blocks` PreActBlock1d each; between sections a 1x1 convolution with stride 2 halves the
    length and doubles the channels (a transition, not a block: it has no skip); then BN, ReLU,
    global average pool and a linear output.

    Input (batch, in_len) -> logits (batch, num_classes). One skip per block:
    `len(skips) == sections * blocks`; `section_of[i]` is block i's section.
    """

    def __init__(self, in_len: int = 40, num_classes: int = 10, channels: int = 8, blocks: int = 2,
                 sections: int = 3, seed: int | None = 0):
        super().__init__()
        sections = _depth("sections", sections)
        in_len = check_int("in_len", in_len, minimum=2 ** (sections - 1))
        num_classes = check_int("num_classes", num_classes, minimum=2)
        channels, blocks = check_int("channels", channels), _depth("blocks", blocks)
        check_budget("ResNet1d", 2 * blocks * channels ** 2 * 4 ** sections, channels=channels,
                     blocks=blocks, sections=sections)
        seed = check_seed("seed", seed, allow_none=True)
        self.config = dict(in_len=in_len, num_classes=num_classes, channels=channels, blocks=blocks,
                           sections=sections, seed=seed)
        widths = [channels * 2 ** s for s in range(sections)]
        with _seeded(seed):
            self.stem = nn.Conv1d(1, channels, 5, padding=2)
            self.blocks = nn.ModuleList(PreActBlock1d(w) for w in widths for _ in range(blocks))
            self.transitions = nn.ModuleList(nn.Conv1d(w, 2 * w, 1, stride=2) for w in widths[:-1])
            self.norm = nn.BatchNorm1d(widths[-1])
            self.head = nn.Linear(widths[-1], num_classes)
        self.section_of = [s for s in range(sections) for _ in range(blocks)]
        self._init_skips(sections * blocks)
        self.register_forward_pre_hook(_check_signal_length)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Input (batch, length) -> the first hidden state (batch, channels, length)."""
        return self.stem(x.unsqueeze(1))

    def readout(self, h: torch.Tensor) -> torch.Tensor:
        """Last hidden state (batch, channels, length) -> logits (batch, num_classes)."""
        return self.head(torch.relu(self.norm(h)).mean(dim=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.embed(x)
        for i, (block, skip) in enumerate(zip(self.blocks, self._skips)):
            if i > 0 and self.section_of[i] != self.section_of[i - 1]:
                x = self.transitions[self.section_of[i - 1]](x)
            x = block(x, skip)
        return self.readout(x)


class DenseLayer1d(nn.Module):
    """One layer of a dense block (Huang et al. 2017's DenseNet-B): BN, ReLU, a 1x1 bottleneck
    convolution to 4k channels, BN, ReLU, a 3-tap convolution to k (the growth rate).

    Input (batch, in_ch, length) -> its k new channels (batch, k, length).
    """

    def __init__(self, in_ch: int, growth: int):
        super().__init__()
        in_ch, growth = check_int("in_ch", in_ch), check_int("growth", growth)
        check_budget("DenseLayer1d", 3 * in_ch * growth, in_ch=in_ch, growth=growth)
        self.bn1, self.conv1 = nn.BatchNorm1d(in_ch), nn.Conv1d(in_ch, 4 * growth, 1)
        self.bn2, self.conv2 = nn.BatchNorm1d(4 * growth), nn.Conv1d(4 * growth, growth, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(torch.relu(self.bn2(self.conv1(torch.relu(self.bn1(x))))))


class DenseNet1d(SkipNet):
    """A DenseNet for 1-D signals such as MNIST-1D: a conv stem to `stem` channels, `blocks` dense
    blocks of `layers` DenseLayer1d each, a transition between blocks (BN, ReLU, a 1x1 conv that
    halves the channels, average pool 2), then BN, ReLU, global average pool and a linear output.

    In a dense block, layer c reads the concatenation of the block's input (source 0) and every
    earlier layer's output (source j = layer j-1), so it takes in_ch + c * growth channels; the
    block's output (consumer c = layers) is the concatenation of all of them.
    Input (batch, in_len) -> logits (batch, num_classes).

    Skips: one per dense connection that jumps over a layer, i.e. consumer c reading source
    s < c (source c is the chain itself). `connections[i]` is skip i's (block, consumer, source).
    Switched off, that source reaches the consumer as zeros: the weights keep their shapes.
    """

    def __init__(self, in_len: int = 40, num_classes: int = 10, stem: int = 16, growth: int = 8,
                 layers: int = 4, blocks: int = 2, seed: int | None = 0):
        super().__init__()
        in_len = check_int("in_len", in_len, minimum=2)
        num_classes = check_int("num_classes", num_classes, minimum=2)
        stem, growth = check_int("stem", stem), check_int("growth", growth)
        layers, blocks = _depth("layers", layers), _depth("blocks", blocks)
        check_budget("DenseNet1d", 3 * blocks * layers * growth * (stem + blocks * layers * growth),
                     stem=stem, growth=growth, layers=layers, blocks=blocks)
        seed = check_seed("seed", seed, allow_none=True)
        self.config = dict(in_len=in_len, num_classes=num_classes, stem=stem, growth=growth,
                           layers=layers, blocks=blocks, seed=seed)
        self.block_channels = []  # (channels into the block, channels out of it) per block
        with _seeded(seed):
            self.stem = nn.Conv1d(1, stem, 5, padding=2)
            dense, transitions, channels = [], [], stem
            for b in range(blocks):
                dense.append(nn.ModuleList(DenseLayer1d(channels + c * growth, growth) for c in range(layers)))
                out = channels + layers * growth
                self.block_channels.append((channels, out))
                if b < blocks - 1:
                    transitions.append(nn.Sequential(nn.BatchNorm1d(out), nn.ReLU(), nn.Conv1d(out, out // 2, 1),
                                                     nn.AvgPool1d(2, ceil_mode=True)))
                    channels = out // 2
                else:
                    channels = out
            self.dense, self.transitions = nn.ModuleList(dense), nn.ModuleList(transitions)
            self.norm = nn.BatchNorm1d(channels)
            self.head = nn.Linear(channels, num_classes)
        self.connections = [(b, c, s) for b in range(blocks) for c in range(layers + 1) for s in range(c)]
        self._skip_index = {conn: i for i, conn in enumerate(self.connections)}
        self._init_skips(len(self.connections))
        self.register_forward_pre_hook(_check_signal_length)

    def _reads(self, block: int, consumer: int, source: int) -> bool:
        return source == consumer or self._skips[self._skip_index[(block, consumer, source)]]

    def dense_block(self, b: int, x: torch.Tensor) -> torch.Tensor:
        """Dense block b: (batch, in_ch, length) -> (batch, in_ch + layers * growth, length)."""
        features = [x]
        for c in range(len(self.dense[b]) + 1):
            merged = torch.cat([f if self._reads(b, c, s) else torch.zeros_like(f)
                                for s, f in enumerate(features)], dim=1)
            if c == len(self.dense[b]):
                return merged
            features.append(self.dense[b][c](merged))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.unsqueeze(1))
        for b in range(len(self.dense)):
            x = self.dense_block(b, x)
            if b < len(self.transitions):
                x = self.transitions[b](x)
        return self.head(torch.relu(self.norm(x)).mean(dim=2))


class HighwayLayer(nn.Module):
    """Srivastava et al. (2015): y = T(x) H(x) + (1 - T(x)) x on vectors of size `width`, with the
    transform H(x) = act(W_H x + b_H) and the gate T(x) = sigmoid(W_T x + b_T). b_T starts at
    `gate_bias`; a negative one makes the layer start by carrying its input.
    forward(x, skip): with skip=False the carry term (1 - T) x is dropped.
    """

    def __init__(self, width: int, activation: str = "relu", gate_bias: float = -2.0):
        super().__init__()
        width = check_int("width", width)
        activation = check_choice("activation", activation, ACTIVATIONS)
        gate_bias = check_number("gate_bias", gate_bias)
        check_budget("HighwayLayer", 2 * width ** 2, width=width)
        self.transform, self.act = nn.Linear(width, width), make_activation(activation)
        self.transform_gate = nn.Linear(width, width)
        nn.init.constant_(self.transform_gate.bias, gate_bias)

    def gate(self, x: torch.Tensor) -> torch.Tensor:
        """T(x), (batch, width), each entry in (0, 1): how much of H(x) replaces x."""
        return torch.sigmoid(self.transform_gate(x))

    def forward(self, x: torch.Tensor, skip: bool = True) -> torch.Tensor:
        t = self.gate(x)
        out = t * self.act(self.transform(x))
        return out + (1 - t) * x if skip else out


class HighwayMLP(SkipNet):
    """A linear stem, `depth` highway layers of equal width, a linear output.

    Input (batch, in_dim) -> output (batch, out_dim). One skip per layer, its carry path:
    `len(skips) == depth`. paths.deleted forces a layer to carry (T = 0: y = x).
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 64, depth: int = 10,
                 activation: str = "relu", gate_bias: float = -2.0, seed: int | None = 0):
        super().__init__()
        in_dim, out_dim = check_int("in_dim", in_dim), check_int("out_dim", out_dim)
        width, depth = check_int("width", width), _depth("depth", depth)
        activation = check_choice("activation", activation, ACTIVATIONS)
        gate_bias = check_number("gate_bias", gate_bias)
        seed = check_seed("seed", seed, allow_none=True)
        check_budget("HighwayMLP", width * (in_dim + out_dim + 2 * depth * width), width=width,
                     depth=depth, in_dim=in_dim)
        self.config = dict(in_dim=in_dim, out_dim=out_dim, width=width, depth=depth,
                           activation=activation, gate_bias=gate_bias, seed=seed)
        with _seeded(seed):
            self.stem = nn.Linear(in_dim, width)
            self.blocks = nn.ModuleList(HighwayLayer(width, activation, gate_bias) for _ in range(depth))
            self.head = nn.Linear(width, out_dim)
        self._init_skips(depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer, skip in zip(self.blocks, self._skips):
            x = layer(x, skip)
        return self.head(x)


def _conv_pair(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3-tap conv-BN-ReLU layers: the U-Net's unit at one resolution."""
    return nn.Sequential(nn.Conv1d(in_ch, out_ch, 3, padding=1), nn.BatchNorm1d(out_ch), nn.ReLU(),
                         nn.Conv1d(out_ch, out_ch, 3, padding=1), nn.BatchNorm1d(out_ch), nn.ReLU())


class UNet1d(SkipNet):
    """Ronneberger et al.'s U-Net for 1-D signals: (batch, length) -> (batch, length).

    Encoder: `levels` units (channels c, 2c, 4c, ...), each followed by max-pool 2; a bottleneck
    unit; decoder: per level, a transposed convolution doubles the length, the encoder's features
    of the same resolution are concatenated (the long skip), and a unit merges them; a 1x1
    convolution gives one channel. The length must be divisible by 2**levels.

    Skips: one per level, skips[0] the finest (the first encoder unit to the last decoder unit).
    Switched off, zeros take the encoder's features' place: a plain encoder-decoder.
    """

    def __init__(self, in_len: int = 40, channels: int = 16, levels: int = 2, seed: int | None = 0):
        super().__init__()
        in_len, channels = check_int("in_len", in_len, minimum=2), check_int("channels", channels)
        levels = _depth("levels", levels)
        check_budget("UNet1d", 12 * channels ** 2 * 4 ** levels, channels=channels, levels=levels)
        if in_len % 2 ** levels:
            raise SkipvizValueError(f"UNet1d with levels={levels} halves the length {levels} times, so "
                             f"in_len must be divisible by {2 ** levels}; got {in_len}")
        seed = check_seed("seed", seed, allow_none=True)
        self.config = dict(in_len=in_len, out_dim=in_len, channels=channels, levels=levels, seed=seed)
        widths = [channels * 2 ** level for level in range(levels + 1)]
        with _seeded(seed):
            self.down = nn.ModuleList(_conv_pair(1 if i == 0 else widths[i - 1], widths[i]) for i in range(levels))
            self.bottom = _conv_pair(widths[levels - 1], widths[levels])
            self.upsample = nn.ModuleList(nn.ConvTranspose1d(widths[i + 1], widths[i], 2, stride=2)
                                          for i in range(levels))
            self.up = nn.ModuleList(_conv_pair(2 * widths[i], widths[i]) for i in range(levels))
            self.out = nn.Conv1d(widths[0], 1, 1)
        self._init_skips(levels)
        self.register_forward_pre_hook(_check_signal_length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.unsqueeze(1)
        saved = []
        for unit in self.down:
            x = unit(x)
            saved.append(x)
            x = nn.functional.max_pool1d(x, 2)
        x = self.bottom(x)
        for level in reversed(range(len(self.up))):
            x = self.upsample[level](x)
            skip = saved[level] if self._skips[level] else torch.zeros_like(saved[level])
            x = self.up[level](torch.cat([x, skip], dim=1))
        return self.out(x).squeeze(1)


class TelescopeMLP(PlainMLP):
    """The "telescope" MLP of the blog post: a PlainMLP whose `depth` hidden layers
    h_l = act(W_l h_{l-1} + b_l) all also skip to the last one: z = h_L + sum_l s_l h_l, then the
    linear output. s_l = skips[l]; the last layer's own skip makes it count twice, as in the blog.

    Input (batch, in_dim) -> output (batch, out_dim). With all skips off it is the PlainMLP.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 64, depth: int = 50,
                 activation: str = "relu", init: str = "default", seed: int | None = 0):
        super().__init__(in_dim, out_dim, width, depth, activation, init, seed)
        self._init_skips(depth)

    def hidden_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[h_1, ..., h_L], each (batch, width)."""
        states = []
        for layer in self.layers:
            x = layer(x)
            states.append(x)
        return states

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.hidden_states(x)
        z = hidden[-1] + sum(h for h, skip in zip(hidden, self._skips) if skip)
        return self.head(z)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in `model`."""
    check_model("model", model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
