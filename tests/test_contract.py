"""The error contract, one test per kind of failure the fuzzer finds (the fuzzer in
tests/test_fuzz.py covers the long tail; these pin the behaviour each category must have):
a correct result or a SkipvizError naming the argument, and nothing the caller passed changed.
Plus the cache: a trained model is looked up by what it computes, not only by its code."""

from __future__ import annotations

import math
import random

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from skipviz import (  # noqa: E402
    data,
    exercises,
    fingerprints,
    landscape,
    models,
    paths,
    perturbation,
    plots,
    probes,
    training,
    widgets,
)
from skipviz.claims import Margin, claim  # noqa: E402
from skipviz.errors import SkipvizError, SkipvizTypeError, SkipvizValueError  # noqa: E402


@pytest.fixture(scope="module")
def spirals():
    return data.spirals(n_train=32, n_test=16)


def small(**kw):
    return models.ResidualMLP(2, 3, width=8, depth=3, **kw)


def xy(n=6):
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 2, generator=g), torch.randint(0, 3, (n,), generator=g)


# ---------------------------------------------------------------------------- dtypes

@pytest.mark.parametrize("call", [
    lambda net, ds: training.fit(net, ds, steps=1, cache=False, progress=False),
    lambda net, ds: training.evaluate(net, ds),
    lambda net, ds: landscape.surface_1d(net, ds, landscape.random_direction(net), points=3),
    lambda net, ds: landscape.hessian_extremes(net, ds, iterations=3),
], ids=["fit", "evaluate", "surface_1d", "hessian_extremes"])
def test_a_float64_model_on_float32_data_is_refused_with_the_fix(spirals, call):
    with pytest.raises(SkipvizValueError, match=r"float32 but model's weights have torch.float64.*model.to"):
        call(small().double(), spirals)


@pytest.mark.parametrize("call", [
    lambda net, x, y: probes.probe(net, x, y),
    lambda net, x, y: paths.gradient_by_path_length(net, x, y),
    lambda net, x, y: perturbation.block_perturbations(net, x),
], ids=["probe", "gradient_by_path_length", "block_perturbations"])
def test_float64_inputs_to_a_float32_model_are_refused(call):
    x, y = xy()
    with pytest.raises(SkipvizValueError, match=r"x has dtype torch.float64 but model's weights"):
        call(small().eval(), x.double(), y)


def test_int32_labels_are_refused_with_the_conversion_but_a_data_set_converts_them():
    x, y = xy()
    with pytest.raises(SkipvizValueError, match=r"y must be int64 class labels.*y.long\(\)"):
        probes.probe(small(), x, y.int())
    ds = data.Dataset("mine", x, y.int(), x, y.int(), "classification", 3)
    assert ds.y_train.dtype == torch.int64
    assert training.evaluate(small(), ds) == training.evaluate(small(), data.Dataset("mine", x, y, x, y, "classification", 3))


def test_a_user_model_in_float64_is_refused_clearly(spirals):
    net = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    with pytest.raises(SkipvizValueError, match="torch.float64"):
        training.evaluate(net, spirals)


# ---------------------------------------------------------------------------- batch norm, batch of one

def test_batch_norm_with_a_batch_of_one_is_refused_up_front(spirals):
    with pytest.raises(SkipvizValueError, match="batch_size must be at least 2.*batch norm"):
        training.fit(small(norm="batch"), spirals, steps=1, batch_size=1, cache=False)
    one = data.Dataset("one", spirals.x_train[:1], spirals.y_train[:1], spirals.x_test, spirals.y_test,
                       "classification", 3)
    with pytest.raises(SkipvizValueError, match="1 training example"):
        training.fit(small(norm="batch"), one, steps=1, cache=False)
    x, y = xy(1)
    with pytest.raises(SkipvizValueError, match="at least 2 examples with batch_stats=True"):
        probes.probe(small(norm="batch"), x, y, batch_stats=True)
    assert training.fit(small(), one, steps=1, cache=False, progress=False).steps == [1]  # no batch norm: fine


