"""skipviz.landscape.fast.points: one forward pass at many weight vectors must equal separate forward passes."""

import pytest
import torch
from torch import nn
from torch.func import functional_call

from skipviz import landscape, models
from skipviz.landscape import directions
from skipviz.landscape.fast import points as batched


def with_random_statistics(model: nn.Module) -> nn.Module:
    """Eval mode, with batch-norm statistics and affine parameters far from their defaults."""
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d) and m.running_mean is not None:
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.3)
        if isinstance(m, nn.BatchNorm1d) and m.affine:
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
    return model.eval()


def points_of(model: nn.Module, count: int = 3) -> tuple[dict, dict]:
    flat = directions.Flat(model)
    gen = torch.Generator().manual_seed(2)
    weights = flat.vector + 0.1 * torch.randn(count, len(flat.vector), generator=gen)
    return flat.unflatten(weights), flat.buffers


def separately(model: nn.Module, params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
    """One plain forward pass per point."""
    count = len(next(iter(params.values())))
    return torch.stack([functional_call(model, ({k: v[i] for k, v in params.items()}, buffers), (x,))
                        for i in range(count)])


def half_skips(model):
    model.skips = [i % 2 == 0 for i in range(model.num_skips)]
    return model


MODELS = {
    "v1 batch norm": lambda: models.ResidualMLP(40, 10, width=16, depth=3, block="v1", norm="batch"),
    "v1 no norm": lambda: models.ResidualMLP(40, 10, width=16, depth=3, block="v1"),
    "v2 span 1": lambda: models.ResidualMLP(40, 10, width=16, depth=3, span=1, norm="batch"),
    "preact, scaled": lambda: models.ResidualMLP(40, 10, width=16, depth=3, block="preact",
                                                 norm="batch", branch_scale=0.5),
    "v1, half the skips off": lambda: half_skips(models.ResidualMLP(40, 10, width=16, depth=4,
                                                                    block="v1", norm="batch")),
    "plain": lambda: models.PlainMLP(40, 10, width=16, depth=4),
    "telescope": lambda: models.TelescopeMLP(40, 10, width=16, depth=5),
    "conv, doubling": lambda: models.SkipConvNet(channels=8, depth=4),
    "conv, projection": lambda: models.SkipConvNet(channels=8, depth=4, shortcut="projection"),
    # Layers narrower than 16 outputs take the transposed product, inside and at the output.
    "narrow layers": lambda: nn.Sequential(nn.Linear(40, 8), nn.ReLU(), nn.Linear(8, 12),
                                           nn.BatchNorm1d(12), nn.Tanh(), nn.Linear(12, 10)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_matches_separate_forward_passes(name):
    model = with_random_statistics(MODELS[name]())
    params, buffers = points_of(model)
    x = torch.randn(20, 40, generator=torch.Generator().manual_seed(3))
    evaluator = batched.PointEvaluator(model, x)
    with torch.no_grad():
        out = evaluator(params, buffers, x)
        expected = separately(model, params, buffers, x)
    assert out.shape == (3, 20, 10)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


class InputTwice(nn.Module):
    """One Linear applied to the input and, again, to a hidden value; an input layer without a
    bias feeding an affine-free batch norm; and an input read by an addition as well."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(6, 6)
        self.b, self.norm = nn.Linear(6, 6, bias=False), nn.BatchNorm1d(6, affine=False)
        self.c = nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.a(x)) + self.norm(self.b(x)) + x
        return self.c(torch.tanh(self.a(h)))


def test_a_linear_used_on_the_input_and_again_later():
    model = with_random_statistics(InputTwice())
    params, buffers = points_of(model)
    x = torch.randn(12, 6, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(batched.PointEvaluator(model, x)(params, buffers, x),
                                   separately(model, params, buffers, x), rtol=1e-5, atol=1e-6)


def test_folds_and_accumulates_where_it_should():
    ev = batched.PointEvaluator(with_random_statistics(MODELS["v1 batch norm"]()))
    folds = [st for st in ev.ops if st.norm]
    assert len(folds) == 6  # both Linears of each of 3 blocks feed a batch norm
    assert len(ev.into) == 3  # each block's second product adds onto its input
    plain = batched.PointEvaluator(MODELS["v1 no norm"]().eval())
    assert not any(st.norm for st in plain.ops) and len(plain.into) == 3  # through the nn.Identity "norms"
    v2 = batched.PointEvaluator(MODELS["v2 span 1"]().eval())
    assert not v2.into  # the act after the product comes before the addition


class ReadsTwice(nn.Module):
    """A Linear's output read by two operations, and a residual input read after the addition:
    overwriting either in place would change the result."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 6), nn.Linear(6, 6)

    def forward(self, x):
        h = self.a(x)
        r = torch.relu(h) + h
        s = self.b(r) + r
        return s * r


class OutputReadTwice(nn.Module):
    """The output layer (narrow: 4 outputs) is also read by another operation."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(6, 8), nn.Linear(8, 4)

    def forward(self, x):
        y = self.b(torch.relu(self.a(x)))
        self.last_scaled = y * 2  # a second reader of the output layer's result
        return y


class DataDependent(nn.Module):
    """Control flow fx cannot trace: refused, with the tracer's reason."""

    def __init__(self):
        super().__init__()
        self.a, self.norm, self.b = nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.norm(self.a(x))
        if float(h.abs().sum()) > 0:
            h = torch.relu(h)
        return self.b(h)


def test_a_model_fx_cannot_trace_is_refused_with_the_reason():
    model = with_random_statistics(DataDependent())
    with pytest.raises(ValueError, match="torch.fx cannot trace"):
        batched.PointEvaluator(model)
    assert batched.evaluator_for(model, torch.randn(4, 6)) is None


@pytest.mark.parametrize("model_type", [ReadsTwice, OutputReadTwice])
def test_in_place_safety(model_type):
    torch.manual_seed(0)
    model = with_random_statistics(model_type())
    params, buffers = points_of(model, count=4)
    x = torch.randn(9, 6)
    evaluator = batched.PointEvaluator(model, x)
    with torch.no_grad():
        torch.testing.assert_close(evaluator(params, buffers, x), separately(model, params, buffers, x),
                                   rtol=1e-5, atol=1e-6)


def test_gradients_match_per_point_gradients():
    model = with_random_statistics(MODELS["v1 batch norm"]())
    flat = directions.Flat(model)
    weights = (flat.vector + 0.05 * torch.randn(2, len(flat.vector))).requires_grad_(True)
    x = torch.randn(15, 40)
    out = batched.evaluator_for(model, x)(flat.unflatten(weights), flat.buffers, x)
    (grads,) = torch.autograd.grad(out.pow(2).sum(), weights)
    for row, grad in zip(weights.detach(), grads):
        w = row.clone().requires_grad_(True)
        single = functional_call(model, (flat.unflatten(w), flat.buffers), (x,))
        (expected,) = torch.autograd.grad(single.pow(2).sum(), w)
        # float32 sums in another order: agree to 1e-5 of the largest gradient entry
        torch.testing.assert_close(grad, expected, rtol=1e-4, atol=1e-5 * expected.abs().max().item())


def test_evaluator_follows_changes_to_the_model():
    model = with_random_statistics(MODELS["v1 batch norm"]())
    params, buffers = points_of(model)
    x = torch.randn(10, 40)
    first = batched.evaluator_for(model, x)
    assert batched.evaluator_for(model, x) is first
    model.skips = [False] * model.num_skips
    second = batched.evaluator_for(model, x)
    assert second is not first
    with torch.no_grad():
        torch.testing.assert_close(second(params, buffers, x), separately(model, params, buffers, x),
                                   rtol=1e-5, atol=1e-5)


def test_unsupported_layers_and_training_mode_are_refused(spirals_small):
    model = nn.Sequential(nn.Linear(2, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 3))
    assert "LayerNorm has parameters" in batched.refusal(model)
    assert batched.evaluator_for(model, spirals_small.x_train) is None
    with pytest.raises(ValueError, match="Linear, Conv1d, BatchNorm1d"):
        batched.PointEvaluator(model)
    dx, dy = landscape.random_direction(model, seed=1), landscape.random_direction(model, seed=2)
    with pytest.raises(ValueError, match="LayerNorm has parameters.*method='auto', 'vmap' or 'loop'"):
        landscape.surface_2d(model, spirals_small, dx, dy, points=3, method="batched")
    auto = landscape.surface_2d(model, spirals_small, dx, dy, points=3)
    assert auto.method in ("vmap", "loop")

    bn = models.ResidualMLP(40, 10, width=8, depth=1, norm="batch").train()
    params, buffers = points_of(bn)
    with pytest.raises(ValueError, match="the batch's own statistics"):
        batched.PointEvaluator(bn)


@pytest.fixture
def spirals_small():
    from skipviz import data
    return data.spirals(num_classes=3, n_train=40, n_test=10, seed=0)
