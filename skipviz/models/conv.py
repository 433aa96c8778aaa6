"""Convolutional networks for 1-D signals such as MNIST-1D: the lecture's SkipBlock CNN
(notebook 02) and Hauser's pre-activation ResNet (notebook 06).

Each model's `forward` is a few lines at the end of its class; `model.skips` switches its skips.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .._validation import check_choice, check_int, check_seed
from ..errors import SkipvizValueError
from .core import (
    MAX_DEPTH,
    SHORTCUTS,
    ModelConfig,
    SkipNet,
    check_budget,
    check_depth,
    check_signal_length,
    seeded,
)


class SkipBlock1d(nn.Module):
    """The lecture's SkipBlock for 1-D signals: (conv-BN-ReLU) twice, then add the shortcut.

    Input (batch, in_ch, length) -> (batch, out_ch, length // stride). There is no nonlinearity
    after the addition. When the shape changes, the shortcut is either 'double' (DLStudio's
    trick: subsample, then add the input to both halves of the doubled channels; no parameters)
    or 'projection' (a 1x1 convolution with the stride, as He et al. use).

    Written out in notebook 01, §5 (`skip_block_forward`); its doubling shortcut in notebook 02, §1.
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


@dataclasses.dataclass(frozen=True)
class SkipConvNetConfig(ModelConfig):
    """SkipConvNet's configuration; every field checked once, here."""

    model = "SkipConvNet"
    in_len: int = 40
    num_classes: int = 10
    channels: int = 32
    depth: int = 8
    shortcut: str = "double"
    seed: int | None = 0

    def __post_init__(self) -> None:
        self._check_signal_sizes()
        self._set("channels", check_int("channels", self.channels))
        self._set("depth", check_int("depth", self.depth, minimum=2, maximum=MAX_DEPTH))
        self._set("shortcut", check_choice("shortcut", self.shortcut, SHORTCUTS))
        self._set("seed", check_seed("seed", self.seed, allow_none=True))
        self.check_budget(24 * self.depth * self.channels ** 2, "channels", "depth")


class SkipConvNet(SkipNet):
    """A BMEnet-style 1-D CNN built from SkipBlock1d, for inputs (batch, length) such as MNIST-1D.

    Stem conv(1 -> channels) + BN + ReLU; `depth` SkipBlocks in two stages, the first block of
    the second stage halving the length and doubling the channels; global average pool; linear
    output (batch, num_classes). One skip per block: `len(skips) == depth`.
    """

    Config = SkipConvNetConfig

    def __init__(self, in_len: int = 40, num_classes: int = 10, channels: int = 32, depth: int = 8,
                 shortcut: str = "double", seed: int | None = 0):
        super().__init__()
        self.config = c = self.Config(in_len, num_classes, channels, depth, shortcut, seed)
        with seeded(c.seed):
            self.stem = nn.Sequential(nn.Conv1d(1, c.channels, 5, padding=2),
                                      nn.BatchNorm1d(c.channels), nn.ReLU())
            first = c.depth // 2
            blocks = [SkipBlock1d(c.channels, c.channels) for _ in range(first)]
            blocks.append(SkipBlock1d(c.channels, 2 * c.channels, stride=2, shortcut=c.shortcut))
            blocks += [SkipBlock1d(2 * c.channels, 2 * c.channels) for _ in range(c.depth - first - 1)]
            self.blocks = nn.ModuleList(blocks)
            self.head = nn.Linear(2 * c.channels, c.num_classes)
        self._init_skips(c.depth)
        self.register_forward_pre_hook(check_signal_length)

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


class PreActBlock1d(nn.Module):
    """Hauser's block (his eq. 13; He et al. 2016's pre-activation):
    x' = x + W_2 * relu(BN_2(W_1 * relu(BN_1(x)))), with * a 3-tap convolution.

    Input and output (batch, channels, length). With skip=False the `x +` is dropped.

    Its branch is written out in notebook 06, §3 (`preact_branch`).
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


@dataclasses.dataclass(frozen=True)
class ResNet1dConfig(ModelConfig):
    """ResNet1d's configuration; every field checked once, here."""

    model = "ResNet1d"
    in_len: int = 40
    num_classes: int = 10
    channels: int = 8
    blocks: int = 2
    sections: int = 3
    seed: int | None = 0

    def __post_init__(self) -> None:
        self._set("sections", check_depth("sections", self.sections))
        self._check_signal_sizes(min_len=2 ** (self.sections - 1))
        self._set("channels", check_int("channels", self.channels))
        self._set("blocks", check_depth("blocks", self.blocks))
        self.check_budget(2 * self.blocks * self.channels ** 2 * 4 ** self.sections,
                          "channels", "blocks", "sections")
        self._set("seed", check_seed("seed", self.seed, allow_none=True))


class ResNet1d(SkipNet):
    """Hauser's network for 1-D signals such as MNIST-1D: a conv stem, then `sections` sections
    of `blocks` PreActBlock1d each; between sections a 1x1 convolution with stride 2 halves the
    length and doubles the channels (a transition, not a block: it has no skip); then BN, ReLU,
    global average pool and a linear output.

    Input (batch, in_len) -> logits (batch, num_classes). One skip per block:
    `len(skips) == sections * blocks`; `section_of[i]` is block i's section.
    """

    Config = ResNet1dConfig

    def __init__(self, in_len: int = 40, num_classes: int = 10, channels: int = 8, blocks: int = 2,
                 sections: int = 3, seed: int | None = 0):
        super().__init__()
        self.config = c = self.Config(in_len, num_classes, channels, blocks, sections, seed)
        widths = [c.channels * 2 ** s for s in range(c.sections)]
        with seeded(c.seed):
            self.stem = nn.Conv1d(1, c.channels, 5, padding=2)
            self.blocks = nn.ModuleList(PreActBlock1d(w) for w in widths for _ in range(c.blocks))
            self.transitions = nn.ModuleList(nn.Conv1d(w, 2 * w, 1, stride=2) for w in widths[:-1])
            self.norm = nn.BatchNorm1d(widths[-1])
            self.head = nn.Linear(widths[-1], c.num_classes)
        self.section_of = [s for s in range(c.sections) for _ in range(c.blocks)]
        self._init_skips(c.sections * c.blocks)
        self.register_forward_pre_hook(check_signal_length)

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