# ---------------------------------------------------------------------------- model families

@pytest.mark.parametrize("model, words", [
    (models.HighwayMLP(2, 3, width=8, depth=3), "ResidualMLP, SkipConvNet or ResNet1d"),
    (models.PlainMLP(2, 3, width=8, depth=3), "ResidualMLP, SkipConvNet or ResNet1d"),
    (models.DenseNet1d(in_len=2, num_classes=3, stem=4, growth=2, layers=2, blocks=1), "ResidualMLP, SkipConvNet or ResNet1d"),
    (models.ResNet1d(in_len=4, num_classes=3, channels=4, blocks=1, sections=3), "3 sections"),
], ids=["highway", "plain", "densenet", "resnet 3 sections"])
def test_the_path_split_names_the_families_it_supports(model, words):
    x = torch.randn(4, 4) if isinstance(model, models.ResNet1d) else torch.randn(4, 2)
    with pytest.raises(SkipvizValueError, match=words):
        paths.gradient_by_path_length(model.eval(), x, torch.zeros(4, dtype=torch.long))


def test_a_user_skipnet_with_blocks_is_refused_by_the_path_split():
    class Mine(models.SkipNet):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList([nn.Linear(2, 2)])
            self._init_skips(1)

        def forward(self, x):
            return self.blocks[0](x)

    with pytest.raises(SkipvizValueError, match="got Mine"):
        paths.gradient_by_path_length(Mine(), torch.randn(3, 2), torch.zeros(3, 2))


@pytest.mark.parametrize("model", [models.DenseNet1d(), models.UNet1d()], ids=["densenet", "unet"])
def test_probe_refuses_models_without_probe_layers_naming_those_with(model):
    x = torch.randn(4, 40)
    y = torch.zeros(4, dtype=torch.long) if isinstance(model, models.DenseNet1d) else x
    hooks = [len(m._forward_hooks) for m in model.modules()]
    with pytest.raises(SkipvizValueError, match="probe_layers.*ResidualMLP"):
        probes.probe(model, x, y)
    assert [len(m._forward_hooks) for m in model.modules()] == hooks


def test_reordering_a_resnet_with_sections_is_refused_and_leaves_it_alone():
    net = models.ResNet1d(channels=4, blocks=2, sections=2)
    before = list(net.blocks)
    with pytest.raises(SkipvizValueError, match="2 sections"), paths.reordered(net, [1, 0, 2, 3]):
        pass
    assert list(net.blocks) == before


# ---------------------------------------------------------------------------- exercise checks

def test_checks_accept_any_spelling_of_the_right_number():
    right = math.sqrt(1 / 3 / 16)
    for spelling in (right, np.float64(right), np.float32(right), torch.tensor(right),
                     torch.tensor(right, dtype=torch.float64), np.array(right)):
        assert exercises.check_glorot_factor(spelling).ok, type(spelling)


@pytest.mark.parametrize("answer", [math.nan, math.inf, -math.inf, torch.tensor(math.nan), "0.14", None, [0.14]])
def test_checks_turn_odd_numbers_into_a_verdict(answer):
    result = exercises.check_glorot_factor(answer)
    assert isinstance(result, exercises.CheckResult) and not result.ok and result.message


def test_check_arguments_that_are_not_the_answer_are_validated():
    with pytest.raises(SkipvizValueError, match="grad must be a finite number"):
        exercises.check_adam_step(0.0, grad=math.nan)
    with pytest.raises(SkipvizValueError, match="lr must be a finite number > 0"):
        exercises.check_adam_step(0.0, lr=-1)


