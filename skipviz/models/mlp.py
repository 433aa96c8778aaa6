"""Multilayer perceptrons: plain, residual (notebooks 01-04) and the telescope MLP (notebook 05).

Each model's `forward` is a few lines at the end of its class; `model.skips` switches its skips.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .._validation import check_choice, check_int, check_positive, check_seed
from ..errors import SkipvizValueError
from .core import (
    ACTIVATIONS,
    BLOCKS,
    INITS,
    NORMS,
    PLAIN_ACTIVATIONS,
    PLAIN_INITS,
    SPANS,
    ModelConfig,
    SkipNet,
    check_budget,
    init_weights,
    make_activation,
    seeded,
)


class Dense(nn.Sequential):
    """One hidden layer of a plain MLP: Linear, then the activation. Output (batch, out), or
    (batch, 2 out) for 'crelu'."""

    def __init__(self, n_in: int, n_out: int, activation: str):
        n_in, n_out = check_int("n_in", n_in), check_int("n_out", n_out)
        check_budget("Dense", n_in * n_out, n_in=n_in, n_out=n_out)
        super().__init__(nn.Linear(n_in, n_out), make_activation(activation))


@dataclasses.dataclass(frozen=True)
class PlainMLPConfig(ModelConfig):
    """PlainMLP's configuration; every field checked once, here."""

    model = "PlainMLP"
    in_dim: int
    out_dim: int
    width: int = 64
    depth: int = 10
    activation: str = "relu"
    init: str = "default"
    seed: int | None = 0

    def __post_init__(self) -> None:
        self._check_vector_sizes()
        self._set("activation", check_choice("activation", self.activation, PLAIN_ACTIVATIONS))
        self._set("init", check_choice("init", self.init, PLAIN_INITS))
        if self.init == "looks_linear" and self.activation != "crelu":
            raise SkipvizValueError(f"init='looks_linear' needs activation='crelu' (it mirrors each weight "
                                    f"matrix onto the two halves of a concatenated ReLU); got "
                                    f"activation={self.activation!r}")
        wide = 2 if self.activation == "crelu" else 1  # a concatenated ReLU doubles what layers read
        self.check_budget(self.width * (self.in_dim + wide * (self.out_dim + self.depth * self.width)),
                          "width", "depth", "in_dim")
        self._set("seed", check_seed("seed", self.seed, allow_none=True))


