import pytest
import torch

from skipviz import data, models, training


@pytest.fixture
def spirals():
    return data.spirals(num_classes=3, n_train=300, n_test=300, seed=0)


def make(seed=0):
    return models.ResidualMLP(2, 3, width=32, depth=3, seed=seed)


def test_fit_learns_and_records(spirals):
    net = make()
    h = training.fit(net, spirals, steps=300, lr=1e-2, batch_size=64, eval_every=50, cache=False)
    assert h.steps == [50, 100, 150, 200, 250, 300]
    assert len(h.train_loss) == len(h.test_metric) == 6 and h.metric_name == "accuracy"
    assert h.train_loss[-1] < 0.5 * h.train_loss[0]
    assert h.final_test_metric > 0.8 and not net.training


def test_fit_regression_metric_is_mse():
    ds = data.sine(n_train=128, n_test=64)
    net = models.ResidualMLP(1, 1, width=16, depth=2)
    h = training.fit(net, ds, steps=200, lr=1e-2, cache=False)
    assert h.metric_name == "mse"
    assert abs(h.final_test_metric - training.evaluate(net, ds)[1]) < 1e-6


def test_same_seed_same_weights_and_history(spirals):
    a, b = make(), make()
    ha = training.fit(a, spirals, steps=60, seed=4, cache=False)
    hb = training.fit(b, spirals, steps=60, seed=4, cache=False)
    assert ha.train_loss == hb.train_loss and ha.test_metric == hb.test_metric
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = make()
    hc = training.fit(c, spirals, steps=60, seed=5, cache=False)
    assert hc.train_loss != ha.train_loss


def test_cache_round_trip(spirals):
    a = make()
    h1 = training.fit(a, spirals, steps=40)
    assert not h1.from_cache
    b = make()
    h2 = training.fit(b, spirals, steps=40)
    assert h2.from_cache and h2.train_loss == h1.train_loss
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_cache_key_covers_configuration(spirals):
    s = dict(steps=10, lr=1e-3, batch_size=8, seed=0, optimizer="adam", weight_decay=0.0, eval_every=1)
    base = training.cache_key(make(), spirals, s)
    assert base == training.cache_key(make(), spirals, s)
    assert base != training.cache_key(make(seed=1), spirals, s)  # other initial weights
    assert base != training.cache_key(make(), spirals, {**s, "lr": 2e-3})
    assert base != training.cache_key(make(), data.spirals(seed=1), s)
    off = make()
    off.skips = [True, False, True]
    assert base != training.cache_key(off, spirals, s)
    # Same seed and shapes, so the same initial weights: only the block type tells them apart.
    keys = {training.cache_key(models.ResidualMLP(2, 3, width=32, depth=3, block=b, seed=0), spirals, s)
            for b in models.BLOCKS}
    assert len(keys) == len(models.BLOCKS)
    scaled = models.ResidualMLP(2, 3, width=32, depth=3, branch_scale=0.5)
    assert base != training.cache_key(scaled, spirals, s)


def _only_cache_file():
    files = list((data.cache_dir() / "models").glob("*.pt"))
    assert len(files) == 1
    return files[0]


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("damage", ["garbage", "truncate", "other_key", "wrong_shapes"])
def test_bad_cache_file_is_ignored_and_rebuilt(spirals, damage):
    reference = make()
    h_ref = training.fit(reference, spirals, steps=30)
    path = _only_cache_file()
    if damage == "garbage":
        path.write_bytes(b"\x80\x04 definitely not a checkpoint")
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    else:
        blob = torch.load(path, weights_only=True)
        if damage == "other_key":
            blob["key"] = "0" * 32
        else:
            blob["state_dict"]["head.weight"] = torch.zeros(1, 1)
        torch.save(blob, path)
    net = make()
    with pytest.warns(UserWarning, match="retraining"):
        h = training.fit(net, spirals, steps=30)
    assert not h.from_cache and h.train_loss == h_ref.train_loss
    assert torch.equal(net.head.weight, reference.head.weight)
    assert training.fit(make(), spirals, steps=30).from_cache  # rewritten, now good


def test_malicious_cache_file_never_runs_code(spirals, tmp_path):
    training.fit(make(), spirals, steps=5)
    path = _only_cache_file()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format": training.CACHE_FORMAT, "payload": Evil()}, path)
    with pytest.warns(UserWarning, match="retraining"):
        training.fit(make(), spirals, steps=5)
    assert not marker.exists()


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "steps must be an integer >= 1"),
    (dict(steps=5, lr=0), "lr must be a finite number > 0"),
    (dict(steps=5, optimizer="lbfgs"), "'adam', 'sgd'"),
    (dict(steps=5, batch_size=0), "batch_size"),
    (dict(steps=5, weight_decay=-1), "weight_decay"),
])
def test_bad_arguments(spirals, kwargs, match):
    with pytest.raises(ValueError, match=match):
        training.fit(make(), spirals, **kwargs)


def test_evaluate_restores_mode(spirals):
    net = make()
    net.train()
    training.evaluate(net, spirals, "train")
    assert net.training
    with pytest.raises(ValueError, match="'train', 'test'"):
        training.evaluate(net, spirals, "valid")


def test_progress_bar_settings(monkeypatch):
    from skipviz import settings

    monkeypatch.setenv("SKIPVIZ_FAST", "0")
    monkeypatch.delenv("SKIPVIZ_PROGRESS", raising=False)
    assert settings.progress_bars()
    monkeypatch.setenv("SKIPVIZ_PROGRESS", "0")
    assert not settings.progress_bars()
    monkeypatch.setenv("SKIPVIZ_PROGRESS", "1")
    monkeypatch.setenv("SKIPVIZ_FAST", "1")
    assert not settings.progress_bars()


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_points_form_of_the_loss_is_each_points_own_loss(task):
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(4, 9, 3, generator=gen)
    y = torch.randint(0, 3, (9,), generator=gen) if task == "classification" else torch.randn(9, 3, generator=gen)
    each = torch.stack([training.loss_for_targets(o, y) for o in out])
    torch.testing.assert_close(training.loss_for_targets(out, y, points=True), each, rtol=1e-6, atol=0)


def test_evaluate_names_its_result_and_builds_no_graph():
    from skipviz import data, models, training
    from skipviz.errors import SkipvizValueError

    class Spy(models.ResidualMLP):
        def forward(self, x):
            self.grad_enabled = torch.is_grad_enabled()
            return super().forward(x)

    net = Spy(2, 3, seed=0)
    result = training.evaluate(net, data.spirals())
    assert net.grad_enabled is False
    loss, accuracy = result
    assert (result.loss, result.accuracy) == (loss, accuracy) and 0 <= accuracy <= 1
    with pytest.raises(SkipvizValueError, match="classification"):
        _ = result.mse
    regression = training.evaluate(models.ResidualMLP(1, 1, seed=0), data.sine())
    assert regression.mse == regression.loss
    with pytest.raises(SkipvizValueError, match="regression"):
        _ = regression.accuracy