def test_a_detached_or_raising_answer_gets_one_line():
    class Detached(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.first, self.second = nn.Linear(width, width), nn.Linear(width, width)

        def forward(self, x):
            return (torch.relu(self.second(torch.relu(self.first(x)))) + x).detach()

    result = exercises.check_block(Detached)
    assert not result.ok and "\n" not in result.message


@pytest.mark.parametrize("name", [n for n in exercises.__all__ if n.startswith("check_")])
def test_every_check_leaves_the_students_random_streams_alone(name):
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    expected = (torch.randn(3), np.random.rand(3), random.random())
    torch.manual_seed(1), np.random.seed(1), random.seed(1)

    def noisy(*args, **kwargs):  # a student's answer that draws random numbers
        torch.manual_seed(99), np.random.seed(99), random.seed(99)
        return 0.0

    getattr(exercises, name)(noisy)
    got = (torch.randn(3), np.random.rand(3), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


# ---------------------------------------------------------------------------- widgets

def test_make_control_takes_numpy_bounds_and_refuses_what_it_cannot_show():
    assert widgets.make_control("k", (np.int64(1), np.int64(5), 1)).max == 5
    for name, spec, words in [("k", [[1, 2], [3]], "options"), (3, (0, 1, 0.1), "name must be"),
                              ("k", (0, 1, 5), "step <= max - min")]:
        with pytest.raises(SkipvizValueError, match=words):
            widgets.make_control(name, spec)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(draw=None), SkipvizTypeError, "draw must be a function"),
    (dict(controls=[("k", (1, 3, 1))]), SkipvizValueError, "controls must be a dict"),
    (dict(figsize=5), SkipvizValueError, "figsize"),
    (dict(figsize=(0, 0)), SkipvizValueError, "figsize"),
    (dict(columns=0), SkipvizValueError, "columns"),
    (dict(columns=2.5), SkipvizValueError, "columns"),
])
def test_figure_panel_refuses_bad_arguments(kwargs, error, words):
    args = dict(draw=lambda fig, k: fig.add_subplot().plot(range(k)), controls={"k": (1, 3, 1)}) | kwargs
    with pytest.raises(error, match=words):
        widgets.FigurePanel(**args)


def test_a_draw_that_makes_its_own_figure_is_shown():
    def draw(fig, k):
        _, ax = plt.subplots()
        ax.plot(range(k))

    before = plt.get_fignums()
    panel = widgets.FigurePanel(draw, {"k": (1, 3, 1)})
    assert panel.error is None and len(panel.figure.axes) == 1
    assert plt.get_fignums() == before  # not also left open under the cell


def test_skip_toggles_refuse_bad_arguments_and_never_disagree_with_the_model():
    net = small()
    with pytest.raises(SkipvizValueError, match="n must be an integer"):
        widgets.SkipToggles(n=2.5)
    with pytest.raises(SkipvizValueError, match="not model.skips"):
        widgets.SkipToggles(net.skips)
    toggles = widgets.SkipToggles(net)
    with pytest.raises(SkipvizValueError, match="value must have length 3"):
        toggles.value = [True]
    assert toggles.value == list(net.skips) == [b.value for b in toggles.buttons] == [True] * 3


def test_models_know_nothing_of_widgets():
    """A model's skips are plain state: nothing registers with it (the toggles poll it)."""
    import weakref

    import skipviz.models.core as core

    assert not hasattr(small(), "on_skips_change")
    assert not [name for name, v in vars(core).items()
                if not name.startswith("__") and isinstance(v, (weakref.WeakKeyDictionary, dict))]


# ---------------------------------------------------------------------------- claims

@pytest.mark.parametrize("holds", [[False, False], "False", 0.3 - 0.8, math.nan, 1, torch.ones(2) > 0])
def test_claim_refuses_what_is_not_a_truth_value(holds):
    with pytest.raises(SkipvizValueError, match="holds must be a truth value"):
        claim("the sentence", holds)


@pytest.mark.parametrize("holds", [True, np.bool_(True), torch.tensor(True), Margin(True, 0.5), np.array(True)])
def test_claim_accepts_truth_values(holds, capsys):
    claim("the sentence", holds)
    assert capsys.readouterr().out == "✔ the sentence\n"


