"""skipviz.landscape: directions, slices and Hessian extremes, checked against direct computation."""

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call

from skipviz import data, landscape, models, settings, training
from skipviz.landscape import directions


@pytest.fixture(scope="module")
def spirals():
    return data.spirals(num_classes=3, n_train=200, n_test=50, seed=0)


@pytest.fixture(scope="module")
def trained(spirals):
    """A small residual net with batch norm (so buffers and modes matter), briefly trained."""
    model = models.ResidualMLP(spirals.in_dim, spirals.out_dim, width=12, depth=2, norm="batch")
    training.fit(model, spirals, steps=150, lr=1e-2, cache=False, progress=False)
    return model


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_unchanged(model, before):
    after = model.state_dict()
    assert set(after) == set(before)
    for k in before:
        assert torch.equal(after[k], before[k]), k  # bit-identical


def filters(t):
    return t.reshape(len(t), -1)


def test_filter_normalized_direction_matches_filter_norms():
    for model in (models.ResidualMLP(40, 10, width=16, depth=3),
                  models.SkipConvNet(channels=4, depth=2)):
        direction = landscape.random_direction(model, seed=3)
        params = list(model.parameters())
        assert [d.shape for d in direction] == [p.shape for p in params]
        for d, p in zip(direction, params):
            if p.dim() > 1:
                torch.testing.assert_close(filters(d).norm(dim=1), filters(p.detach()).norm(dim=1),
                                           rtol=1e-6, atol=0)
            else:  # biases and batch-norm scales and shifts are left alone under "biasbn"
                assert torch.count_nonzero(d) == 0


