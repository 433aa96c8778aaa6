import pytest
import torch

from skipviz import models

X = torch.randn(8, 5)


@pytest.mark.parametrize("block", models.BLOCKS)
@pytest.mark.parametrize("span", models.SPANS)
def test_residual_shapes(block, span):
    net = models.ResidualMLP(5, 3, width=16, depth=4, block=block, span=span)
    assert net(X).shape == (8, 3)
    assert net.skips == [True] * 4 and net.num_skips == 4


def test_plain_has_no_skips():
    net = models.PlainMLP(5, 3, width=16, depth=4)
    assert net(X).shape == (8, 3) and net.skips == [] and len(net.probe_layers) == 4
    net.skips = []  # the only valid value
    with pytest.raises(ValueError, match="length 0"):
        net.skips = [True]


def test_same_seed_same_weights_and_global_rng_untouched():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = models.ResidualMLP(5, 3, seed=7)
    assert torch.equal(torch.rand(3), expected), "constructing a model must not consume the global RNG"
    b = models.ResidualMLP(5, 3, seed=7)
    c = models.ResidualMLP(5, 3, seed=8)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(va, vb), ka
    assert not all(torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))


def test_skips_setter_validates_length_and_type():
    net = models.ResidualMLP(5, 3, depth=3)
    net.skips = [True, False, True]
    assert net.skips == [True, False, True]
    with pytest.raises(ValueError, match="length 3"):
        net.skips = [True, False]
    with pytest.raises(ValueError, match="booleans"):
        net.skips = [1, 0, 1]
    with pytest.raises(ValueError, match="booleans"):
        net.skips = "yes"
    view, copy = net.skips, list(net.skips)
    copy[0] = False  # list() is a copy: mutating it does not change the model
    assert net.skips[0] is True
    view[0] = False  # the property is a view that writes through (and checks what it writes)
    assert net.skips == [False, False, True]


def test_skips_off_context_restores():
    net = models.ResidualMLP(5, 3, depth=4)
    with net.skips_off([1, 3]):
        assert net.skips == [True, False, True, False]
    assert net.skips == [True] * 4
    with net.skips_off():
        assert net.skips == [False] * 4
    assert net.skips == [True] * 4
    with pytest.raises(ValueError, match="0..3"):
        with net.skips_off([4]):
            pass
    assert net.skips == [True] * 4


@pytest.mark.parametrize("block", models.BLOCKS)
def test_skip_off_removes_exactly_the_identity(block):
    torch.manual_seed(0)
    blk = models.ResidualBlock(6, block=block, span=2)
    x = torch.randn(4, 6)
    with_skip, without = blk(x, True), blk(x, False)
    if block == "v1":  # x' = act(F(x) + x)
        assert torch.allclose(with_skip, torch.relu(blk.branch(x) + x))
        assert torch.allclose(without, torch.relu(blk.branch(x)))
    else:
        assert torch.allclose(with_skip - without, x, atol=1e-6)


def test_block_formulas():
    torch.manual_seed(0)
    x = torch.randn(4, 6)
    blk = models.ResidualBlock(6, block="v2", span=2, branch_scale=0.5)
    w1, w2 = blk.linears
    assert torch.allclose(blk(x), 0.5 * torch.relu(w2(torch.relu(w1(x)))) + x, atol=1e-6)
    pre = models.ResidualBlock(6, block="preact", span=1)
    assert torch.allclose(pre(x), x + pre.linears[0](torch.relu(x)), atol=1e-6)


def test_residual_with_all_skips_off_equals_plain_chain():
    net = models.ResidualMLP(5, 3, width=8, depth=3, block="v2")
    net.skips = [False] * 3
    h = net.stem(X)
    for blk in net.blocks:
        h = torch.relu(blk.linears[1](torch.relu(blk.linears[0](h))))
    assert torch.allclose(net(X), net.head(h), atol=1e-6)


@pytest.mark.parametrize("init, var_times_n", [("xavier", 1.0), ("he", 2.0), ("small", 0.25), ("default", 1 / 3)])
def test_init_variances(init, var_times_n):
    net = models.PlainMLP(256, 10, width=256, depth=3, init=init)
    w = net.layers[1][0].weight
    assert abs(w.var().item() * 256 / var_times_n - 1) < 0.05
    if init != "default":
        assert torch.count_nonzero(net.layers[1][0].bias) == 0


def test_conv_net_shapes_and_shortcuts():
    net = models.SkipConvNet(40, 10, channels=8, depth=4)
    x = torch.randn(5, 40)
    assert net(x).shape == (5, 10) and net.num_skips == 4
    blk = models.SkipBlock1d(4, 8, stride=2, shortcut="double")
    y = torch.randn(2, 4, 10)
    s = blk.shortcut(y)
    assert s.shape == (2, 8, 5)
    assert torch.equal(s[:, :4], y[..., ::2]) and torch.equal(s[:, 4:], y[..., ::2])
    proj = models.SkipBlock1d(4, 8, stride=2, shortcut="projection")
    assert proj(y).shape == (2, 8, 5) and proj.projection is not None
    with pytest.raises(ValueError, match="out_ch == in_ch or 2"):
        models.SkipBlock1d(4, 12, shortcut="double")


@pytest.mark.parametrize("call, match", [
    (lambda: models.PlainMLP(5, 3, activation="gelu"), "'relu', 'tanh', 'sigmoid'"),
    (lambda: models.PlainMLP(5, 3, init="orthogonal"), "'default', 'xavier', 'he', 'small'"),
    (lambda: models.PlainMLP(5, 3, depth=0), r"depth must be an integer in 1\.\."),
    (lambda: models.PlainMLP(5, 3, width=0), "width must be an integer >= 1"),
    (lambda: models.ResidualMLP(5, 3, block="v3"), "'v1', 'v2', 'preact'"),
    (lambda: models.ResidualMLP(5, 3, span=3), "span must be one of 1, 2"),
    (lambda: models.ResidualMLP(5, 3, branch_scale=0), "branch_scale"),
    (lambda: models.ResidualMLP(5, 3, norm="layer"), "'none', 'batch'"),
    (lambda: models.SkipConvNet(depth=1), "depth"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
