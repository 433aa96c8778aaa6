import numpy as np
import pytest
import torch

from skipviz import data


def test_sine_shapes_and_targets():
    ds = data.sine(n_train=50, n_test=20, seed=3)
    assert ds.task == "regression" and ds.num_classes is None
    assert ds.x_train.shape == (50, 1) and ds.y_train.shape == (50, 1)
    assert ds.x_test.shape == (20, 1) and ds.out_dim == 1 and ds.in_dim == 1
    assert torch.allclose(ds.y_test, torch.sin(ds.x_test))
    assert torch.all(ds.x_test[1:] > ds.x_test[:-1])  # an even grid, plottable as a curve


def test_sine_is_deterministic_per_seed():
    assert torch.equal(data.sine(seed=1).x_train, data.sine(seed=1).x_train)
    assert not torch.equal(data.sine(seed=1).x_train, data.sine(seed=2).x_train)


def test_spirals_classes_balanced():
    ds = data.spirals(num_classes=4, n_train=400, n_test=100)
    assert ds.task == "classification" and ds.num_classes == 4 and ds.out_dim == 4
    assert ds.x_train.shape == (400, 2) and ds.y_train.dtype == torch.int64
    assert torch.bincount(ds.y_train).tolist() == [100] * 4


def test_mnist1d_generated_locally_and_cached(tmp_path, monkeypatch):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    ds = data.mnist1d()
    assert np.array_equal(np.random.get_state()[1], before), "the global numpy RNG must be restored"
    assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
    assert ds.num_classes == 10 and ds.y_train.dtype == torch.int64
    assert abs(ds.x_train.mean().item()) < 0.05 and abs(ds.x_train.std().item() - 1) < 0.05
    cached = list(data.cache_dir().glob("mnist1d-*.pt"))
    assert len(cached) == 1
    again = data.mnist1d()
    assert torch.equal(again.x_train, ds.x_train)
    assert data.mnist1d(n_train=100).x_train.shape == (100, 40)


def test_mnist1d_corrupt_cache_is_rebuilt():
    good = data.mnist1d()
    path = next(data.cache_dir().glob("mnist1d-*.pt"))
    path.write_bytes(b"not a torch file")
    with pytest.warns(UserWarning, match="regenerating"):
        rebuilt = data.mnist1d()
    assert torch.equal(rebuilt.x_test, good.x_test)


def test_fingerprint_changes_with_data():
    assert data.sine(seed=0).fingerprint() == data.sine(seed=0).fingerprint()
    assert data.sine(seed=0).fingerprint() != data.sine(seed=1).fingerprint()


@pytest.mark.parametrize("call, match", [
    (lambda: data.load("cifar10"), "'sine', 'spirals', 'mnist1d'"),
    (lambda: data.sine(n_train=0), "n_train must be an integer >= 1"),
    (lambda: data.sine(low=1, high=0), "low must be below high"),
    (lambda: data.spirals(num_classes=1), "num_classes"),
    (lambda: data.spirals(noise=-1), "noise"),
    (lambda: data.mnist1d(n_train=0), "n_train"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_load_by_name():
    assert data.load("spirals", num_classes=3).num_classes == 3
