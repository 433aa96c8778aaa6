"""Notebook 08's measurements: the gradient along a line of inputs (`probes.input_gradient`), its
autocorrelation, and the looks-linear initialization."""

from __future__ import annotations

import math

import pytest
import torch
from torch.func import grad, vmap

from skipviz import exercises, models, probes
from skipviz.errors import SkipvizValueError

LINE = torch.linspace(-2, 2, 32).unsqueeze(1)   # 32 points, 0 not among them

FAMILIES = {
    "plain": lambda: models.PlainMLP(1, 1, width=16, depth=5, init="he"),
    "plain crelu": lambda: models.PlainMLP(1, 1, width=8, depth=4, activation="crelu", init="he"),
    "residual v1": lambda: models.ResidualMLP(1, 1, width=16, depth=4, block="v1"),
    "residual preact span 1": lambda: models.ResidualMLP(1, 1, width=16, depth=4, block="preact", span=1),
    "highway": lambda: models.HighwayMLP(1, 1, width=16, depth=4),
    "telescope": lambda: models.TelescopeMLP(1, 1, width=16, depth=6),
}


def pointwise(model, x):
    """dy/dx at each point, one point at a time (the model in eval mode)."""
    model.eval()
    return vmap(grad(lambda xi: model(xi.reshape(1, 1)).sum()))(x[:, 0])


@pytest.mark.parametrize("name", FAMILIES)
def test_input_gradient_is_autograd_point_by_point(name):
    model = FAMILIES[name]()
    got = probes.input_gradient(model, LINE)
    assert got.shape == (32,)
    torch.testing.assert_close(got, pointwise(model, LINE))


def test_batch_norm_uses_the_lines_statistics_held_fixed_and_leaves_the_model_alone():
    model = models.ResidualMLP(1, 1, width=8, depth=3, span=1, norm="batch", seed=1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = probes.input_gradient(model, LINE)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    frozen = probes.frozen_statistics(model, LINE)
    # the frozen copy computes, point by point, what the model computes on the whole line
    with torch.no_grad():
        torch.testing.assert_close(frozen(LINE), model(LINE))
    torch.testing.assert_close(got, pointwise(frozen, LINE))
    # and differs from differentiating through the statistics as well
    xs = LINE.clone().requires_grad_(True)
    (through,) = torch.autograd.grad(model(xs).sum(), xs)
    assert not torch.allclose(through[:, 0], got)


def test_input_gradient_refuses_what_is_not_a_line_model():
    with pytest.raises(SkipvizValueError, match="in_dim=3"):
        probes.input_gradient(models.PlainMLP(3, 1, width=4, depth=2), LINE)
    with pytest.raises(SkipvizValueError, match="shape \\(n, 1\\)"):
        probes.input_gradient(models.PlainMLP(1, 1, width=4, depth=2), torch.zeros(4, 2))
    with pytest.raises(SkipvizValueError, match="one output per point"):
        probes.input_gradient(models.PlainMLP(1, 3, width=4, depth=2), LINE)


def test_autocorrelation_of_known_series():
    g = torch.tensor([1.0, 2.0, 4.0, 3.0, 5.0, 6.0])
    d = g.double() - g.double().mean()
    want = [(d[:len(d) - k] * d[k:]).mean() / (d * d).mean() for k in range(4)]
    torch.testing.assert_close(probes.autocorrelation(g, 3), torch.stack(want))
    torch.testing.assert_close(probes.autocovariance(g, 0), (d * d).mean().reshape(1))
    noise = torch.randn(4000, generator=torch.Generator().manual_seed(0))
    assert abs(probes.autocorrelation(noise, 1)[1]) < 0.05
    walk = noise.cumsum(0)
    assert probes.autocorrelation(walk, 1)[1] > 0.95
    with pytest.raises(SkipvizValueError, match="constant"):
        probes.autocorrelation(torch.ones(10), 2)
    with pytest.raises(SkipvizValueError, match="max_lag"):
        probes.autocorrelation(g, 6)


def test_looks_linear_starts_as_the_linear_map_its_weights_say():
    net = models.PlainMLP(3, 2, width=6, depth=4, activation="crelu", init="looks_linear", seed=2)
    x = torch.randn(5, 3, generator=torch.Generator().manual_seed(0))
    linear = net.layers[0][0].weight.T
    for layer in net.layers[1:]:
        linear = linear @ layer[0].weight[:, :6].T
    linear = linear @ net.head.weight[:, :6].T
    torch.testing.assert_close(net(x), x @ linear, rtol=1e-4, atol=1e-5)
    line = models.PlainMLP(1, 1, width=8, depth=6, activation="crelu", init="looks_linear")
    g = probes.input_gradient(line, LINE)
    assert (g.max() - g.min()) <= 1e-5 * g.abs().max()
    with pytest.raises(SkipvizValueError, match="activation='crelu'"):
        models.PlainMLP(1, 1, width=4, depth=2, init="looks_linear")
    with pytest.raises(SkipvizValueError, match="PlainMLP with activation='crelu'"):
        models.init_weights(models.ResidualMLP(1, 1, width=4, depth=2), "looks_linear")
    with pytest.raises(SkipvizValueError, match="activation"):
        models.ResidualMLP(1, 1, width=4, depth=2, activation="crelu")


def test_the_checks_name_the_usual_mistakes():
    def right(g, k):
        d = g - g.mean()
        return (d[:len(d) - k] * d[k:]).mean() / (d * d).mean()

    def uncentred(g, k):
        return (g[:len(g) - k] * g[k:]).mean() / (g * g).mean()

    def sums(g, k):
        d = g - g.mean()
        return (d[:len(d) - k] * d[k:]).sum() / (d * d).sum()

    assert exercises.check_autocorrelation(right).ok
    assert exercises.check_autocorrelation(lambda g, k: float(right(g, k).numpy())).ok
    assert exercises.check_autocorrelation(right, seed=5).ok
    assert "subtract the mean" in exercises.check_autocorrelation(uncentred).message
    assert "(n - k)/n" in exercises.check_autocorrelation(sums).message
    assert "not done yet" in exercises.check_autocorrelation(None).message
    assert exercises.check_shrink_factor(0.5).ok and exercises.check_shrink_factor(torch.tensor(0.5)).ok
    assert "standard deviation" in exercises.check_shrink_factor(1 / math.sqrt(2)).message
    assert "He initialization" in exercises.check_shrink_factor(1).message
    assert "0.5" not in exercises.check_shrink_factor(0.3).message
