"""TelescopeMLP and the claims notebook 05 makes about it (FAST settings, fixed seed)."""

import pytest
import torch

from skipviz import data, models, training


def test_all_skips_off_is_the_plain_forward():
    net = models.TelescopeMLP(1, 1, width=16, depth=6)
    x = torch.randn(20, 1)
    net.skips = [False] * 6
    h = x
    for layer in net.layers:
        h = layer(h)
    assert torch.allclose(net(x), net.head(h), atol=1e-6)


def test_forward_is_last_state_plus_every_skipped_state():
    net = models.TelescopeMLP(1, 2, width=8, depth=4, seed=3)
    x = torch.randn(5, 1)
    hidden = net.hidden_states(x)
    assert torch.allclose(net(x), net.head(hidden[-1] + sum(hidden)), atol=1e-6)
    net.skips = [True, False, True, False]
    assert torch.allclose(net(x), net.head(hidden[-1] + hidden[0] + hidden[2]), atol=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda: models.TelescopeMLP(1, 1, depth=0), r"depth must be an integer in 1\.\."),
    (lambda: models.TelescopeMLP(1, 1, width=0), "width must be an integer >= 1"),
    (lambda: models.TelescopeMLP(1, 1, activation="elu"), "'relu', 'tanh', 'sigmoid'"),
])
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_wrong_skip_list_names_the_length():
    net = models.TelescopeMLP(1, 1, depth=50)
    with pytest.raises(ValueError, match="length 50"):
        net.skips = [True] * 49


@pytest.fixture(scope="module")
def sine():
    return data.sine(n_train=256, n_test=1000, seed=0)


def trained(init, sine):
    """The notebook's FAST-mode models (same settings, so they share its cache)."""
    net = models.TelescopeMLP(1, 1, width=64, depth=50, init=init, seed=0)
    training.fit(net, sine, steps=500, lr=1e-3, batch_size=64, seed=0, progress=False)
    return net


def outputs(net, x, keep):
    with torch.no_grad(), net.skips_off([i for i in range(50) if i not in keep]):
        return net(x)


@pytest.mark.real_cache
def test_default_init_later_layers_add_only_a_constant(sine):
    net = trained("default", sine)
    x = sine.x_test
    full = outputs(net, x, range(50))
    first_half = outputs(net, x, range(25))
    last_half = outputs(net, x, range(25, 50))
    assert (first_half - full).std() < 1e-3        # the same shape, shifted
    assert last_half.std() < 1e-3                   # a constant function


@pytest.mark.real_cache
def test_he_init_needs_both_halves(sine):
    net = trained("he", sine)
    x, y = sine.x_test, sine.y_test
    mse = lambda out: ((out - y) ** 2).mean().item()  # noqa: E731
    assert mse(outputs(net, x, range(25))) > mse(outputs(net, x, range(50))) + 0.05