def test_direction_is_gaussian_seeded_and_signed():
    model = models.PlainMLP(40, 10, width=64, depth=4)
    raw = torch.cat([d.reshape(-1) for d in landscape.random_direction(model, "none", "none", seed=1)])
    assert abs(raw.mean().item()) < 0.02 and abs(raw.std().item() - 1) < 0.02
    assert (raw < 0).float().mean().item() == pytest.approx(0.5, abs=0.02)  # not U[0, 1]
    kurtosis = ((raw - raw.mean()) ** 4).mean() / raw.var() ** 2
    assert abs(kurtosis.item() - 3) < 0.2  # Gaussian, not uniform (1.8)
    a = landscape.random_direction(model, seed=5)
    b = landscape.random_direction(model, seed=5)
    c = landscape.random_direction(model, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_ignore_none_keeps_bias_directions_with_the_bias_norm():
    model = models.ResidualMLP(2, 3, width=8, depth=2)
    for d, p in zip(landscape.random_direction(model, ignore="none", seed=0), model.parameters()):
        if p.dim() == 1:
            assert d.norm().item() == pytest.approx(p.norm().item(), rel=1e-6)
            assert not torch.equal(d.abs(), p.detach().abs())  # not |bias| (the loss-landscapes bug)
    for d, p in zip(landscape.random_direction(model, normalize="layer", seed=0), model.parameters()):
        if p.dim() > 1:
            assert d.norm().item() == pytest.approx(p.norm().item(), rel=1e-6)


def loss_at(model, dataset, direction_pairs, split="train"):
    """The loss of a copy of `model` moved by sum(coef * direction), evaluated the plain way."""
    other = copy.deepcopy(model)
    with torch.no_grad():
        for coef, direction in direction_pairs:
            for p, d in zip(other.parameters(), direction):
                p.add_(coef * d)
    return training.evaluate(other, dataset, split)


# How closely a plane's point must match the model's own forward pass. vmap and loop run the
# model's operations; 'batched' folds each batch norm into the Linear before it (the same function,
# float32 operations in another order, so the last digit or so differs).
MATCH = {"vmap": 1e-6, "loop": 1e-6, "batched": 1e-5}


@pytest.mark.parametrize("method", ["vmap", "loop", "batched", "auto"])
def test_surface_2d_is_centred_and_oriented(trained, spirals, method):
    dx = landscape.random_direction(trained, seed=1)
    dy = landscape.random_direction(trained, seed=2)
    trained.train()  # the landscape is taken in eval mode and the mode restored
    before = snapshot(trained)
    s = landscape.surface_2d(trained, spirals, dx, dy, points=7, span=0.6, method=method)
    assert trained.training
    assert_unchanged(trained, before)
    assert torch.equal(s.alphas, -s.alphas.flip(0)) and s.alphas[3] == 0 and s.alphas[-1] == 0.6
    assert s.losses.shape == s.accuracies.shape == (7, 7)
    loss, acc = training.evaluate(trained, spirals, "train")
    # auto chooses by capability: this batch-norm MLP is supported by the batched pass.
    assert s.method == ("batched" if method == "auto" else method)
    assert s.center_loss == pytest.approx(loss, rel=MATCH[s.method])
    assert s.accuracies[3, 3].item() == pytest.approx(acc)
    # An asymmetric point: losses[i, j] is at alphas[i] along dx and betas[j] along dy.
    i, j = 1, 5
    expected, expected_acc = loss_at(trained, spirals, [(s.alphas[i].item(), dx), (s.betas[j].item(), dy)])
    assert s.losses[i, j].item() == pytest.approx(expected, rel=1e-5)
    assert s.accuracies[i, j].item() == pytest.approx(expected_acc)
    assert s.losses[i, j] != s.losses[j, i]


def test_methods_agree_and_calls_repeat_exactly(trained, spirals):
    dx = landscape.random_direction(trained, seed=1)
    dy = landscape.random_direction(trained, seed=2)
    by_vmap = landscape.surface_2d(trained, spirals, dx, dy, points=5, method="vmap", chunk_size=4)
    by_loop = landscape.surface_2d(trained, spirals, dx, dy, points=5, method="loop")
    by_batch = landscape.surface_2d(trained, spirals, dx, dy, points=5, method="batched", chunk_size=3)
    torch.testing.assert_close(by_vmap.losses, by_loop.losses, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(by_batch.losses, by_loop.losses, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(by_batch.accuracies, by_loop.accuracies)
    again = landscape.surface_2d(trained, spirals, dx, dy, points=5, method="auto")
    assert torch.equal(again.losses, landscape.surface_2d(trained, spirals, dx, dy, points=5).losses)
    # Directions that move the batch norms' scales too: the folds are then done chunk by chunk.
    dx, dy = (landscape.random_direction(trained, ignore="none", seed=s) for s in (1, 2))
    by_loop = landscape.surface_2d(trained, spirals, dx, dy, points=5, method="loop")
    by_batch = landscape.surface_2d(trained, spirals, dx, dy, points=5, method="batched", chunk_size=3)
    torch.testing.assert_close(by_batch.losses, by_loop.losses, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(by_batch.accuracies, by_loop.accuracies)


def test_surface_1d_interpolates_from_initialization(spirals):
    model = models.ResidualMLP(spirals.in_dim, spirals.out_dim, width=12, depth=2)
    start = snapshot(model)
    initial_loss = training.evaluate(model, spirals, "train")[0]
    training.fit(model, spirals, steps=100, lr=1e-2, cache=False, progress=False)
    to_start = landscape.direction_to(model, start)
    line = landscape.surface_1d(model, spirals, to_start, alphas=[0.0, 0.5, 1.0])
    assert line.losses[0].item() == pytest.approx(training.evaluate(model, spirals, "train")[0], rel=1e-6)
    assert line.losses[2].item() == pytest.approx(initial_loss, rel=1e-5)
    slice_ = landscape.surface_1d(model, spirals, landscape.random_direction(model), points=9, span=2)
    assert len(slice_.alphas) == 9 and slice_.alphas[4] == 0 and slice_.alphas[0] == -2


def flat_loss(model, dataset):
    flat = directions.Flat(model)
    buffers = dict(model.named_buffers())

    def f(w):
        out = functional_call(model, (flat.unflatten(w), buffers), (dataset.x_train,))
        return training.loss_for_targets(out, dataset.y_train)
    return flat.vector, f


def dense_extremes(model, dataset):
    model.eval()
    w, f = flat_loss(model, dataset)
    h = torch.func.hessian(f)(w).double()
    values = torch.linalg.eigvalsh((h + h.T) / 2)
    return values[-1].item(), values[0].item()


def test_hessian_extremes_match_dense_eigendecomposition(trained, spirals):
    assert models.count_parameters(trained) < 2000
    lmax, lmin = dense_extremes(trained, spirals)
    assert lmin < 0 < lmax  # not a trivial case: the Hessian is indefinite here
    before = snapshot(trained)
    r = landscape.hessian_extremes(trained, spirals, iterations=60)
    assert_unchanged(trained, before)
    assert r.lambda_max == pytest.approx(lmax, rel=0.01)
    assert r.lambda_min == pytest.approx(lmin, rel=0.01)
    assert r.residual_max < 1e-3 * lmax and r.residual_min < 1e-3 * lmax
    assert r.ratio == pytest.approx(abs(lmin / lmax), rel=0.02)
    # Splitting the data into pieces must average, not sum, the pieces' Hessians.
    pieces = landscape.hessian_extremes(trained, spirals, iterations=60, batch_size=64)
    assert pieces.lambda_max == pytest.approx(r.lambda_max, rel=1e-4)
    assert pieces.lambda_min == pytest.approx(r.lambda_min, rel=1e-3)


def test_hessian_of_a_regression_loss():
    sine = data.sine(n_train=64, n_test=16)
    model = models.PlainMLP(1, 1, width=10, depth=2, activation="tanh")
    lmax, lmin = dense_extremes(model, sine)
    r = landscape.hessian_extremes(model, sine, iterations=80)
    assert r.lambda_max == pytest.approx(lmax, rel=0.01)
    assert r.lambda_min == pytest.approx(lmin, rel=0.01, abs=1e-3 * lmax)


def test_lanczos_on_a_known_matrix():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(50, 50, dtype=torch.float64))
    values = torch.linspace(-2, 7, 50, dtype=torch.float64)
    a = q @ torch.diag(values) @ q.T
    lmax, lmin, rmax, rmin, done = landscape.lanczos_extremes(lambda v: v @ a, 50, iterations=50, batch=2)
    torch.testing.assert_close(lmax, torch.full((2,), 7.0, dtype=torch.float64))
    torch.testing.assert_close(lmin, torch.full((2,), -2.0, dtype=torch.float64))
    assert (rmax < 1e-8).all() and (rmin < 1e-8).all()
    assert done.tolist() == [50, 50]


def test_batched_lanczos_lets_each_operator_stop_on_its_own():
    """A full-rank operator batched with a rank-1 one. The rank-1 row's Krylov space
    closes after one step; the other row must go on to its true extremes (14.32 and 0.5), and
    each row reports the iterations it really ran."""
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(30, 30, dtype=torch.float64))
    full = q @ torch.diag(torch.linspace(0.5, 14.32, 30, dtype=torch.float64)) @ q.T
    u = torch.randn(30, dtype=torch.float64)
    rank_one = 4.33 * torch.outer(u, u) / (u @ u)
    ops = torch.stack([full, rank_one])
    lmax, lmin, rmax, rmin, done = landscape.lanczos_extremes(
        lambda v: torch.einsum("bij,bj->bi", ops, v), 30, iterations=30, batch=2)
    assert lmax[0].item() == pytest.approx(14.32, rel=1e-8) and lmin[0].item() == pytest.approx(0.5, rel=1e-8)
    assert lmax[1].item() == pytest.approx(4.33, rel=1e-8)
    assert done[0].item() == 30 and done[1].item() <= 2
    assert (rmax < 1e-7).all()
    alone = landscape.lanczos_extremes(lambda v: v @ full, 30, iterations=30)
    assert lmax[0].item() == pytest.approx(alone[0].item(), rel=1e-10)


def test_lanczos_tolerance_stops_early_with_honest_residuals():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(400, 400, dtype=torch.float64))
    values = torch.cat([torch.tensor([-3.0, 40.0]), torch.linspace(-0.5, 5, 398)]).double()
    a = q @ torch.diag(values) @ q.T
    products = [0]

    def matvec(v):
        products[0] += 1
        return v @ a

    lmax, lmin, rmax, rmin, done = landscape.lanczos_extremes(matvec, 400, iterations=200, tol=1e-3)
    assert done.item() < 200 and products[0] == done.item()  # stopped early; no extra product
    # The bound that stopped it is the true residual of the returned Ritz pairs.
    for lam, res in ((lmax, rmax), (lmin, rmin)):
        vals, vecs = torch.linalg.eigh(a)  # the exact residual is at least the distance to the spectrum
        assert res.item() >= (vals - lam).abs().min().item() * 0.999
    assert rmax.item() <= 1e-3 * 40 * 1.01 and rmin.item() <= 1e-3 * 40 * 1.01
    assert lmax.item() == pytest.approx(40.0, abs=1e-3 * 40)
    assert lmin.item() == pytest.approx(-3.0, abs=0.05)
    full = landscape.lanczos_extremes(matvec, 400, iterations=200)
    assert full[4].item() == 200 and full[2].item() < rmax.item()


def test_curvature_map_matches_pointwise_hessians(trained, spirals):
    dx = landscape.random_direction(trained, seed=1)
    dy = landscape.random_direction(trained, seed=2)
    before = snapshot(trained)
    cmap = landscape.curvature_map(trained, spirals, dx, dy, points=3, span=0.5, lanczos_iterations=40,
                                   chunk_size=4)
    assert_unchanged(trained, before)
    assert cmap.lambda_max.shape == cmap.ratio.shape == (3, 3)
    centre = landscape.hessian_extremes(trained, spirals, iterations=40)
    assert cmap.lambda_max[1, 1].item() == pytest.approx(centre.lambda_max, rel=1e-6)
    assert cmap.lambda_min[1, 1].item() == pytest.approx(centre.lambda_min, rel=1e-4)
    moved = copy.deepcopy(trained)
    with torch.no_grad():
        for p, a, b in zip(moved.parameters(), dx, dy):
            p.add_(cmap.alphas[0].item() * a + cmap.betas[2].item() * b)
    corner = landscape.hessian_extremes(moved, spirals, iterations=40)
    assert cmap.lambda_max[0, 2].item() == pytest.approx(corner.lambda_max, rel=1e-4)
    assert cmap.lambda_min[0, 2].item() == pytest.approx(corner.lambda_min, rel=1e-3)


def test_cache_returns_the_same_result_and_survives_corrupt_files(trained, spirals):
    dx = landscape.random_direction(trained, seed=1)
    dy = landscape.random_direction(trained, seed=2)
    first = landscape.surface_2d(trained, spirals, dx, dy, points=5, cache=True)
    files = list((settings.cache_dir() / "landscapes").glob("*.pt"))
    assert len(files) == 1
    again = landscape.surface_2d(trained, spirals, dx, dy, points=5, cache=True)
    assert torch.equal(first.losses, again.losses) and again.method == first.method
    other = landscape.surface_2d(trained, spirals, dx, dy, points=5, span=0.5, cache=True)
    assert not torch.equal(first.losses, other.losses)  # the span is part of the key
    files[0].write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="ignoring cache file"):
        rebuilt = landscape.surface_2d(trained, spirals, dx, dy, points=5, cache=True)
    torch.testing.assert_close(rebuilt.losses, first.losses)
    h = landscape.hessian_extremes(trained, spirals, iterations=20, cache=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert landscape.hessian_extremes(trained, spirals, iterations=20, cache=True) == h


def test_cache_never_runs_code_from_a_file(trained, spirals, tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    dx = landscape.random_direction(trained, seed=1)
    landscape.surface_1d(trained, spirals, dx, points=3, cache=True)
    path = next((settings.cache_dir() / "landscapes").glob("*.pt"))
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.warns(UserWarning, match="ignoring cache file"):
        landscape.surface_1d(trained, spirals, dx, points=3, cache=True)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("call, match", [
    (lambda m, d, x: landscape.random_direction(m, normalize="unit"), "'filter', 'layer', 'none'"),
    (lambda m, d, x: landscape.random_direction(m, ignore="bias"), "'biasbn', 'none'"),
    (lambda m, d, x: landscape.surface_2d(m, d, x, x, points=1), r"points must be an integer (>= 2|in 2\.\.)"),
    (lambda m, d, x: landscape.surface_2d(m, d, x, x, span=0), "span must be a finite number > 0"),
    (lambda m, d, x: landscape.surface_1d(m, d, x, span=-1.0), "span must be a finite number > 0"),
    (lambda m, d, x: landscape.surface_2d(m, d, x, x[:-1]), "dir_y must have one tensor per parameter"),
    (lambda m, d, x: landscape.surface_2d(m, d, x, [t.reshape(1, -1) for t in x]), r"dir_y\[\d+\] must have the shape"),
    (lambda m, d, x: landscape.surface_1d(m, d, torch.zeros(3)), "list of"),
    (lambda m, d, x: landscape.surface_1d(m, d, x, method="fast"), "'auto', 'batched', 'vmap', 'loop'"),
    (lambda m, d, x: landscape.surface_1d(m, d, x, split="val"), "'train', 'test'"),
    (lambda m, d, x: landscape.hessian_extremes(m, d, iterations=1), r"iterations must be an integer (>= 2|in 2\.\.)"),
    (lambda m, d, x: landscape.curvature_map(m, d, x, x, points=1), r"points must be an integer (>= 2|in 2\.\.)"),
    (lambda m, d, x: landscape.surface_1d(m, d, [t * float("nan") for t in x]), "inf or nan"),
])
def test_bad_input(trained, spirals, call, match):
    direction = landscape.random_direction(trained, seed=0)
    with pytest.raises(ValueError, match=match):
        call(trained, spirals, direction)


def test_slice_curvature_of_known_surfaces():
    coords = torch.linspace(-1, 1, 9, dtype=torch.float64)
    a, b = torch.meshgrid(coords, coords, indexing="ij")
    for losses, expected_max, expected_min, fraction in [
        (a ** 2 + 3 * b ** 2, 6.0, 2.0, 0.0),      # a convex bowl
        (a ** 2 - b ** 2, 2.0, -2.0, 1.0),          # a saddle everywhere
        (2 * a * b, 2.0, -2.0, 1.0),                # a rotated saddle: needs the mixed term
    ]:
        s = landscape.Surface2D(coords, coords.clone(), losses, None, "vmap")
        lam_max, lam_min = landscape.slice_curvature(s)
        assert lam_max.shape == (7, 7)
        torch.testing.assert_close(lam_max, torch.full((7, 7), expected_max, dtype=torch.float64))
        torch.testing.assert_close(lam_min, torch.full((7, 7), expected_min, dtype=torch.float64))
        assert landscape.nonconvex_fraction(lam_max, lam_min) == fraction
    weak = landscape.nonconvex_fraction(torch.tensor([10.0, 10.0]), torch.tensor([-0.5, -2.0]))
    assert weak == 0.5  # -0.5 is under a tenth of 10, -2 is not
    with pytest.raises(ValueError, match="same, non-empty shape"):
        landscape.nonconvex_fraction(torch.ones(3), torch.ones(4))
    with pytest.raises(ValueError, match="threshold"):
        landscape.nonconvex_fraction(torch.ones(3), torch.ones(3), threshold=0)


def test_hessian_of_a_model_outside_the_batched_path(spirals):
    """LayerNorm is not point-batched: products go through functional_call, one point at a time."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 12), nn.LayerNorm(12), nn.ReLU(), nn.Linear(12, 3))
    training.fit(model, spirals, steps=100, lr=1e-2, cache=False, progress=False)
    lmax, lmin = dense_extremes(model, spirals)
    r = landscape.hessian_extremes(model, spirals, iterations=60)
    assert r.lambda_max == pytest.approx(lmax, rel=0.01)
    assert r.lambda_min == pytest.approx(lmin, rel=0.01, abs=1e-3 * lmax)
    dx, dy = landscape.random_direction(model, seed=1), landscape.random_direction(model, seed=2)
    cmap = landscape.curvature_map(model, spirals, dx, dy, points=3, lanczos_iterations=60, chunk_size=4)
    assert cmap.lambda_max[1, 1].item() == pytest.approx(r.lambda_max, rel=1e-6)


@pytest.mark.parametrize("norm", ["none", "batch"])
def test_batched_surface_of_a_one_layer_v1_block_is_right(spirals, norm):
    """Span-1 V1 blocks (x + W x + b, read and written by one Linear): the batched path must not
    add the bias into the Linear's own input before the product."""
    net = models.ResidualMLP(2, 3, width=16, depth=3, block="v1", span=1, norm=norm)
    training.fit(net, spirals, steps=150, lr=1e-2, cache=False, progress=False)
    dx, dy = (landscape.random_direction(net, seed=s) for s in (1, 2))
    by_loop = landscape.surface_2d(net, spirals, dx, dy, points=3, method="loop")
    by_batch = landscape.surface_2d(net, spirals, dx, dy, points=3, method="batched")
    torch.testing.assert_close(by_batch.losses, by_loop.losses, rtol=1e-5, atol=1e-6)
    centre = by_loop.losses[1, 1].item()
    assert centre == pytest.approx(training.evaluate(net, spirals, "train")[0], rel=1e-5)
