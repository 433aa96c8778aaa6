"""skipviz.perturbation (notebook 06): Hauser's measures on models whose blocks are known exactly,
the stopping rule on the paper's numbers, and the depth sweep giving the same numbers serially,
in local worker processes and on a Dask cluster."""

from __future__ import annotations

import hashlib

import pytest
import torch
from torch import nn

from skipviz import data, models, perturbation, training


class Scaled(nn.Module):
    """A residual block whose branch is exactly `factor * x`."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = factor

    def forward(self, x, skip=True):
        return self.factor * x + (x if skip else 0)


class KnownBlocks(models.SkipNet):
    """Blocks with known branches: factors per block, and a shape change between two sections."""

    def __init__(self, factors: list[float], split: int):
        super().__init__()
        self.blocks = nn.ModuleList(Scaled(f) for f in factors)
        self.split = split
        self._init_skips(len(factors))

    def forward(self, x):
        for i, (block, skip) in enumerate(zip(self.blocks, self._skips)):
            if i == self.split:
                x = torch.cat([x, x], dim=1)  # a transition between sections, not a block
            x = block(x, skip)
        return x


def test_a_branch_of_a_tenth_of_x_is_a_perturbation_of_a_tenth_everywhere():
    net = KnownBlocks([0.1] * 5, split=5)
    x = torch.randn(7, 3, 4) * torch.arange(1.0, 8.0).view(7, 1, 1)
    p = perturbation.block_perturbations(net, x)
    assert p.section == [0] * 5 and p.blocks == list(range(5))
    assert torch.allclose(p.scaled, torch.full((5, 7), 0.1))
    assert p.scaled_distance(0) == pytest.approx(0.5, rel=1e-6)       # d_scaled = 0.1 L
    assert p.mean_scaled(0) == pytest.approx(0.1, rel=1e-6)
    # The absolute step of block l is 0.1 |x_l| = 0.1 * 1.1^l |x_0|, per example.
    size = x.flatten(1).norm(dim=1)
    expected = torch.stack([0.1 * 1.1 ** block * size for block in range(5)])
    assert torch.allclose(p.absolute, expected, rtol=1e-5)
    assert p.distance(0) == pytest.approx(expected.mean(1).sum().item(), rel=1e-5)


def test_sections_follow_the_shape_and_each_has_its_own_sums():
    net = KnownBlocks([0.1, 0.1, 0.3, 0.3, 0.3], split=2)
    p = perturbation.block_perturbations(net, torch.randn(4, 6))
    assert p.section == [0, 0, 1, 1, 1] and p.num_sections == 2
    assert p.scaled_distance(0) == pytest.approx(0.2, rel=1e-6)
    assert p.scaled_distance(1) == pytest.approx(0.9, rel=1e-6)
    assert torch.equal(p.positions(1), torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="section must be an integer in 0..1"):
        p.profile(2)


def test_per_example_not_one_ratio_of_the_batch():
    """Two examples of very different size, each moved by a tenth: the mean ratio is 0.1, while one
    ratio of the batch's norms would be dominated by the large example."""
    net = KnownBlocks([0.1], split=1)
    x = torch.tensor([[1.0, 0.0], [0.0, 100.0]])
    p = perturbation.block_perturbations(net, x)
    assert p.mean_scaled(0) == pytest.approx(0.1, rel=1e-6)


def test_every_residual_family_of_the_collection_is_measured():
    x = torch.randn(16, 40)
    resnet = perturbation.block_perturbations(models.ResNet1d(blocks=3), x)
    assert resnet.section == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    conv = perturbation.block_perturbations(models.SkipConvNet(depth=6), x)
    assert conv.blocks == [0, 1, 2, 4, 5] and conv.section == [0, 0, 0, 1, 1]  # block 3 halves the length
    mlp = perturbation.block_perturbations(models.ResidualMLP(40, 10, depth=4), x)
    assert mlp.section == [0, 0, 0, 0] and (mlp.scaled > 0).all()


def test_skips_switched_off_are_measured_as_they_are():
    net = KnownBlocks([0.1, 0.1], split=2)
    net.skips[1] = False  # block 1 outputs 0.1 x: it moves x by 0.9 |x|
    p = perturbation.block_perturbations(net, torch.randn(3, 5))
    assert torch.allclose(p.scaled[1], torch.full((3,), 0.9))


