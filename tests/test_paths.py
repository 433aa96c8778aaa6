import itertools
import math

import pytest
import torch
from torch.autograd.functional import jacobian

from skipviz import data, models, paths, training


def autograd_input_gradient(model, x, y):
    x = x.clone().requires_grad_(True)
    out = model(x)
    loss = (torch.nn.functional.mse_loss(out, y) if y.is_floating_point()
            else torch.nn.functional.cross_entropy(out, y))
    (grad,) = torch.autograd.grad(loss, x)
    return grad


@pytest.mark.parametrize("block", models.BLOCKS)
@pytest.mark.parametrize("dtype, tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_parts_sum_to_autograd_gradient(block, dtype, tol):
    net = models.ResidualMLP(5, 3, width=16, depth=8, block=block, seed=1).to(dtype)
    x = torch.randn(6, 5, dtype=dtype, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    parts = paths.gradient_by_path_length(net, x, y)
    assert parts.shape == (9, 6, 5)
    assert (parts.sum(0) - autograd_input_gradient(net, x, y)).abs().max() < tol


def test_regression_targets_use_mse():
    net = models.ResidualMLP(1, 1, width=8, depth=4).double()
    ds = data.sine(n_train=16)
    x, y = ds.x_train.double(), ds.y_train.double()
    parts = paths.gradient_by_path_length(net, x, y)
    assert (parts.sum(0) - autograd_input_gradient(net, x, y)).abs().max() < 1e-10


def test_conv_net_including_its_shape_changing_block():
    net = models.SkipConvNet(in_len=12, num_classes=3, channels=4, depth=4, seed=0).double().eval()
    x = torch.randn(3, 12, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    parts = paths.gradient_by_path_length(net, x, y)
    assert parts.shape == (5, 3, 12)
    assert (parts.sum(0) - autograd_input_gradient(net, x, y)).abs().max() < 1e-10


def brute_force_parts(net, x, y):
    """Sum over all 2^n paths of g^T P_{n-1} ... P_0 E, each P the skip (S) or branch (B) Jacobian."""
    x = x.reshape(1, -1)
    h = net.embed(x)
    factors = []
    for block in net.blocks:
        z = h.detach()
        branch_jac = jacobian(lambda v, b=block: b.branch(v.view(1, -1)).view(-1), z.view(-1))
        if block.block == "v1":
            gate = torch.diag(((z + block.branch(z)) > 0).to(z.dtype).view(-1))
            factors.append((gate, gate @ branch_jac))
        else:
            factors.append((torch.eye(z.numel(), dtype=z.dtype), branch_jac))
        h = block(z, True)
    h_last = h.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(torch.nn.functional.cross_entropy(net.readout(h_last), y), h_last)
    embed_jac = jacobian(lambda v: net.embed(v.view(1, -1)).view(-1), x.view(-1))
    n = len(factors)
    parts = torch.zeros(n + 1, x.numel(), dtype=x.dtype)
    for choice in itertools.product([0, 1], repeat=n):  # 1 = through the branch
        row = g.view(1, -1)
        for (skip, branch), through_branch in zip(reversed(factors), reversed(choice)):
            row = row @ (branch if through_branch else skip)
        parts[sum(choice)] += (row @ embed_jac).view(-1)
    return parts


@pytest.mark.parametrize("block", models.BLOCKS)
def test_dynamic_program_equals_brute_force_over_all_paths(block):
    net = models.ResidualMLP(3, 3, width=6, depth=10, block=block, seed=2).double()
    x = torch.randn(1, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y = torch.tensor([1])
    exact = paths.gradient_by_path_length(net, x, y).view(11, 3)
    assert torch.allclose(exact, brute_force_parts(net, x, y), atol=1e-12, rtol=1e-9)


def test_sampled_single_path_matches_exact_split_for_length_zero_and_n():
    # Length 0 and length n are single paths, so their sampled norm equals the exact part's norm.
    net = models.ResidualMLP(5, 3, width=8, depth=5, seed=0).double()
    x = torch.randn(4, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    exact = paths.gradient_by_path_length(net, x, y)
    sampled = paths.sampled_path_gradients(net, x, y, samples=3, lengths=[0, 5])
    for k in (0, 5):
        assert abs(sampled[k] - exact[k].norm(dim=1).mean()) < 1e-10
    assert torch.isnan(sampled[2])


def test_path_counts_and_ranges():
    for n in (0, 1, 10, 54):
        assert paths.path_counts(n).sum().item() == 2.0**n
        assert abs(paths.path_length_distribution(n).sum().item() - 1) < 1e-12
    assert round(paths.fraction_in_range(54, 19, 35), 3) == 0.980
    assert paths.central_range(54, 0.95) == (20, 34)
    assert paths.path_counts(10)[3].item() == math.comb(10, 3)


@pytest.fixture(scope="module")
def trained():
    """The lesion-study nets of notebook 03 (same settings, so they share its cache)."""
    ds = data.spirals(num_classes=3, n_train=2000, n_test=1000, noise=0.2, seed=0)
    res = models.ResidualMLP(2, 3, width=64, depth=20, seed=0)
    plain = models.PlainMLP(2, 3, width=64, depth=20, init="he", seed=0)
    for net in (res, plain):
        training.fit(net, ds, steps=2000, lr=1e-3, batch_size=128, seed=0, progress=False)
    return ds, res, plain


# Measured with seeds 0 and 1 of this recipe: residual intact 0.985 / 0.993, mean over the 20
# single deletions 0.978 / 0.975 (a drop of 0.007 / 0.018); plain intact 0.996 / 0.985, mean
# over its 19 deletable layers 0.346 / 0.324 (chance: 1/3). Notebook 03: 0.99 -> 0.98 and 0.99 -> 0.36.
@pytest.mark.real_cache
def test_lesion_expectations(trained):
    ds, res, plain = trained
    intact = paths.lesion(res, ds, [])
    assert intact > 0.97
    res_single = [paths.lesion(res, ds, [i]) for i in range(20)]
    assert 0 <= intact - sum(res_single) / 20 < 0.03
    plain_single = [paths.lesion(plain, ds, [i]) for i in range(1, 20)]
    assert paths.lesion(plain, ds, []) > 0.97
    assert abs(sum(plain_single) / 19 - 1 / 3) < 0.03


@pytest.mark.real_cache
def test_lesion_and_reorder_leave_the_model_unchanged(trained):
    ds, res, _ = trained
    x = ds.x_test[:50]
    before = res(x).detach()
    paths.lesion(res, ds, [0, 5, 7])
    with paths.reordered(res, list(reversed(range(20)))):
        assert not torch.allclose(res(x), before)
    assert torch.equal(res(x).detach(), before)


def test_kendall_tau():
    assert paths.kendall_tau([0, 1, 2, 3]) == 1.0
    assert paths.kendall_tau([3, 2, 1, 0]) == -1.0
    assert paths.kendall_tau([1, 0, 2, 3]) == pytest.approx(1 - 2 / 6)


def test_gradient_by_path_length_for_54_blocks_sums_to_autograd():
    """The exact split at the depth of notebook 03 (2^54 paths): every part finite, the sum equal
    to autograd's input gradient. Its speed is measured by `make bench`."""
    net = models.ResidualMLP(40, 10, width=64, depth=54)
    x = torch.randn(128, 40, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (128,), generator=torch.Generator().manual_seed(1))
    parts = paths.gradient_by_path_length(net, x, y)
    assert parts.shape == (55, 128, 40) and torch.isfinite(parts).all()
    reference = autograd_input_gradient(net, x, y)
    assert (parts.sum(0) - reference).abs().max() < 1e-5 * reference.abs().max()


@pytest.mark.parametrize("call, match", [
    (lambda: paths.lesion(models.ResidualMLP(2, 3, depth=4), data.spirals(), [4]), r"0\.\.3"),
    (lambda: paths.lesion(models.PlainMLP(2, 3, depth=4), data.spirals(), [0]), r"1\.\.3"),
    (lambda: paths.gradient_by_path_length(models.PlainMLP(2, 3), torch.randn(2, 2), torch.tensor([0, 1])), "must be a skipviz ResidualMLP, SkipConvNet or ResNet1d"),
    (lambda: paths.gradient_by_path_length(models.ResidualMLP(2, 3), torch.randn(0, 2), torch.zeros(0, dtype=torch.long)), "at least one"),
    (lambda: paths.gradient_by_path_length(models.SkipConvNet(depth=4).train(), torch.randn(2, 40), torch.tensor([0, 1])), "eval mode"),
    (lambda: paths.reordered(models.SkipConvNet(depth=4).eval(), [0, 1, 2, 3]).__enter__(), "cannot be reordered"),
    (lambda: paths.reordered(models.ResidualMLP(2, 3, depth=3), [0, 0, 1]).__enter__(), "permutation"),
    (lambda: paths.fraction_in_range(10, 5, 11), "high must be an integer in 5..10"),
    (lambda: paths.sampled_path_gradients(models.ResidualMLP(2, 3, depth=3), torch.randn(2, 2), torch.tensor([0, 1]), lengths=[4]), r"0\.\.3"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_skips_off_is_refused():
    net = models.ResidualMLP(2, 3, depth=3)
    net.skips = [True, False, True]
    with pytest.raises(ValueError, match="switch every skip on"):
        paths.gradient_by_path_length(net, torch.randn(2, 2), torch.tensor([0, 1]))
