"""The networks of the notebooks, all sharing one skip control: `model.skips`, a list of booleans."""

from __future__ import annotations

import contextlib
import math
import weakref
from collections.abc import Iterator, MutableSequence, Sequence

import numpy as np
import torch
from torch import nn

from ._validation import check_choice, check_index, check_int, check_positive, check_seed

ACTIVATIONS = ("relu", "tanh", "sigmoid")
INITS = ("default", "xavier", "he", "small")
BLOCKS = ("v1", "v2", "preact")
SPANS = (1, 2)
NORMS = ("none", "batch")
SHORTCUTS = ("double", "projection")


def make_activation(name: str) -> nn.Module:
    """nn.ReLU, nn.Tanh or nn.Sigmoid by name."""
    check_choice("activation", name, ACTIVATIONS)
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[name]()


def init_weights(model: nn.Module, init: str) -> None:
    """Re-initialize every Linear and Conv1d of `model` in place.

    'default': PyTorch's own U(+-1/sqrt(fan_in)) for weights and biases, i.e. Var[w] = 1/(3 fan_in).
    'xavier': Glorot normal, Var[w] = 2/(fan_in + fan_out); biases 0.
    'he':     Kaiming normal for ReLU, Var[w] = 2/fan_in; biases 0.
    'small':  N(0, 1/(4 fan_in)), so n Var[w] = 1/4; biases 0 (a deliberately vanishing init).
    """
    check_choice("init", init, INITS)
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
                raise ValueError(f"skips[{index!r}] must be True or False; got {v!r}")
        new = list(self._model._skips)
        new[self._index(index)] = value
        self._model.skips = new

    def __delitem__(self, index) -> None:
        raise ValueError("a model's number of skips is fixed; to switch one off, set "
                         "model.skips[i] = False")

    def insert(self, index, value) -> None:
        self.__delitem__(index)

    def _index(self, index):
        if isinstance(index, slice):
            return index
        n = len(self)
        if not isinstance(index, (int, np.integer)) or isinstance(index, (bool, np.bool_)) \
                or not -n <= index < n:
            raise ValueError(f"skip index must be an integer in 0..{n - 1} (or -{n}..-1); got {index!r}")
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
            raise ValueError(f"skips must be a list of {n} booleans; got {values!r}")
        values = list(values)
        if len(values) != n:
            raise ValueError(f"skips must have length {n} (one boolean per skip connection); "
                             f"got length {len(values)}")
        if not all(isinstance(v, (bool, np.bool_)) for v in values):
            raise ValueError(f"skips must be a list of {n} booleans (True/False); got {values!r}")
        self._skips = [bool(v) for v in values]
        for listener in list(_SKIP_LISTENERS.get(self, [])):
            callback = listener()
            if callback is not None:
                callback(list(self._skips))

    def on_skips_change(self, callback) -> None:
        """Call `callback(new_skips)` after every change of `skips` (held weakly: a bound
        method of a widget, which stops being called once the widget is gone)."""
        ref = weakref.WeakMethod(callback) if hasattr(callback, "__self__") else weakref.ref(callback)
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
        super().__init__(nn.Linear(n_in, n_out), make_activation(activation))


class PlainMLP(SkipNet):
    """`depth` hidden layers h_l = act(W_l h_{l-1} + b_l) of equal width, then a linear output.

    Input (batch, in_dim) -> output (batch, out_dim). No skips: `skips == []`.
    """

    def __init__(self, in_dim: int, out_dim: int, width: int = 64, depth: int = 10,
                 activation: str = "relu", init: str = "default", seed: int | None = 0):
        super().__init__()
        in_dim, out_dim = check_int("in_dim", in_dim), check_int("out_dim", out_dim)
        width, depth = check_int("width", width), check_int("depth", depth)
        activation = check_choice("activation", activation, ACTIVATIONS)
        init = check_choice("init", init, INITS)
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
        width, depth = check_int("width", width), check_int("depth", depth)
        block, span = check_choice("block", block, BLOCKS), check_choice("span", span, SPANS)
        activation = check_choice("activation", activation, ACTIVATIONS)
        init, norm = check_choice("init", init, INITS), check_choice("norm", norm, NORMS)
        branch_scale = check_positive("branch_scale", branch_scale)
        seed = check_seed("seed", seed, allow_none=True)
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
        stride = check_choice("stride", stride, (1, 2))
        shortcut = check_choice("shortcut", shortcut, SHORTCUTS)
        if shortcut == "double" and out_ch not in (in_ch, 2 * in_ch):
            raise ValueError(f"the 'double' shortcut needs out_ch == in_ch or 2 * in_ch; got {in_ch} -> {out_ch}")
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
        channels, depth = check_int("channels", channels), check_int("depth", depth, minimum=2)
        shortcut = check_choice("shortcut", shortcut, SHORTCUTS)
        seed = check_seed("seed", seed, allow_none=True)
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


def _check_signal_length(net: SkipConvNet, inputs: tuple) -> None:
    x = inputs[0] if inputs else None
    length = net.config["in_len"]
    if isinstance(x, torch.Tensor) and (x.dim() != 2 or x.shape[1] != length):
        raise ValueError(f"SkipConvNet(in_len={length}) takes signals of shape (batch, {length}); "
                         f"got {tuple(x.shape)}")


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
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