def test_refusals():
    with pytest.raises(ValueError, match="no residual blocks"):
        perturbation.block_perturbations(models.PlainMLP(40, 10, depth=3), torch.randn(2, 40))
    with pytest.raises(ValueError, match="no residual blocks"):
        perturbation.block_perturbations(models.TelescopeMLP(40, 10, depth=3), torch.randn(2, 40))
    with pytest.raises(ValueError, match=r"x must have shape \(batch, 40\)"):
        perturbation.block_perturbations(models.ResNet1d(), torch.randn(2, 30))
    with pytest.raises(ValueError, match="at least one example"):
        perturbation.block_perturbations(models.ResNet1d(), torch.randn(0, 40))
    with pytest.raises(ValueError, match="all-zero hidden state"):
        perturbation.block_perturbations(KnownBlocks([0.1], split=1), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="blocks must be an integer"):
        models.ResNet1d(blocks=0)


def test_the_stopping_rule_on_the_papers_numbers():
    assert [perturbation.stopping_rule(d) for d in (4.11, 3.12, 4.58)] == [42, 32, 46]
    assert [perturbation.stopping_rule(d) for d in (3.69, 3.81, 4.27)] == [37, 39, 43]
    # Whole quotients stay whole (1.1 / 0.1 is 11.000000000000002 in floats).
    assert perturbation.stopping_rule(1.1, 0.1) == 11 and perturbation.stopping_rule(2.35, 0.05) == 47
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        perturbation.stopping_rule(3.0, 0)
    with pytest.raises(ValueError, match="scaled_distance"):
        perturbation.stopping_rule(-1.0)


# ------------------------------------------------------------------------------- the sweep

def _weights_digest(net: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def train_tiny(L: int) -> tuple[str, float]:
    """A few real training steps, uncached, so every backend really trains."""
    ds = data.mnist1d()
    net = models.ResNet1d(blocks=L, channels=4, seed=L)
    history = training.fit(net, ds, 6, batch_size=32, seed=0, cache=False, progress=False)
    return _weights_digest(net), history.final_train_loss


@pytest.mark.slow  # starts process pools and a Dask cluster: make test-all
def test_sweep_gives_identical_results_serially_in_processes_and_on_a_dask_cluster():
    depths = [1, 2, 3]
    serial = perturbation.sweep(depths, train_tiny, backend="serial")
    local = perturbation.sweep(depths, train_tiny, backend="loky", n_jobs=2)
    assert local == serial
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        on_dask = perturbation.sweep(depths, train_tiny, backend="dask")
    assert on_dask == serial
    assert len({digest for digest, _ in serial}) == 3


def fails_at_two(L: int) -> int:
    if L == 2:
        raise RuntimeError("out of memory")
    return L


def test_sweep_names_the_depth_that_failed():
    for backend in ("serial", "loky"):
        with pytest.raises(perturbation.SweepError, match=r"train_one\(2\) raised RuntimeError: out of memory") as err:
            perturbation.sweep([1, 2, 3], fails_at_two, backend=backend, n_jobs=2)
        # Every depth not finished is named: the failing one, and those that never ran (serially:
        # 3) or whose worker had not reported yet (in parallel: possibly 1 and 3).
        assert 2 in err.value.depths and set(err.value.depths) <= {1, 2, 3}
        if backend == "serial":
            assert err.value.depths == [2, 3]


def dies_at_two(L: int) -> int:
    if L == 2:
        import os
        os._exit(1)  # the worker process dies, as when it is killed
    return L


@pytest.mark.slow
def test_a_worker_that_dies_is_reported_with_the_unfinished_depths():
    with pytest.raises(perturbation.SweepError, match="unfinished") as err:
        perturbation.sweep([1, 2], dies_at_two, backend="loky", n_jobs=2)
    assert 2 in err.value.depths


def test_sweep_refuses_bad_input():
    with pytest.raises(ValueError, match="non-empty list"):
        perturbation.sweep([], train_tiny)
    with pytest.raises(ValueError, match=r"depths\[1\] must be an integer"):
        perturbation.sweep([1, 0], train_tiny)
    with pytest.raises(ValueError, match="backend must be one of"):
        perturbation.sweep([1], train_tiny, backend="ray")
    with pytest.raises(TypeError, match="train_one must be a function"):
        perturbation.sweep([1], 3)
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match="connect one first"):
        perturbation.sweep([1, 2], train_tiny, backend="dask")
