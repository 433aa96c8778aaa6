"""The differential test of the loss-landscape engine: many small random models from every skipviz
family, and the custom modules of test_landscape_models, each evaluated by every method. Where
`graph.prove` admits a fast path, it must give the reference's numbers (the one-point loop for
losses, autograd through `functional_call` for Hessian-vector products); where it refuses, the
reference is what `auto` uses. Never a silently different number."""

from __future__ import annotations

import random

import pytest
import torch
import torch.nn.functional as F
from test_batched import with_random_statistics
from test_landscape_models import CUSTOM
from torch import nn

from skipviz import data, landscape, models
from skipviz.landscape import directions, products, surfaces

IN, CLASSES, LENGTH = 6, 3, 16


class CentredOverBatch(nn.Module):
    """Subtracts the batch mean: only operations on the allowed list, but over dimension 0."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.a(x)
        return self.b(torch.tanh(h - h.mean(0)))


class RowWiseByShape(nn.Module):
    """A negative dimension, `...` indexing and an in-place ReLU on a fresh value: each is row-wise
    only given the ranks, which the trial batches resolve; proven, so batched must be exact."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 8), nn.Linear(4, 3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x):
        h = self.act(self.a(x) + 1.0)
        h = h - h.mean(-1, keepdim=True)
        return self.b(h[..., ::2])


