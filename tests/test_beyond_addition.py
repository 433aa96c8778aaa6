"""Notebook 07's models (DenseNet1d, HighwayMLP, UNet1d) under the common skip control, their
science on small fixed-seed runs, and the four spot-the-bug checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from skipviz import data, models, paths, training


def test_densenet_channel_arithmetic_and_shapes():
    net = models.DenseNet1d(stem=16, growth=8, layers=4, blocks=2)
    assert [[layer.conv1.in_channels for layer in block] for block in net.dense] == [[16, 24, 32, 40], [24, 32, 40, 48]]
    assert net.block_channels == [(16, 48), (24, 56)]
    assert net.num_skips == 2 * (4 * 5 // 2) == len(net.connections)
    assert net(torch.randn(3, 40)).shape == (3, 10)
    big = models.DenseNet1d(stem=64, growth=32, layers=6, blocks=1)
    assert big.block_channels == [(64, 256)]  # the article's example


def _eval_out(net, x):
    with torch.no_grad(), training.eval_mode(net):
        return net(x)


@pytest.mark.parametrize("make, x", [
    (lambda: models.DenseNet1d(), torch.randn(4, 40)),
    (lambda: models.HighwayMLP(40, 10, width=16, depth=5), torch.randn(4, 40)),
    (lambda: models.UNet1d(channels=8, levels=2), torch.randn(4, 40)),
])
def test_every_skip_changes_the_output_and_all_on_is_the_same_forward(make, x):
    net = make()
    reference = _eval_out(net, x)
    for i in range(net.num_skips):
        with net.skips_off([i]):
            assert not torch.allclose(_eval_out(net, x), reference), f"skip {i} changes nothing"
    assert torch.equal(_eval_out(net, x), reference)
    with pytest.raises(ValueError, match="skips must have length"):
        net.skips = [True] * (net.num_skips + 1)


def test_a_dense_connection_switched_off_feeds_zeros():
    net = models.DenseNet1d(layers=2, blocks=1)
    x = torch.randn(2, 40)
    i = net.connections.index((0, 2, 0))  # the block output reading the block input
    with net.skips_off([i]), torch.no_grad(), training.eval_mode(net):
        h = net.stem(x.unsqueeze(1))
        out = net.dense_block(0, h)
    assert out[:, :16].abs().max() == 0 and out[:, 16:].abs().max() > 0


def test_highway_gate_starts_at_its_bias_and_forced_carry_is_the_identity():
    layer = models.HighwayLayer(16, gate_bias=-3.0)
    assert torch.all(layer.transform_gate.bias == -3.0)
    net = models.HighwayMLP(40, 10, width=16, depth=3, gate_bias=-2.0)
    x = torch.randn(5, 40)
    h = net.stem(x)
    with torch.no_grad():
        assert torch.allclose(net.blocks[0].gate(h).mean(), torch.sigmoid(torch.tensor(-2.0)), atol=0.15)
        with paths.deleted(net, [0, 1, 2]):
            assert torch.allclose(net(x), net.head(net.stem(x)))
    for bad in (float("nan"), float("inf"), "low"):
        with pytest.raises(ValueError, match="gate_bias must be a finite number"):
            models.HighwayMLP(40, 10, gate_bias=bad)


def test_unet_without_long_skips_is_a_plain_encoder_decoder():
    """With the long skips off the output equals an encoder-decoder that never sees the encoder's
    features at the decoder (zeros in their place)."""
    net = models.UNet1d(channels=8, levels=2)
    net.skips = [False, False]
    x = torch.randn(3, 40)
    with torch.no_grad(), training.eval_mode(net):
        h = x.unsqueeze(1)
        widths = []
        for unit in net.down:
            h = unit(h)
            widths.append(h.shape)
            h = nn.functional.max_pool1d(h, 2)
        h = net.bottom(h)
        for level in reversed(range(2)):
            h = net.upsample[level](h)
            h = net.up[level](torch.cat([h, torch.zeros(widths[level])], dim=1))
        assert torch.equal(net(x), net.out(h).squeeze(1))
    with pytest.raises(ValueError, match="divisible by 8"):
        models.UNet1d(in_len=36, levels=3)
    with pytest.raises(ValueError, match="levels must be an integer"):
        models.UNet1d(levels=0)
    with pytest.raises(ValueError, match="growth must be an integer"):
        models.DenseNet1d(growth=0)
    with pytest.raises(ValueError, match="layers must be an integer"):
        models.DenseNet1d(layers=0)
    with pytest.raises(ValueError, match="depth must be an integer"):
        models.HighwayMLP(40, 10, depth=0)


@pytest.mark.real_cache
def test_long_skips_lower_the_denoising_error():
    noisy = data.denoising(noise=0.5, seed=0)
    errors = {}
    for on in (True, False):
        net = models.UNet1d(channels=8, levels=2, seed=0)
        net.skips = [on, on]
        training.fit(net, noisy, 150, lr=2e-3, batch_size=64, seed=0, progress=False)
        errors[on] = training.evaluate(net, noisy)[1]
    assert errors[True] < errors[False]
    assert errors[True] < ((noisy.x_test - noisy.y_test) ** 2).mean().item()  # better than doing nothing


@pytest.mark.real_cache
def test_trained_highway_gates_are_strictly_inside_and_differ_between_layers():
    mnist = data.mnist1d()
    net = models.HighwayMLP(40, 10, width=32, depth=10, seed=0)
    training.fit(net, mnist, 200, seed=0, progress=False)
    with torch.no_grad():
        h, gates = net.stem(mnist.x_test), []
        for layer in net.blocks:
            gates.append(layer.gate(h).mean().item())
            h = layer(h)
    assert all(0 < g < 1 for g in gates)
    assert max(gates) - min(gates) > 0.01


def test_denoising_data_is_fixed_by_its_seed():
    a, b, c = data.denoising(0.5, seed=0), data.denoising(0.5, seed=0), data.denoising(0.5, seed=1)
    assert torch.equal(a.x_train, b.x_train) and not torch.equal(a.x_train, c.x_train)
    assert torch.equal(a.y_test, data.mnist1d().x_test)
    assert math.isclose(((a.x_test - a.y_test) ** 2).mean().item(), 0.25, rel_tol=0.05)
    with pytest.raises(ValueError, match="noise must be a finite number > 0"):
        data.denoising(0)


