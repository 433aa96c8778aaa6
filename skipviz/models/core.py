"""What every model shares: the skip switches (`model.skips`), the configuration base class,
initializations and the size limits. The models themselves are in `mlp.py`, `conv.py` and
`beyond.py`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, MutableSequence, Sequence
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from .._validation import check_choice, check_index, check_int, check_model
from ..errors import SkipvizValueError

ACTIVATIONS = ("relu", "tanh", "sigmoid")
INITS = ("default", "xavier", "he", "small")
# A plain MLP may also use concatenated ReLUs and start as a linear map (notebook 08).
PLAIN_ACTIVATIONS = (*ACTIVATIONS, "crelu")
PLAIN_INITS = (*INITS, "looks_linear")
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


def check_depth(name: str, value: object) -> int:
    """A number of layers or blocks: an int in 1..MAX_DEPTH."""
    return check_int(name, value, maximum=MAX_DEPTH)


class CReLU(nn.Module):
    """Concatenated ReLU: (batch, n) -> (batch, 2n), [relu(x), relu(-x)]. It loses nothing:
    relu(x) - relu(-x) = x, which is what the "looks linear" initialization uses."""

    def __init__(self):
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(x), torch.relu(-x)], dim=1)


def make_activation(name: str) -> nn.Module:
    """nn.ReLU, nn.Tanh, nn.Sigmoid or CReLU ('crelu', which doubles the width) by name."""
    name = check_choice("activation name", name, PLAIN_ACTIVATIONS)
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "crelu": CReLU}[name]()


def init_weights(model: nn.Module, init: str) -> None:
    """Re-initialize every Linear and Conv1d of `model` in place.

    'default': PyTorch's own U(+-1/sqrt(fan_in)) for weights and biases, i.e. Var[w] = 1/(3 fan_in).
    'xavier': Glorot normal, Var[w] = 2/(fan_in + fan_out); biases 0.
    'he':     Kaiming normal for ReLU, Var[w] = 2/fan_in; biases 0.
    'small':  N(0, 1/(4 fan_in)), so n Var[w] = 1/4; biases 0 (a deliberately vanishing init).
    'looks_linear': a PlainMLP with concatenated ReLUs only (`PlainMLP.looks_linear`).
    """
    check_model("model", model)
    init = check_choice("init", init, PLAIN_INITS)
    if init == "looks_linear":
        if not hasattr(model, "looks_linear"):
            raise SkipvizValueError("init 'looks_linear' needs a PlainMLP with activation='crelu': build one "
                                    "with models.PlainMLP(..., activation='crelu', init='looks_linear')")
        model.looks_linear()
        return
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


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of the models' configurations (`model.config`): frozen dataclasses whose
    `__post_init__` checks every field once, so a model's constructor only builds layers.
    `input_size()` and `output_size()` name the sizes that `training.check_fits` compares
    with the data."""

    model: ClassVar[str] = "model"  # the class it configures, for messages

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)  # the checked value replaces the given one

    def input_size(self) -> tuple[str, int]:
        """(the field's name, features per example) of the inputs."""
        name = "in_dim" if hasattr(self, "in_dim") else "in_len"
        return name, getattr(self, name)

    def output_size(self) -> tuple[str, int]:
        """(the field's name, outputs per example)."""
        name = "out_dim" if hasattr(self, "out_dim") else "num_classes"
        return name, getattr(self, name)

    def label_shape(self) -> tuple[int, ...]:
        """The shape of a classification label per example: () for one class index, (positions,)
        for a sequence model's one per position."""
        return ()

    def _check_vector_sizes(self) -> None:
        """in_dim, out_dim, width and depth: the sizes every MLP's configuration starts with."""
        for name in ("in_dim", "out_dim", "width"):
            self._set(name, check_int(name, getattr(self, name)))
        self._set("depth", check_depth("depth", self.depth))

    def _check_signal_sizes(self, min_len: int = 2) -> None:
        """in_len and num_classes: the sizes of every classifier of 1-D signals."""
        self._set("in_len", check_int("in_len", self.in_len, minimum=min_len))
        self._set("num_classes", check_int("num_classes", self.num_classes, minimum=2))

    def check_budget(self, parameters: int, *sizes: str) -> None:
        """`check_budget` for this configuration, naming the fields in `sizes`."""
        check_budget(self.model, parameters, **{s: getattr(self, s) for s in sizes})


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

    @classmethod
    def from_config(cls, config: ModelConfig) -> SkipNet:
        """The model `config` describes (`type(net).from_config(net.config)` builds a twin)."""
        return cls(**dataclasses.asdict(config))

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
def seeded(seed: int | None) -> Iterator[None]:
    """Run a constructor's random draws on their own seed, leaving the global RNG untouched."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def check_signal_length(net: SkipNet, inputs: tuple) -> None:
    """A forward pre-hook: the input must be (batch, config.in_len). A hook, not a line of
    forward, so that torch.fx can still trace forward."""
    x = inputs[0] if inputs else None
    length = net.config.in_len
    if isinstance(x, torch.Tensor) and (x.dim() != 2 or x.shape[1] != length):
        raise SkipvizValueError(f"x must have shape (batch, {length}) for model {type(net).__name__}(in_len={length}); "
                                f"got {tuple(x.shape)}")


def count_parameters(model: nn.Module) -> int:
    """Number of trainable scalars in `model`."""
    check_model("model", model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
