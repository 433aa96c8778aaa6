"""Models a student may write that a fast path could get wrong (or crash on). Their Hessian extremes and curvature maps must give the dense Hessian's extremes; their
surfaces are checked by every method in test_differential."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from skipviz import data, landscape, models, training


@pytest.fixture(scope="module")
def spirals():
    return data.spirals(num_classes=3, n_train=64, n_test=32, seed=0)


class SharedLinear(nn.Module):
    """One Linear used twice, with a batch norm after its first use."""

    def __init__(self):
        super().__init__()
        self.inp, self.lin, self.bn, self.out = nn.Linear(2, 6), nn.Linear(6, 6), nn.BatchNorm1d(6), nn.Linear(6, 3)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = torch.relu(self.bn(self.lin(h)))
        return self.out(torch.relu(self.lin(h)))


class InplaceResidual(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.lin, self.out = nn.Linear(2, 6), nn.Linear(6, 6), nn.Linear(6, 3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.act(self.inp(x))
        h = h + self.lin(h)
        return self.out(self.act(h))


class BatchMixing(nn.Module):
    """Normalizes over the batch dimension inside forward."""

    def __init__(self):
        super().__init__()
        self.inp, self.out = nn.Linear(2, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.inp(x)
        h = (h - h.mean(0)) / (h.std(0) + 1e-3)
        return self.out(torch.tanh(h))


class ReadsWeightNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.out = nn.Linear(2, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.out(torch.tanh(self.a(x)) / self.a.weight.norm())


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.a, self.b, self.out = nn.Linear(2, 6), nn.Linear(6, 6), nn.Linear(6, 6), nn.Linear(6, 3)
        self.b.weight = self.a.weight

    def forward(self, x):
        return self.out(torch.tanh(self.b(torch.tanh(self.a(torch.tanh(self.inp(x)))))))


class BatchStatsNorm(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.bn, self.out = nn.Linear(2, 6), nn.BatchNorm1d(6, track_running_stats=False), nn.Linear(6, 3)

    def forward(self, x):
        return self.out(torch.relu(self.bn(self.inp(x))))


class LearnedScalar(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.out = nn.Linear(2, 6), nn.Linear(6, 3)
        self.scale = nn.Parameter(torch.tensor(0.7))

    def forward(self, x):
        return self.out(torch.tanh(self.scale * self.inp(x)))


CUSTOM = [SharedLinear, InplaceResidual, BatchMixing, ReadsWeightNorm, Tied, BatchStatsNorm, LearnedScalar]
BUILT_IN = [
    lambda: models.ResidualMLP(2, 3, width=6, depth=3, block="v1", span=1),
    lambda: models.ResidualMLP(2, 3, width=6, depth=2, block="v2", norm="batch"),
    lambda: models.ResidualMLP(2, 3, width=6, depth=2, block="preact", branch_scale=0.5),
    lambda: models.PlainMLP(2, 3, width=6, depth=3, activation="tanh"),
]


def trained(make, spirals):
    torch.manual_seed(0)
    net = make()
    training.fit(net, spirals, 30, lr=1e-2, cache=False, progress=False)
    return net


def directions(net):
    # ignore="none": every parameter moves, the batch norms' and the scalar's included.
    return [landscape.random_direction(net, ignore="none", seed=s) for s in (1, 2)]


def dense_hessian_extremes(net, dataset):
    params = dict(net.named_parameters())
    names, shapes = list(params), [p.shape for p in params.values()]
    sizes = [p.numel() for p in params.values()]
    flat = torch.cat([p.detach().reshape(-1) for p in params.values()]).double()
    x, y = dataset.x_train, dataset.y_train
    buffers = dict(net.named_buffers())

    def loss(w):
        pieces = dict(zip(names, (t.reshape(s) for t, s in zip(w.float().split(sizes), shapes))))
        return nn.functional.cross_entropy(functional_call(net, (pieces, buffers), (x,)), y).double()

    with training.eval_mode(net):
        h = torch.autograd.functional.hessian(loss, flat)
    values = torch.linalg.eigvalsh((h + h.T) / 2)
    return values[-1].item(), values[0].item()


@pytest.mark.parametrize("make", CUSTOM + BUILT_IN[:2], ids=[c.__name__ for c in CUSTOM] + ["built_in0", "built_in1"])
def test_hessian_extremes_and_curvature_map_give_the_dense_hessians_extremes(make, spirals):
    net = trained(make, spirals)
    lmax, lmin = dense_hessian_extremes(net, spirals)
    n = sum(p.numel() for p in net.parameters())
    got = landscape.hessian_extremes(net, spirals, iterations=n)
    scale = max(abs(lmax), abs(lmin))
    assert abs(got.lambda_max - lmax) <= 1e-3 * scale and abs(got.lambda_min - lmin) <= 1e-3 * scale
    dx, dy = directions(net)
    cmap = landscape.curvature_map(net, spirals, dx, dy, points=3, span=0.5, lanczos_iterations=n, chunk_size=9)
    assert abs(cmap.lambda_max[1, 1].item() - lmax) <= 1e-3 * scale
    assert abs(cmap.lambda_min[1, 1].item() - lmin) <= 1e-3 * scale
    assert cmap.iterations_done.shape == (3, 3) and int(cmap.iterations_done.max()) <= n
