"""The claims notebook 02 makes about residual block variants, on fixed seeds."""

import math

import pytest
import torch
from torch import nn

from skipviz import data, models, probes


def test_one_layer_v1_block_is_a_plain_layer_with_weight_identity_plus_w():
    torch.manual_seed(0)
    block = models.ResidualBlock(32, block="v1", span=1)
    plain = nn.Linear(32, 32)
    with torch.no_grad():
        plain.weight.copy_(torch.eye(32) + block.linears[0].weight)
        plain.bias.copy_(block.linears[0].bias)
    x = torch.randn(100, 32)
    assert (block(x) - torch.relu(plain(x))).abs().max() < 1e-6


@pytest.fixture(scope="module")
def batch():
    ds = data.mnist1d()
    return ds.x_train[:512], ds.y_train[:512]


def variance_growth(batch, **kwargs) -> float:
    """Var[x_50] / Var[x_1] over the blocks of a 50-block, width-128 ResidualMLP at initialization."""
    net = models.ResidualMLP(40, 10, width=128, depth=50, seed=0, **kwargs)
    var = probes.probe(net, *batch, batch_stats=True).activation_std ** 2
    return (var[-1] / var[0]).item()


def test_v2_default_init_grows_and_branch_scaling_tames_it(batch):
    assert variance_growth(batch, block="v2") >= 10
    assert variance_growth(batch, block="v2", branch_scale=1 / math.sqrt(50)) <= 3


def test_batch_norm_preact_with_he_init_grows_but_not_explosively(batch):
    exploding = variance_growth(batch, block="preact", init="he")
    with_bn = variance_growth(batch, block="preact", init="he", norm="batch")
    assert exploding > 1e10
    assert 10 < with_bn < 1000
    assert variance_growth(batch, block="preact", init="he", norm="batch", branch_scale=1 / math.sqrt(50)) < with_bn / 10


def test_probe_with_batch_stats_leaves_running_averages_untouched(batch):
    net = models.ResidualMLP(40, 10, width=16, depth=3, norm="batch")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    probes.probe(net, *batch, batch_stats=True)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
