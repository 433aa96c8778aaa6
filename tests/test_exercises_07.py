"""Notebook 07's checks by behaviour: right answers written another way pass, each typical
mistake is named, the stub says "not done yet", nothing raises out of a check."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from skipviz import exercises

# ---------------------------------------------------------------- exercise 1: ResidualBlock


class Published(nn.Module):  # the article's block, both bugs in
    def __init__(self, in_channels, out_channels, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm1d(out_channels)
        self.downsample = downsample

    def forward(self, x):
        residual = x
        if self.downsample is not None:
            residual = downsample(residual)  # noqa: F821
        out = torch.relu(self.bn(self.conv1(x)))
        out = self.bn(self.conv2(out))
        return torch.relu(out + residual)


class Fixed(nn.Module):
    def __init__(self, in_channels, out_channels, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv1d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.conv2 = nn.Conv1d(out_channels, out_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.downsample = downsample

    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + residual)


class FixedOtherwise(nn.Module):  # other names, other definition order, shortcut computed last, F.relu
    def __init__(self, in_channels, out_channels, stride=1, downsample=None):
        super().__init__()
        self.norm_b = nn.BatchNorm1d(out_channels)
        self.second = nn.Conv1d(out_channels, out_channels, 3, padding=1)
        self.norm_a = nn.BatchNorm1d(out_channels)
        self.first = nn.Conv1d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.down = downsample

    def forward(self, x):
        h = F.relu(self.norm_a(self.first(x)))
        h = self.norm_b(self.second(h))
        return F.relu(h + (x if self.down is None else self.down(x)))


class SharedBN(Fixed):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bn2 = self.bn1


class NoInnerRelu(Fixed):
    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.bn1(self.conv1(x))))
        return torch.relu(out + residual)


class BNOnShortcut(Fixed):
    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out)
        return torch.relu(out + self.bn2(residual))


class BNAfterAdd(Fixed):
    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.conv2(torch.relu(self.bn1(self.conv1(x))))
        return torch.relu(self.bn2(out + residual))


class NoFinalRelu(Fixed):
    def forward(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return out + residual


class ShortcutIgnoresDownsampler(Fixed):
    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + x)


@pytest.mark.parametrize("cls", [Fixed, FixedOtherwise, Fixed.__new__ and type("Double", (Fixed,), {})])
def test_residual_block_accepts_right_answers(cls):
    result = exercises.check_residual_block(cls)
    assert result.ok, result.message


def test_residual_block_accepts_a_float64_block():
    class Float64(Fixed):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.double()

        def forward(self, x):
            return super().forward(x.double())

    assert exercises.check_residual_block(Float64).ok


@pytest.mark.parametrize("cls, words", [
    (Published, "self.downsample"),
    (SharedBN, "one BatchNorm still normalizes both"),
    (NoInnerRelu, "ReLU between the two convolutions is missing"),
    (BNOnShortcut, "BatchNorm sits on the shortcut"),
    (NoFinalRelu, "ReLU after the addition is missing"),
    (BNAfterAdd, "second BatchNorm normalizes the sum"),
    (ShortcutIgnoresDownsampler, "self.downsample(x)"),
    (None, "not done yet"),
])
def test_residual_block_names_each_mistake(cls, words):
    result = exercises.check_residual_block(cls)
    assert not result.ok and words in result.message, result.message
    assert len(result.message.splitlines()) == 1


# ---------------------------------------------------------------- exercise 2: SkipBlock


class LectureBlock(nn.Module):
    def __init__(self, in_ch, out_ch):
        super().__init__()
        self.in_ch, self.out_ch = in_ch, out_ch
        self.conv1 = nn.Conv1d(in_ch, out_ch, 3, padding=1)
        self.conv2 = nn.Conv1d(in_ch, out_ch, 3, padding=1)
        self.bn1, self.bn2 = nn.BatchNorm1d(out_ch), nn.BatchNorm1d(out_ch)

    def forward(self, x):
        identity = x
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        if self.in_ch == self.out_ch:
            return out + identity
        return out + torch.cat([identity, identity], dim=1)


def with_conv2_fixed(cls):
    class Fixed2(cls):
        def __init__(self, in_ch, out_ch):
            super().__init__(in_ch, out_ch)
            self.conv2 = nn.Conv1d(out_ch, out_ch, 3, padding=1)
    return Fixed2


def skip_variant(add):
    class Variant(with_conv2_fixed(LectureBlock)):
        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            out = torch.relu(self.bn2(self.conv2(out)))
            if self.in_ch == self.out_ch:
                return out + x
            return add(out, x, self.in_ch)
    return Variant


def inplace(out, x, c):
    out[:, :c] += x
    out[:, c:] += x
    return out


@pytest.mark.parametrize("cls", [
    with_conv2_fixed(LectureBlock),
    skip_variant(lambda out, x, c: out + x.repeat(1, 2, 1)),
    skip_variant(lambda out, x, c: torch.cat([out[:, :c] + x, out[:, c:] + x], dim=1)),
])
def test_skip_block_accepts_right_answers(cls):
    result = exercises.check_skip_block(cls)
    assert result.ok, result.message


@pytest.mark.parametrize("cls, words", [
    (LectureBlock, "conv2 is built for in_ch channels"),
    (skip_variant(inplace), "in-place write"),
    (skip_variant(lambda out, x, c: out + torch.cat([x, torch.zeros_like(x)], 1)), "only the first half"),
    (skip_variant(lambda out, x, c: out + torch.cat([torch.zeros_like(x), x], 1)), "only the second half"),
    (skip_variant(lambda out, x, c: out + torch.cat([2 * x, torch.zeros_like(x)], 1)), "added twice to the first half"),
    (skip_variant(lambda out, x, c: out + x.repeat_interleave(2, dim=1)), "repeat_interleave"),
    (skip_variant(lambda out, x, c: out), "the block adds no skip"),
    (None, "not done yet"),
])
def test_skip_block_names_each_mistake(cls, words):
    result = exercises.check_skip_block(cls)
    assert not result.ok and words in result.message, result.message
    assert len(result.message.splitlines()) == 1


# ---------------------------------------------------------------- exercise 3: highway layer


def highway(forward, bias=True):
    class Layer(nn.Module):
        def __init__(self, width, gate_bias=-2.0):
            super().__init__()
            self.gate = nn.Linear(width, width)
            self.h = nn.Linear(width, width)
            if bias:
                nn.init.constant_(self.gate.bias, gate_bias)

        def forward(self, x):
            return forward(self, x)
    return Layer


RIGHT = highway(lambda s, x: torch.sigmoid(s.gate(x)) * torch.relu(s.h(x)) + (1 - torch.sigmoid(s.gate(x))) * x)


def test_highway_accepts_right_answers():
    assert exercises.check_highway_layer(RIGHT).ok
    torch_style = highway(lambda s, x: torch.lerp(x, torch.relu(s.h(x)), torch.sigmoid(s.gate(x))))
    assert exercises.check_highway_layer(torch_style).ok


@pytest.mark.parametrize("cls, words", [
    (highway(lambda s, x: torch.sigmoid(s.gate(x)) * (torch.relu(s.h(x)) + x)), "weighted by 1 - T"),
    (highway(lambda s, x: (1 - torch.sigmoid(s.gate(x))) * torch.relu(s.h(x)) + torch.sigmoid(s.gate(x)) * x),
     "swapped"),
    (highway(lambda s, x: s.gate(x) * torch.relu(s.h(x)) + (1 - s.gate(x)) * x), "not squashed"),
    (highway(lambda s, x: torch.sigmoid(s.gate(x)) * s.h(x) + (1 - torch.sigmoid(s.gate(x))) * x), "H has no ReLU"),
    (highway(lambda s, x: torch.relu(s.h(x)) + x + 0 * s.gate(x)), "gate T is computed but never used"),
    (highway(lambda s, x: torch.tanh(s.gate(x)) * torch.relu(s.h(x)) + (1 - torch.tanh(s.gate(x))) * x), "uses tanh"),
    (highway(RIGHT.forward, bias=False), "does not start at gate_bias"),
    (None, "not done yet"),
])
def test_highway_names_each_mistake(cls, words):
    result = exercises.check_highway_layer(cls)
    assert not result.ok and words in result.message, result.message


# ---------------------------------------------------------------- exercise 4: dense block


def dense_right(x, layers):
    features = [x]
    for layer in layers:
        features.append(layer(torch.cat(features, dim=1)))
    return torch.cat(features, dim=1)


def dense_growing(x, layers):  # the same, grown in place
    out = x
    for layer in layers:
        out = torch.cat([out, layer(out)], 1)
    return out


def dense_chain(x, layers):
    h, outs = x, [x]
    for layer in layers:
        h = layer(h)
        outs.append(h)
    return torch.cat(outs, 1)


def test_dense_accepts_right_answers():
    assert exercises.check_dense_block(dense_right).ok
    assert exercises.check_dense_block(dense_growing).ok


@pytest.mark.parametrize("fn, words", [
    (dense_chain, "layer 2 received 3 channels"),
    (lambda x, ls: dense_right(x, ls)[:, x.shape[1]:], "input is missing"),
    (lambda x, ls: dense_right(x, ls)[:, -3:], "last layer's output alone"),
    (None, "not done yet"),
    (lambda x, ls: 1 / 0, "ZeroDivisionError"),
])
def test_dense_names_each_mistake(fn, words):
    result = exercises.check_dense_block(fn)
    assert not result.ok and words in result.message, result.message


# ---------------------------------------------------------------- exercise 5: U-Net level


def level(forward):
    return type("UNetLevel", (exercises.UNetLevelBase,), {"forward": forward})


def unet_right(self, x, swapped=False):
    skip = self.down(x[:, None])
    y = self.upsample(self.bottom(F.max_pool1d(skip, 2)))
    return self.out(self.up(torch.cat([skip, y] if swapped else [y, skip], 1)))[:, 0]


@pytest.mark.parametrize("fn, words", [
    (lambda self, x: unet_right(self, x, swapped=True), "[encoder, upsampled]"),
    (lambda self, x: self.out(self.up(torch.cat([self.upsample(self.bottom(F.max_pool1d(self.down(x[:, None]), 2))),
                                                 torch.zeros(len(x), 8, x.shape[1])], 1)))[:, 0], "carries zeros"),
    (lambda self, x: self.out(self.up(self.upsample(self.bottom(F.max_pool1d(self.down(x[:, None]), 2)))))[:, 0],
     "wrong number of channels"),
])
def test_unet_names_each_mistake(fn, words):
    result = exercises.check_unet_level(level(fn))
    assert not result.ok and words in result.message, result.message


def test_unet_accepts_the_right_answer_and_refuses_the_stub():
    assert exercises.check_unet_level(level(unet_right)).ok
    assert exercises.check_unet_level(None).message.startswith("not done yet")


def test_checks_leave_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.randn(3)
    torch.manual_seed(123)
    exercises.check_residual_block(Fixed)
    exercises.check_skip_block(with_conv2_fixed(LectureBlock))
    exercises.check_highway_layer(RIGHT)
    exercises.check_dense_block(dense_right)
    exercises.check_unet_level(level(unet_right))
    assert torch.equal(torch.randn(3), expected)


def test_spot_the_bug_checks_on_instances_and_other_kinds():
    for check in (exercises.check_residual_block, exercises.check_skip_block, exercises.check_highway_layer,
                  exercises.check_unet_level):
        assert "not an instance" in check(Fixed(8, 8)).message
        assert "subclass of nn.Module" in check(3).message


# ---------------------------------------------------------------------------- answers that only look right


class _Highway(nn.Module):
    def __init__(self, width, gate_bias=-2.0):
        super().__init__()
        self.H, self.T, self.gate_bias = nn.Linear(width, width), nn.Linear(width, width), gate_bias
        nn.init.constant_(self.T.bias, gate_bias)

    def forward(self, x):
        t = torch.sigmoid(self.T(x))
        return t * torch.relu(self.H(x)) + (1 - t) * x


class _ResetsItsBias(_Highway):
    def forward(self, x):
        with torch.no_grad():
            self.T.bias.fill_(self.gate_bias)       # "starts" at gate_bias on every call
        return super().forward(x)


class _ZeroGateWeights(_Highway):
    def __init__(self, width, gate_bias=-2.0):
        super().__init__(width, gate_bias)
        nn.init.zeros_(self.T.weight)


class _NaNs(_Highway):
    def forward(self, x):
        return super().forward(x) * float("nan")


@pytest.mark.parametrize("cls, words", [
    (_ResetsItsBias, "forward changes its own parameters (T.bias)"),
    (_ZeroGateWeights, "gate's weights start all equal"),
    (_NaNs, "NaN or inf"),
])
def test_highway_answers_that_only_look_right_are_named(cls, words):
    assert exercises.check_highway_layer(_Highway).ok
    result = exercises.check_highway_layer(cls)
    assert not result.ok and words in result.message, result.message


class _UNetSqueezeAll(exercises.UNetLevelBase):
    def forward(self, x):
        skip = self.down(x.unsqueeze(1))
        y = self.upsample(self.bottom(F.max_pool1d(skip, 2)))
        return self.out(self.up(torch.cat([y, skip], dim=1))).squeeze()


class _UNetSkipAfterPool(exercises.UNetLevelBase):
    def forward(self, x):
        skip = F.max_pool1d(self.down(x.unsqueeze(1)), 2)
        y = self.upsample(self.bottom(skip))
        return self.out(self.up(torch.cat([y, skip], dim=1))).squeeze(1)


class _UNetAvgPool(exercises.UNetLevelBase):
    def forward(self, x):
        skip = self.down(x.unsqueeze(1))
        y = self.upsample(self.bottom(F.avg_pool1d(skip, 2)))
        return self.out(self.up(torch.cat([y, skip], dim=1))).squeeze(1)


@pytest.mark.parametrize("cls, words", [
    (_UNetSqueezeAll, "squeeze() without a dim"),
    (_UNetSkipAfterPool, "before pooling"),
    (_UNetAvgPool, "average-pooled"),
])
def test_unet_level_names_pooling_and_squeeze_mistakes(cls, words):
    result = exercises.check_unet_level(cls)
    assert not result.ok and words in result.message, result.message


def test_highway_without_its_gate_and_with_an_in_place_input_are_named():
    no_gate = highway(lambda s, x: torch.relu(s.h(x)) + x)
    assert "gate T is missing" in exercises.check_highway_layer(no_gate).message

    def in_place(s, x):
        t = torch.sigmoid(s.gate(x))
        x.mul_(1 - t)
        return t * torch.relu(s.h(x)) + x
    assert "write into the input x in place" in exercises.check_highway_layer(highway(in_place)).message


def test_skip_block_accepts_the_lectures_reading_and_names_the_single_channel():
    class LectureReading(nn.Module):   # conv2 only when the channels stay, as the lecture runs it
        def __init__(self, in_ch, out_ch):
            super().__init__()
            self.in_ch, self.out_ch = in_ch, out_ch
            self.conv1, self.bn1 = nn.Conv1d(in_ch, out_ch, 3, padding=1), nn.BatchNorm1d(out_ch)
            self.conv2, self.bn2 = nn.Conv1d(out_ch, out_ch, 3, padding=1), nn.BatchNorm1d(out_ch)

        def forward(self, x):
            out = torch.relu(self.bn1(self.conv1(x)))
            if self.in_ch == self.out_ch:
                return torch.relu(self.bn2(self.conv2(out))) + x
            return out + torch.cat([x, x], 1)

    class SingleChannel(LectureReading):
        def forward(self, x):
            out = torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))
            if self.in_ch == self.out_ch:
                return out + x
            out = out.clone()
            out[:, self.in_ch] = out[:, self.in_ch] + x
            return out

    class Conv2StillWrong(LectureReading):   # the lecture's reading with conv2 left as Conv1d(in_ch, out_ch)
        def __init__(self, in_ch, out_ch):
            super().__init__(in_ch, out_ch)
            self.conv2 = nn.Conv1d(in_ch, out_ch, 3, padding=1)

    assert exercises.check_skip_block(LectureReading).ok
    assert "single channel" in exercises.check_skip_block(SingleChannel).message
    assert "Conv1d(out_ch, out_ch" in exercises.check_skip_block(Conv2StillWrong).message


def test_dense_block_names_the_wrong_axis():
    def wrong_axis(x, layers):
        features = [x]
        for layer in layers:
            features.append(layer(torch.cat(features, 2)))
        return torch.cat(features, 1)
    assert "wrong axis" in exercises.check_dense_block(wrong_axis).message


def test_layers_in_a_plain_list_are_named_as_unregistered():
    class ListHighway(nn.Module):
        def __init__(self, width, gate_bias=-2.0):
            super().__init__()
            self.layers = [nn.Linear(width, width), nn.Linear(width, width)]

        def forward(self, x):
            t = torch.sigmoid(self.layers[1](x))
            return t * torch.relu(self.layers[0](x)) + (1 - t) * x

    message = exercises.check_highway_layer(ListHighway).message
    assert "plain Python list" in message and "nn.ModuleList" in message


def test_a_dense_block_written_into_a_float32_buffer_is_right():
    """A right answer that fills a preallocated torch.empty (float32) buffer is accepted, and a
    wrong one written the same way is still named."""
    import torch

    def into_buffer(x, layers, last_only=False):
        features = [x]
        for layer in layers:
            features.append(layer(torch.cat(features, dim=1)))
        chosen = features[-1:] if last_only else features
        out = torch.empty(x.shape[0], sum(f.shape[1] for f in chosen), x.shape[2])
        start = 0
        for f in chosen:
            out[:, start:start + f.shape[1]] = f
            start += f.shape[1]
        return out

    assert exercises.check_dense_block(into_buffer).ok
    wrong = exercises.check_dense_block(lambda x, layers: into_buffer(x, layers, last_only=True))
    assert not wrong.ok and "last layer's output alone" in wrong.message
