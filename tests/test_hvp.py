"""skipviz.landscape.fast.rop: R-operator Hessian-vector products must equal autograd's, for every MLP layout
the notebooks use, at several weight vectors at once, and refuse what they cannot do."""

import pytest
import torch
from test_batched import half_skips, with_random_statistics
from torch import nn
from torch.func import functional_call

from skipviz import models
from skipviz.landscape import directions
from skipviz.landscape.fast import rop as hvp


class Shared(nn.Module):
    """A Linear used twice, a bias-free layer, a standalone batch norm without affine parameters
    after an addition, eval-mode dropout, a number added and a scale."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(40, 12, bias=False)
        self.twice = nn.Linear(12, 12)
        self.norm = nn.BatchNorm1d(12, affine=False)
        self.drop = nn.Dropout(0.3)
        self.head = nn.Linear(12, 10)

    def forward(self, x):
        h = torch.tanh(self.stem(x))
        h = self.norm(self.twice(torch.relu(self.twice(h))) + h)
        return self.head(self.drop(0.5 * torch.sigmoid(h) + 1.0))


MODELS = {
    "v1 batch norm": lambda: models.ResidualMLP(40, 10, width=16, depth=3, block="v1", norm="batch"),
    "v1 no norm": lambda: models.ResidualMLP(40, 10, width=16, depth=3, block="v1"),
    "v2 span 1": lambda: models.ResidualMLP(40, 10, width=16, depth=3, span=1, norm="batch"),
    "v2 tanh": lambda: models.ResidualMLP(40, 10, width=16, depth=2, activation="tanh", norm="batch"),
    "preact, scaled": lambda: models.ResidualMLP(40, 10, width=16, depth=3, block="preact",
                                                 norm="batch", branch_scale=0.5),
    "v1, half the skips off": lambda: half_skips(models.ResidualMLP(40, 10, width=16, depth=4,
                                                                    block="v1", norm="batch")),
    "plain sigmoid": lambda: models.PlainMLP(40, 10, width=16, depth=3, activation="sigmoid"),
    "telescope": lambda: half_skips(models.TelescopeMLP(40, 10, width=16, depth=5)),
    "shared, bias-free, standalone norm": Shared,
}


def autograd_products(model, weights, buffers, x, y, loss, v):
    """Reverse over reverse, one point at a time: the reference."""
    flat = directions.Flat(model)
    rows = []
    for w, d in zip(weights, v):
        leaf = w.clone().requires_grad_(True)
        out = functional_call(model, (flat.unflatten(leaf), buffers), (x,))
        value = nn.functional.cross_entropy(out, y) if loss == "cross_entropy" \
            else nn.functional.mse_loss(out, y)
        (g,) = torch.autograd.grad(value, leaf, create_graph=True)
        rows.append(torch.autograd.grad(g, leaf, grad_outputs=d)[0])
    return torch.stack(rows)


def setting(make, points=3, loss="cross_entropy", outputs=10):
    torch.manual_seed(0)
    model = with_random_statistics(make().double())
    flat = directions.Flat(model)
    gen = torch.Generator().manual_seed(2)
    weights = flat.vector + 0.1 * torch.randn(points, len(flat.vector), generator=gen,
                                               dtype=torch.float64)
    x = torch.randn(50, 40, generator=gen, dtype=torch.float64)
    y = torch.randint(0, outputs, (50,), generator=gen) if loss == "cross_entropy" \
        else torch.randn(50, outputs, generator=gen, dtype=torch.float64)
    v = torch.randn(points, len(flat.vector), generator=gen, dtype=torch.float64)
    return model, flat, weights, x, y, v


@pytest.mark.parametrize("name", MODELS)
def test_products_equal_autograd(name):
    model, flat, weights, x, y, v = setting(MODELS[name])
    before = {k: t.clone() for k, t in model.state_dict().items()}
    op = hvp.hessian_operator(model, flat.unflatten(weights), flat.buffers, x, y)
    assert op is not None
    expected = autograd_products(model, weights, flat.buffers, x, y, "cross_entropy", v)
    torch.testing.assert_close(op(v), expected, rtol=1e-9, atol=1e-11)
    # A second product from the same operator (in-place work must not leak between calls).
    torch.testing.assert_close(op(2 * v), 2 * expected, rtol=1e-9, atol=1e-11)
    for k, t in model.state_dict().items():
        assert torch.equal(t, before[k]), k


def test_products_of_a_regression_loss():
    make = lambda: models.ResidualMLP(40, 3, width=16, depth=2, activation="tanh", norm="batch")  # noqa: E731
    model, flat, weights, x, y, v = setting(make, points=2, loss="mse", outputs=3)
    op = hvp.hessian_operator(model, flat.unflatten(weights), flat.buffers, x, y)
    torch.testing.assert_close(op(v), autograd_products(model, weights, flat.buffers, x, y, "mse", v),
                               rtol=1e-9, atol=1e-11)


def test_the_operator_is_symmetric():
    """H is symmetric, so u . H v = v . H u: a check that needs no reference implementation."""
    model, flat, weights, x, y, v = setting(MODELS["v1 batch norm"], points=1)
    op = hvp.hessian_operator(model, flat.unflatten(weights), flat.buffers, x, y)
    u = torch.randn_like(v)
    assert (u * op(v)).sum().item() == pytest.approx((v * op(u)).sum().item(), rel=1e-10)


def test_unsupported_models_are_declined():
    x, y = torch.randn(8, 40), torch.randint(0, 10, (8,))
    for model in (models.SkipConvNet(channels=8, depth=2).eval(),
                  nn.Sequential(nn.Linear(40, 12), nn.LayerNorm(12), nn.Linear(12, 10)),
                  models.ResidualMLP(40, 10, width=16, depth=2, norm="batch").train()):
        flat = directions.Flat(model)
        assert hvp.hessian_operator(model, flat.unflatten(flat.vector.unsqueeze(0)), flat.buffers,
                                    x, y) is None


def test_bad_input():
    model = models.PlainMLP(40, 10, width=8, depth=2).eval()
    flat = directions.Flat(model)
    params = flat.unflatten(flat.vector.unsqueeze(0))
    x, y = torch.randn(8, 40), torch.randint(0, 10, (8,))
    with pytest.raises(ValueError, match="every parameter"):
        hvp.hessian_operator(model, dict(list(params.items())[1:]), flat.buffers, x, y)
    with pytest.raises(ValueError, match="named_parameters"):  # in another order
        hvp.hessian_operator(model, dict(reversed(params.items())), flat.buffers, x, y)


def test_values_at_one_point_are_the_models_own():
    """In float32 a ReLU input within rounding of zero must fall on the same side as in the model
    (folding a batch norm into the product moved two of notebook 04's inputs across zero)."""
    torch.manual_seed(0)
    model = with_random_statistics(models.ResidualMLP(40, 10, width=16, depth=3, block="v1",
                                                      norm="batch"))
    flat = directions.Flat(model)
    x, y = torch.randn(64, 40), torch.randint(0, 10, (64,))
    op = hvp.hessian_operator(model, flat.unflatten(flat.vector.unsqueeze(0)), flat.buffers, x, y)
    with torch.no_grad():
        assert torch.equal(op.value[op.output][0], model(x))