class PlainMLP(SkipNet):
    """`depth` hidden layers h_l = act(W_l h_{l-1} + b_l) of equal width, then a linear output.

    Input (batch, in_dim) -> output (batch, out_dim). No skips: `skips == []`. With
    activation='crelu' each hidden layer outputs [relu(z), relu(-z)], twice its width, and
    init='looks_linear' starts the network as a linear map (`looks_linear`, notebook 08).
    """

    Config = PlainMLPConfig

    def __init__(self, in_dim: int, out_dim: int, width: int = 64, depth: int = 10,
                 activation: str = "relu", init: str = "default", seed: int | None = 0):
        super().__init__()
        self.config = c = self.Config(in_dim, out_dim, width, depth, activation, init, seed)
        wide = 2 * c.width if c.activation == "crelu" else c.width  # what a hidden layer outputs
        with seeded(c.seed):
            inputs = [c.in_dim] + [wide] * (c.depth - 1)
            self.layers = nn.ModuleList(Dense(n, c.width, c.activation) for n in inputs)
            self.head = nn.Linear(wide, c.out_dim)
            init_weights(self, c.init)
        self._init_skips(0)

    def looks_linear(self) -> None:
        """Balduzzi et al.'s "looks linear" initialization, in place: the first layer orthogonal,
        every later layer and the output [W, -W] with W orthogonal, all biases 0. With concatenated
        ReLUs, [W, -W] [relu(z), relu(-z)] = W z, so the network starts as the linear map
        x -> W_out ... W_1 x: its gradient with respect to x is the same at every input."""
        if self.config.activation != "crelu":
            raise SkipvizValueError("looks_linear needs a PlainMLP with activation='crelu'")
        with torch.no_grad():
            first = self.layers[0][0]
            nn.init.orthogonal_(first.weight)
            first.bias.zero_()
            for linear in [*(layer[0] for layer in self.layers[1:]), self.head]:
                half = torch.empty(linear.out_features, linear.in_features // 2)
                nn.init.orthogonal_(half)
                linear.weight.copy_(torch.cat([half, -half], dim=1))
                linear.bias.zero_()

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

    Written out in notebook 02, §1 (`v1_block`, `v2_block`, `preact_block`).
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


@dataclasses.dataclass(frozen=True)
class ResidualMLPConfig(ModelConfig):
    """ResidualMLP's configuration; every field checked once, here."""

    model = "ResidualMLP"
    in_dim: int
    out_dim: int
    width: int = 64
    depth: int = 10
    block: str = "v2"
    span: int = 2
    activation: str = "relu"
    init: str = "default"
    branch_scale: float = 1.0
    norm: str = "none"
    seed: int | None = 0

    def __post_init__(self) -> None:
        self._check_vector_sizes()
        self._set("block", check_choice("block", self.block, BLOCKS))
        self._set("span", check_choice("span", self.span, SPANS))
        self._set("activation", check_choice("activation", self.activation, ACTIVATIONS))
        self._set("init", check_choice("init", self.init, INITS))
        self._set("norm", check_choice("norm", self.norm, NORMS))
        self._set("branch_scale", check_positive("branch_scale", self.branch_scale))
        self._set("seed", check_seed("seed", self.seed, allow_none=True))
        self.check_budget(self.width * (self.in_dim + self.out_dim + self.depth * self.span * self.width),
                          "width", "depth", "in_dim")


class ResidualMLP(SkipNet):
    """A linear stem, `depth` residual blocks of equal width, then a linear output.

    Input (batch, in_dim) -> output (batch, out_dim). One skip per block: `len(skips) == depth`.
    """

    Config = ResidualMLPConfig

    def __init__(self, in_dim: int, out_dim: int, width: int = 64, depth: int = 10,
                 block: str = "v2", span: int = 2, activation: str = "relu", init: str = "default",
                 branch_scale: float = 1.0, norm: str = "none", seed: int | None = 0):
        super().__init__()
        self.config = c = self.Config(in_dim, out_dim, width, depth, block, span, activation, init,
                                      branch_scale, norm, seed)
        with seeded(c.seed):
            self.stem = nn.Linear(c.in_dim, c.width)
            self.blocks = nn.ModuleList(
                ResidualBlock(c.width, c.block, c.span, c.activation, c.branch_scale, c.norm)
                for _ in range(c.depth))
            self.head = nn.Linear(c.width, c.out_dim)
            init_weights(self, c.init)
        self._init_skips(c.depth)

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


@dataclasses.dataclass(frozen=True)
class TelescopeMLPConfig(PlainMLPConfig):
    """TelescopeMLP's configuration: PlainMLP's, 50 layers deep by default."""

    model = "TelescopeMLP"
    depth: int = 50


class TelescopeMLP(PlainMLP):
    """The "telescope" MLP of the blog post (notebook 05): a PlainMLP whose `depth` hidden layers
    h_l = act(W_l h_{l-1} + b_l) all also skip to the last one: z = h_L + sum_l s_l h_l, then the
    linear output. s_l = skips[l]; the last layer's own skip makes it count twice, as in the blog.

    Input (batch, in_dim) -> output (batch, out_dim). With all skips off it is the PlainMLP.

    Written out in notebook 05, §1 (`telescope_forward`).
    """

    Config = TelescopeMLPConfig

    def __init__(self, in_dim: int, out_dim: int, width: int = 64, depth: int = 50,
                 activation: str = "relu", init: str = "default", seed: int | None = 0):
        super().__init__(in_dim, out_dim, width, depth, activation, init, seed)
        self._init_skips(self.config.depth)

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