# ---------------------------------------------------------------------------- state

def test_probe_with_a_bad_flag_attaches_no_hooks():
    net = small()
    with pytest.raises(SkipvizValueError, match="batch_stats must be True or False"):
        probes.probe(net, *xy(), batch_stats="yes")
    assert all(not m._forward_hooks for m in net.modules())
    assert net(torch.randn(2, 2)).shape == (2, 3)


def test_probe_leaves_grad_fields_alone():
    net = small()
    x, y = xy()
    x.requires_grad_(True)
    probes.probe(net, x, y)
    assert x.grad is None and all(p.grad is None for p in net.parameters())


def test_probe_of_a_frozen_model_still_reads_the_activation_gradients():
    """Found by `make fuzz`: with no weight training, backward() had no graph to run on."""
    net = small().requires_grad_(False)
    result = probes.probe(net, *xy())
    assert torch.all(result.activation_grad > 0) and torch.isnan(result.weight_grad).all()
    assert not any(p.requires_grad for p in net.parameters())


# ---------------------------------------------------------------------------- paths and landscapes

def test_kendall_tau_refuses_ties_and_takes_any_spelling():
    with pytest.raises(SkipvizValueError, match="distinct"):
        paths.kendall_tau([3, 3, 3, 3])
    assert paths.kendall_tau(np.array([3, 2, 1, 0])) == paths.kendall_tau(torch.tensor([3, 2, 1, 0])) == -1.0


def test_fraction_in_range_refuses_fractional_bounds():
    with pytest.raises(SkipvizValueError, match="low must be an integer"):
        paths.fraction_in_range(10, 2.5, 7.5)


def test_center_loss_of_an_even_grid_names_points(spirals):
    net = small()
    surface = landscape.surface_2d(net, spirals, landscape.random_direction(net),
                                   landscape.random_direction(net, seed=1), points=4)
    with pytest.raises(SkipvizValueError, match="odd number of points.*points=4"):
        surface.center_loss  # noqa: B018


def test_curvature_helpers_take_lists_and_arrays():
    lmax, lmin = [[2.0, 1.0], [1.0, 3.0]], [[-1.0, 0.0], [0.5, -0.01]]
    expected = landscape.nonconvex_fraction(torch.tensor(lmax), torch.tensor(lmin))
    assert landscape.nonconvex_fraction(lmax, lmin) == landscape.nonconvex_fraction(np.array(lmax), np.array(lmin)) == expected == 0.25
    with pytest.raises(SkipvizTypeError, match="surface must be a Surface2D"):
        landscape.slice_curvature(np.zeros((5, 5)))


def test_direction_to_another_model_says_to_pass_its_state_dict():
    with pytest.raises(SkipvizTypeError, match=r"state_dict"):
        landscape.direction_to(small(), small(seed=1))


def test_lanczos_names_a_matvec_of_the_wrong_shape():
    with pytest.raises(SkipvizValueError, match=r"matvec must return .* shape \(1, 5\)"):
        landscape.lanczos_extremes(lambda v: v[:, :3], n=5, iterations=3)


# ---------------------------------------------------------------------------- silent misreads

def test_profile_refuses_a_string_flag():
    p = perturbation.block_perturbations(small(), torch.randn(5, 2))
    with pytest.raises(SkipvizValueError, match="scaled must be True or False"):
        p.profile(0, scaled="no")


def test_log_ticks_refuses_an_unknown_axis():
    fig, ax = plt.subplots()
    ax.semilogx([1, 10, 100], [1, 2, 3])
    locator = ax.xaxis.get_major_locator()
    with pytest.raises(SkipvizValueError, match="axis must be one of 'x', 'y'"):
        plots.log_ticks(ax, axis="z")
    assert ax.xaxis.get_major_locator() is locator
    plt.close(fig)


def test_per_layer_factor_of_a_column_is_that_of_the_vector():
    values = torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0])
    assert probes.per_layer_factor(values.reshape(-1, 1)) == pytest.approx(probes.per_layer_factor(values))


