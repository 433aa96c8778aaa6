"""Checks for notebook 07, exercises 1-2 (spot the bug): the article's ResidualBlock and the
lecture's SkipBlock, fixed. Each check builds the student's class, gives a reference the same
weights (`modules.compare_modules`) and compares the two in train and eval mode and through
backward(); a wrong fix is named by the typical mistake that behaves like it.
"""

from __future__ import annotations

import torch
from torch import nn

from .feedback import CheckResult, exercise_check, not_done
from .modules import build, compare_modules, first_mistake, nudged
from .nb07 import _input

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