class OverwritesWhatItReadsLater(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(2, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.a(x)
        g = F.relu(h, inplace=True)
        return self.b(g + h)


EXTRA = [CentredOverBatch, RowWiseByShape, OverwritesWhatItReadsLater]


def residual(r: random.Random):
    net = models.ResidualMLP(IN, CLASSES, width=r.choice([5, 8]), depth=r.randint(1, 3),
                             block=r.choice(models.BLOCKS), span=r.choice([1, 2]),
                             activation=r.choice(models.ACTIVATIONS), norm=r.choice(models.NORMS),
                             branch_scale=r.choice([1.0, 0.5]), seed=r.randint(0, 99))
    net.skips = [r.random() < 0.7 for _ in range(net.num_skips)]
    return net


FAMILIES = {
    "residual": residual,
    "plain": lambda r: models.PlainMLP(IN, CLASSES, width=5, depth=r.randint(1, 3),
                                       activation=r.choice(models.ACTIVATIONS), seed=r.randint(0, 99)),
    "telescope": lambda r: models.TelescopeMLP(IN, CLASSES, width=5, depth=r.randint(2, 4), seed=r.randint(0, 99)),
    "highway": lambda r: models.HighwayMLP(IN, CLASSES, width=5, depth=r.randint(1, 3),
                                           activation=r.choice(models.ACTIVATIONS), seed=r.randint(0, 99)),
    "conv": lambda r: models.SkipConvNet(LENGTH, CLASSES, channels=4, depth=r.choice([2, 4]),
                                         shortcut=r.choice(models.SHORTCUTS), seed=r.randint(0, 99)),
    "resnet1d": lambda r: models.ResNet1d(LENGTH, CLASSES, channels=4, blocks=1, sections=2, seed=r.randint(0, 99)),
    "densenet1d": lambda r: models.DenseNet1d(LENGTH, CLASSES, stem=4, growth=2, layers=2, blocks=1,
                                              seed=r.randint(0, 99)),
    "unet": lambda r: models.UNet1d(LENGTH, channels=4, levels=2, seed=r.randint(0, 99)),
}
CONV = ("conv", "resnet1d", "densenet1d", "unet")
# The cases graph.prove must refuse for the point-batched path (every other one it must prove).
REFUSED = {"unet", "BatchMixing", "ReadsWeightNorm", "Tied", "BatchStatsNorm", "LearnedScalar",
           "CentredOverBatch", "OverwritesWhatItReadsLater"}


def cases(count_per_family: int = 6) -> list[tuple[str, int]]:
    return [(family, i) for family in FAMILIES for i in range(count_per_family)] \
        + [(c.__name__, 0) for c in CUSTOM + EXTRA]


def build(family: str, index: int):
    """(model in eval mode with random batch-norm statistics, data set) for one case."""
    r = random.Random(f"{family}{index}")
    torch.manual_seed(index)
    if family in FAMILIES:
        net = FAMILIES[family](r)
        if hasattr(net, "skips") and family != "residual":
            net.skips = [r.random() < 0.7 for _ in range(net.num_skips)]
    else:
        net = next(c for c in CUSTOM + EXTRA if c.__name__ == family)()
    width = LENGTH if family in CONV else (2 if family not in FAMILIES else IN)
    gen = torch.Generator().manual_seed(index)
    x = torch.randn(24, width, generator=gen)
    if family == "unet":
        y = torch.randn(24, LENGTH, generator=gen)
        dataset = data.Dataset("random", x, y, x[:4], y[:4], task="regression")
    else:
        y = torch.randint(0, CLASSES, (24,), generator=gen)
        dataset = data.Dataset("random", x, y, x[:4], y[:4], task="classification", num_classes=CLASSES)
    return with_random_statistics(net), dataset


@pytest.mark.parametrize("family,index", cases(), ids=lambda v: str(v))
def test_every_method_gives_the_reference_or_is_refused(family, index):
    net, dataset = build(family, index)
    inputs = dataset.x_train.clone()
    refused = landscape.refusals(net, dataset.x_train)
    assert (refused["batched"] is None) == (family not in REFUSED), refused["batched"]
    flat = directions.Flat(net)
    gen = torch.Generator().manual_seed(index)
    points = torch.randn(5, 2, generator=gen, dtype=torch.float64) * 0.5
    # Both kinds of plane: "biasbn" directions keep batch-norm weights fixed (the folded plane
    # path), "none" moves every parameter.
    for ignore in ("biasbn", "none"):
        basis = torch.stack([flat.flatten(landscape.random_direction(net, ignore=ignore, seed=s)) for s in (1, 2)])
        reference, _, _ = surfaces.evaluate_points(net, dataset, points, basis, method="loop", chunk_size=5)
        exact = ["loop"]
        for method in ("vmap", "batched"):
            try:
                losses, _, used = surfaces.evaluate_points(net, dataset, points, basis, method=method, chunk_size=5)
            except ValueError as err:
                # The proven fast path is never refused by the trial check.
                assert method == "vmap" or refused["batched"] is not None, err
                continue
            assert used == method
            torch.testing.assert_close(losses, reference, rtol=1e-5, atol=1e-7)
            exact.append(method)
        # 'auto' takes the first exact method of batched, vmap, loop: by capability, not timing.
        auto = surfaces.evaluate_points(net, dataset, points, basis, chunk_size=5)
        assert auto[2] == exact[-1]
        torch.testing.assert_close(auto[0], reference, rtol=1e-5, atol=1e-7)
    assert torch.equal(dataset.x_train, inputs)  # no method writes into the data

    if family in CONV:  # Hessian-vector products of the conv nets: checked in test_landscape
        return
    weights = flat.vector + 0.1 * torch.randn(2, len(flat.vector), generator=gen)
    v = torch.randn(2, len(flat.vector), generator=gen)
    want = products._products(net, dataset, "train", None, weights, reference=True)(v)
    kinds = {"checked": products.hessian_products(net, dataset, "train", None, weights)}
    if refused["r-operator"] is None:
        fast = products._products(net, dataset, "train", None, weights)
        assert fast.kind == "r-operator"
        kinds["r-operator"] = fast
    if refused["batched"] is None:
        autograd = products._products(net, dataset, "train", None, weights, autograd=True)
        assert autograd.kind == "batched"
        kinds["batched autograd"] = autograd
    for kind, matvec in kinds.items():
        got = matvec(v)
        assert (got - want).norm() <= 1e-5 * want.norm(), kind