def test_block_perturbations_of_a_shared_block_measures_every_call():
    net = small()
    shared = net.blocks[0]
    tied = small()
    tied.load_state_dict(net.state_dict())
    for i in range(3):
        net.blocks[i] = shared  # one module run three times
        tied.blocks[i].load_state_dict(shared.state_dict())  # three modules, the same weights
    x = torch.randn(5, 2)
    a, b = perturbation.block_perturbations(net, x), perturbation.block_perturbations(tied, x)
    assert torch.allclose(a.absolute, b.absolute) and a.blocks == b.blocks == [0, 1, 2]


def test_block_perturbations_refuses_nan_inputs():
    x = torch.randn(5, 2)
    x[0, 0] = math.nan
    with pytest.raises(SkipvizValueError, match="x holds inf or nan"):
        perturbation.block_perturbations(small(), x)


# ---------------------------------------------------------------------------- numbers in other spellings

def test_numpy_and_torch_scalars_stand_for_numbers(spirals):
    a = models.ResidualMLP(np.int64(2), torch.tensor(3), width=np.int32(8), depth=torch.tensor(3),
                           branch_scale=np.float32(1.0))
    assert torch.equal(a(spirals.x_test), small()(spirals.x_test))
    h1 = training.fit(small(), spirals, steps=np.int64(2), lr=np.float32(1e-3), cache=False, progress=False)
    h2 = training.fit(small(), spirals, steps=2, lr=float(np.float32(1e-3)), cache=False, progress=False)
    assert h1.train_loss == h2.train_loss


# ---------------------------------------------------------------------------- the cache

USE_SKIP = True


class GlobalNet(nn.Module):
    """A student's network whose forward reads a global, as notebook code often does."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.first, self.second, self.head = nn.Linear(2, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.first(x))
        h = torch.relu(self.second(h)) + (h if USE_SKIP else 0)
        return self.head(h)


def test_a_forward_that_reads_a_changed_global_retrains(spirals, tmp_path, monkeypatch):
    global USE_SKIP
    monkeypatch.setenv("SKIPVIZ_CACHE", str(tmp_path))
    USE_SKIP = True
    try:
        first = training.fit(GlobalNet(), spirals, steps=3, progress=False)
        again = training.fit(GlobalNet(), spirals, steps=3, progress=False)
        USE_SKIP = False
        changed = training.fit(GlobalNet(), spirals, steps=3, progress=False)
    finally:
        USE_SKIP = True
    assert not first.from_cache and again.from_cache  # same behaviour: from the cache
    assert not changed.from_cache and changed.train_loss != first.train_loss


def test_the_behaviour_fingerprint_ignores_rounding_but_not_a_change(spirals):
    net = small()
    key = fingerprints.behaviour_fingerprint(net, spirals)
    with torch.no_grad():
        net.head.bias.add_(1e-9)  # far below its 4 digits
    assert fingerprints.behaviour_fingerprint(net, spirals) == key
    with torch.no_grad():
        net.head.bias.add_(1e-2)
    assert fingerprints.behaviour_fingerprint(net, spirals) != key
    assert all(p.grad is None for p in net.parameters())


def test_every_error_is_a_skipviz_error():
    assert issubclass(SkipvizValueError, ValueError) and issubclass(SkipvizTypeError, TypeError)
    assert issubclass(SkipvizValueError, SkipvizError) and issubclass(SkipvizTypeError, SkipvizError)


def test_subplots_takes_sizes_per_panel_and_refuses_figsize():
    from skipviz import plots

    fig, axes = plots.subplots(2, 3, width=2, height=1)
    assert axes.shape == (2, 3) and tuple(fig.get_size_inches()) == (6, 2)
    plt.close(fig)
    with pytest.raises(SkipvizValueError, match="figsize.*width= and height="):
        plots.subplots(1, 2, figsize=(8, 3))
