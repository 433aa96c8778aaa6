"""Skip connections beyond addition (notebook 07): DenseNet's concatenation, the Highway
network's gate and the U-Net's long skips, for 1-D signals and vectors.

Each model's `forward` is a few lines at the end of its class; `model.skips` switches its skips.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .._validation import check_choice, check_int, check_number, check_seed
from ..errors import SkipvizValueError
from .core import (
    ACTIVATIONS,
    ModelConfig,
    SkipNet,
    check_budget,
    check_depth,
    check_signal_length,
    make_activation,
    seeded,
)


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


@dataclasses.dataclass(frozen=True)
class DenseNet1dConfig(ModelConfig):
    """DenseNet1d's configuration; every field checked once, here."""

    model = "DenseNet1d"
    in_len: int = 40
    num_classes: int = 10
    stem: int = 16
    growth: int = 8
    layers: int = 4
    blocks: int = 2
    seed: int | None = 0

    def __post_init__(self) -> None:
        self._check_signal_sizes()
        self._set("stem", check_int("stem", self.stem))
        self._set("growth", check_int("growth", self.growth))
        self._set("layers", check_depth("layers", self.layers))
        self._set("blocks", check_depth("blocks", self.blocks))
        self.check_budget(3 * self.blocks * self.layers * self.growth
                          * (self.stem + self.blocks * self.layers * self.growth),
                          "stem", "growth", "layers", "blocks")
        self._set("seed", check_seed("seed", self.seed, allow_none=True))


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

    Config = DenseNet1dConfig

    def __init__(self, in_len: int = 40, num_classes: int = 10, stem: int = 16, growth: int = 8,
                 layers: int = 4, blocks: int = 2, seed: int | None = 0):
        super().__init__()
        self.config = c = self.Config(in_len, num_classes, stem, growth, layers, blocks, seed)
        self.block_channels = []  # (channels into the block, channels out of it) per block
        with seeded(c.seed):
            self.stem = nn.Conv1d(1, c.stem, 5, padding=2)
            dense, transitions, channels = [], [], c.stem
            for b in range(c.blocks):
                dense.append(nn.ModuleList(DenseLayer1d(channels + i * c.growth, c.growth)
                                           for i in range(c.layers)))
                out = channels + c.layers * c.growth
                self.block_channels.append((channels, out))
                if b < c.blocks - 1:
                    transitions.append(nn.Sequential(nn.BatchNorm1d(out), nn.ReLU(), nn.Conv1d(out, out // 2, 1),
                                                     nn.AvgPool1d(2, ceil_mode=True)))
                    channels = out // 2
                else:
                    channels = out
            self.dense, self.transitions = nn.ModuleList(dense), nn.ModuleList(transitions)
            self.norm = nn.BatchNorm1d(channels)
            self.head = nn.Linear(channels, c.num_classes)
        self.connections = [(b, i, s) for b in range(c.blocks) for i in range(c.layers + 1) for s in range(i)]
        self._skip_index = {conn: i for i, conn in enumerate(self.connections)}
        self._init_skips(len(self.connections))
        self.register_forward_pre_hook(check_signal_length)

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

    Students write it in notebook 07, exercise 3 (`exercises.check_highway_layer`).
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


@dataclasses.dataclass(frozen=True)
class HighwayMLPConfig(ModelConfig):
    """HighwayMLP's configuration; every field checked once, here."""

    model = "HighwayMLP"
    in_dim: int
    out_dim: int
    width: int = 64
    depth: int = 10
    activation: str = "relu"
    gate_bias: float = -2.0
    seed: int | None = 0

    def __post_init__(self) -> None:
        self._check_vector_sizes()
        self._set("activation", check_choice("activation", self.activation, ACTIVATIONS))
        self._set("gate_bias", check_number("gate_bias", self.gate_bias))
        self._set("seed", check_seed("seed", self.seed, allow_none=True))
        self.check_budget(self.width * (self.in_dim + self.out_dim + 2 * self.depth * self.width),
                          "width", "depth", "in_dim")


class HighwayMLP(SkipNet):
    """A linear stem, `depth` highway layers of equal width, a linear output.

    Input (batch, in_dim) -> output (batch, out_dim). One skip per layer, its carry path:
    `len(skips) == depth`. paths.deleted forces a layer to carry (T = 0: y = x).
    """

    Config = HighwayMLPConfig

    def __init__(self, in_dim: int, out_dim: int, width: int = 64, depth: int = 10,
                 activation: str = "relu", gate_bias: float = -2.0, seed: int | None = 0):
        super().__init__()
        self.config = c = self.Config(in_dim, out_dim, width, depth, activation, gate_bias, seed)
        with seeded(c.seed):
            self.stem = nn.Linear(c.in_dim, c.width)
            self.blocks = nn.ModuleList(HighwayLayer(c.width, c.activation, c.gate_bias) for _ in range(c.depth))
            self.head = nn.Linear(c.width, c.out_dim)
        self._init_skips(c.depth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer, skip in zip(self.blocks, self._skips):
            x = layer(x, skip)
        return self.head(x)


def conv_pair(in_ch: int, out_ch: int) -> nn.Sequential:
    """Two 3-tap conv-BN-ReLU layers: the U-Net's unit at one resolution."""
    return nn.Sequential(nn.Conv1d(in_ch, out_ch, 3, padding=1), nn.BatchNorm1d(out_ch), nn.ReLU(),
                         nn.Conv1d(out_ch, out_ch, 3, padding=1), nn.BatchNorm1d(out_ch), nn.ReLU())


@dataclasses.dataclass(frozen=True)
class UNet1dConfig(ModelConfig):
    """UNet1d's configuration; every field checked once, here. Its output has the input's
    length, so `output_size` is ('in_len', in_len)."""

    model = "UNet1d"
    in_len: int = 40
    channels: int = 16
    levels: int = 2
    seed: int | None = 0

    def __post_init__(self) -> None:
        self._set("in_len", check_int("in_len", self.in_len, minimum=2))
        self._set("channels", check_int("channels", self.channels))
        self._set("levels", check_depth("levels", self.levels))
        self.check_budget(12 * self.channels ** 2 * 4 ** self.levels, "channels", "levels")
        if self.in_len % 2 ** self.levels:
            raise SkipvizValueError(f"UNet1d with levels={self.levels} halves the length {self.levels} "
                                    f"times, so in_len must be divisible by {2 ** self.levels}; got {self.in_len}")
        self._set("seed", check_seed("seed", self.seed, allow_none=True))

    def output_size(self) -> tuple[str, int]:
        return "in_len", self.in_len


class UNet1d(SkipNet):
    """Ronneberger et al.'s U-Net for 1-D signals: (batch, length) -> (batch, length).

    Encoder: `levels` units (channels c, 2c, 4c, ...), each followed by max-pool 2; a bottleneck
    unit; decoder: per level, a transposed convolution doubles the length, the encoder's features
    of the same resolution are concatenated (the long skip), and a unit merges them; a 1x1
    convolution gives one channel. The length must be divisible by 2**levels.

    Skips: one per level, skips[0] the finest (the first encoder unit to the last decoder unit).
    Switched off, zeros take the encoder's features' place: a plain encoder-decoder.
    """

    Config = UNet1dConfig

    def __init__(self, in_len: int = 40, channels: int = 16, levels: int = 2, seed: int | None = 0):
        super().__init__()
        self.config = c = self.Config(in_len, channels, levels, seed)
        widths = [c.channels * 2 ** level for level in range(c.levels + 1)]
        with seeded(c.seed):
            self.down = nn.ModuleList(conv_pair(1 if i == 0 else widths[i - 1], widths[i]) for i in range(c.levels))
            self.bottom = conv_pair(widths[c.levels - 1], widths[c.levels])
            self.upsample = nn.ModuleList(nn.ConvTranspose1d(widths[i + 1], widths[i], 2, stride=2)
                                          for i in range(c.levels))
            self.up = nn.ModuleList(conv_pair(2 * widths[i], widths[i]) for i in range(c.levels))
            self.out = nn.Conv1d(widths[0], 1, 1)
        self._init_skips(c.levels)
        self.register_forward_pre_hook(check_signal_length)

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
