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


# Seeds 0-4 of this setting (seed 0 is the test's and notebook 02's): V2 grows 493, 326, 427,
# 628, 449x (notebook 02: about 500x); with the 1/sqrt(50) branch scale 1.055, 1.050, 1.054, 1.033,
# 1.039x (notebook 02: x1.05).
def test_v2_default_init_grows_and_branch_scaling_tames_it(batch):
    assert 300 < variance_growth(batch, block="v2") < 700
    assert 1 < variance_growth(batch, block="v2", branch_scale=1 / math.sqrt(50)) < 1.1


# Seeds 0-4: pre-activation with He init grows 1.4e14, 4.2e13, 1.1e15, 4.5e13, 2.3e14x; with
# batch norm 15.7, 17.6, 18.4, 18.9, 16.2x (notebook 02: "about 16x"); with batch norm and the
# 1/sqrt(50) scale 1.46, 1.53, 1.51, 1.57, 1.43x (notebook 02: "within a factor of 2").
def test_batch_norm_preact_with_he_init_grows_but_not_explosively(batch):
    exploding = variance_growth(batch, block="preact", init="he")
    with_bn = variance_growth(batch, block="preact", init="he", norm="batch")
    assert exploding > 1e13
    assert 12 < with_bn < 25
    assert 1 < variance_growth(batch, block="preact", init="he", norm="batch", branch_scale=1 / math.sqrt(50)) < 2


def test_probe_with_batch_stats_leaves_running_averages_untouched(batch):
    net = models.ResidualMLP(40, 10, width=16, depth=3, norm="batch")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    probes.probe(net, *batch, batch_stats=True)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
