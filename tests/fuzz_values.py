"""The values the fuzz test (tests/test_fuzz.py) draws from: a valid call of every public
callable (VALID by parameter name, OVERRIDES by callable), and the odd values that replace its
arguments (ODD, for any argument; `variations` of the valid value, for its own)."""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

import ipywidgets
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from skipviz import data, landscape, models, training  # noqa: E402
from skipviz.claims import margin_compare  # noqa: E402

# --- valid arguments -------------------------------------------------------------------------

def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@functools.cache
def _spirals():
    return data.spirals(n_train=16, n_test=16)


def spirals():
    d = _spirals()
    return data.Dataset(d.name, d.x_train.clone(), d.y_train.clone(), d.x_test.clone(),
                        d.y_test.clone(), d.task, d.num_classes)


def small_res():
    return models.ResidualMLP(2, 3, width=4, depth=2)


def direction_of(model_factory=small_res, seed=0):
    return landscape.random_direction(model_factory(), seed=seed)


def xs(n=4, d=2):
    return torch.randn(n, d, generator=_gen(1))


def labels(n=4, k=3):
    return torch.randint(0, k, (n,), generator=_gen(2))


def axes():
    fig, ax = plt.subplots()
    return ax


def good_telescope_quiet(w):
    return 0  # an answer, right or wrong, for the checks that take a function


VALID: dict[str, Callable[[], Any]] = {
    "model": small_res, "dataset": spirals, "x": xs, "y": labels, "seed": lambda: 0,
    "direction": direction_of, "dir_x": direction_of, "dir_y": lambda: direction_of(seed=1),
    "in_dim": lambda: 2, "out_dim": lambda: 3, "width": lambda: 4, "depth": lambda: 2,
    "n": lambda: 4, "ax": axes, "values": lambda: [1.0, 2.0, 4.0, 8.0],
    "name": lambda: "x", "spec": lambda: (0, 10, 1), "settings": lambda: {"steps": 2},
    "control": lambda: ipywidgets.IntSlider(value=2, min=0, max=4),
    "controls": lambda: {"k": ipywidgets.IntSlider(value=2, min=0, max=4)}, "states": lambda: "one at a time",
}

OVERRIDES: dict[str, dict[str, Callable[[], Any]]] = {
    "data.Dataset": {"name": lambda: "mine", "x_train": xs, "y_train": labels, "x_test": xs,
                     "y_test": labels, "task": lambda: "classification", "num_classes": lambda: 3},
    "data.sine": {"n_train": lambda: 8, "n_test": lambda: 4},
    "data.spirals": {"n_train": lambda: 8, "n_test": lambda: 4},
    "data.mnist1d": {"n_train": lambda: 16},
    "data.load": {"name": lambda: "sine"},
    "models.make_activation": {"name": lambda: "relu"},
    "models.init_weights": {"init": lambda: "he"},
    "models.Dense": {"n_in": lambda: 2, "n_out": lambda: 3, "activation": lambda: "relu"},
    "models.SkipBlock1d": {"in_ch": lambda: 4, "out_ch": lambda: 4},
    "models.SkipConvNet": {"channels": lambda: 4, "depth": lambda: 2},
    "models.PreActBlock1d": {"channels": lambda: 4},
    "models.ResNet1d": {"channels": lambda: 4, "blocks": lambda: 1, "sections": lambda: 2},
    "models.DenseLayer1d": {"in_ch": lambda: 4, "growth": lambda: 2},
    "models.DenseNet1d": {"stem": lambda: 4, "growth": lambda: 2, "layers": lambda: 2,
                          "blocks": lambda: 1},
    "models.UNet1d": {"channels": lambda: 4},
    "models.TinyTransformer": {"vocab_size": lambda: 10, "seq_len": lambda: 9, "d_model": lambda: 8,
                               "depth": lambda: 1, "heads": lambda: 2},
    "models.TinyTransformerConfig": {"vocab_size": lambda: 10, "seq_len": lambda: 9, "d_model": lambda: 8,
                                     "depth": lambda: 1, "heads": lambda: 2},
    "models.TransformerBlock": {"d_model": lambda: 8, "heads": lambda: 2},
    "models.CausalSelfAttention": {"d_model": lambda: 8, "heads": lambda: 2},
    "data.sorting": {"n_train": lambda: 8, "n_test": lambda: 4},
    "training.loss_for_targets": {"out": lambda: torch.randn(4, 3, generator=_gen(3))},
    "training.fit": {"steps": lambda: 2, "batch_size": lambda: 8, "cache": lambda: False,
                     "progress": lambda: False},
    "paths.fraction_in_range": {"low": lambda: 1, "high": lambda: 3},
    "paths.deleted": {"indices": lambda: [0]},
    "paths.lesion": {"deleted_blocks": lambda: [1]},
    "paths.reordered": {"order": lambda: [1, 0]},
    "paths.kendall_tau": {"order": lambda: [1, 0, 2, 3]},
    "paths.sampled_path_gradients": {"samples": lambda: 2},
    "probes.per_layer_factor": {"values": lambda: torch.tensor([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])},
    "probes.glorot_factor": {"activation": lambda: "tanh", "init": lambda: "xavier"},
    "probes.input_gradient": {"model": lambda: models.ResidualMLP(1, 1, width=4, depth=2, norm="batch"),
                              "x": lambda: torch.linspace(-2, 2, 8).unsqueeze(1)},
    "probes.frozen_statistics": {"model": lambda: models.ResidualMLP(1, 1, width=4, depth=2, norm="batch"),
                                 "x": lambda: torch.linspace(-2, 2, 8).unsqueeze(1)},
    "probes.autocorrelation": {"g": lambda: torch.tensor([0.0, 1.0, 3.0, 2.0, 5.0]), "max_lag": lambda: 2},
    "probes.autocovariance": {"g": lambda: torch.tensor([0.0, 1.0, 3.0, 2.0, 5.0]), "max_lag": lambda: 2},
    "perturbation.stopping_rule": {"scaled_distance": lambda: 2.35},
    "perturbation.sweep": {"depths": lambda: [1, 2], "train_one": lambda: _square,
                           "progress": lambda: False},
    "plots.figure_png": {"fig": lambda: plt.figure(figsize=(1, 1))},
    "plots.loss_curves": {"histories": lambda: {"a": training.History([1, 2], [1.0, 0.5], [0.3, 0.5])}},
    "plots.sequential_colors": {"n": lambda: 3},
    "widgets.FigurePanel": {"draw": lambda: _draw, "controls": lambda: {"k": (1, 3, 1)}},
    "widgets.SkipToggles": {"model": lambda: None, "n": lambda: 3},
    "claims.claim": {"statement": lambda: "a sentence", "holds": lambda: True},
    "claims.margin_compare": {"first": lambda: 1.0, "pairs": lambda: ("<", 2.0)},
    "claims.margin_all": {"values": lambda: [margin_compare(1.0, "<", 2.0)]},
    "claims.margin_and": {"thunks": lambda: (lambda: True,)},
    "landscape.check_direction": {"name": lambda: "direction"},
    "landscape.curvature_map": {"points": lambda: 2, "lanczos_iterations": lambda: 3},
    "landscape.direction_to": {"state": lambda: models.ResidualMLP(2, 3, 4, 2, seed=1).state_dict()},
    "landscape.hessian_extremes": {"iterations": lambda: 3},
    "landscape.lanczos_extremes": {"matvec": lambda: _diag_matvec, "n": lambda: 5,
                                   "iterations": lambda: 3},
    "landscape.nonconvex_fraction": {"lambda_max": lambda: torch.tensor([[2.0, 1.0], [1.0, 3.0]]),
                                     "lambda_min": lambda: torch.tensor([[-1.0, 0.0], [0.1, 0.0]])},
    "landscape.slice_curvature": {"surface": lambda: _surface()},
    "landscape.surface_1d": {"points": lambda: 3},
    "landscape.surface_2d": {"points": lambda: 3},
    "landscape.fast.rop.hessian_operator": {"params": lambda: None, "buffers": lambda: {}},
    "exercises.check_glorot_factor": {"value": lambda: 0.0},
    "exercises.check_leaky_relu_factor": {"value": lambda: 0.0},
    "exercises.check_adam_step": {"answer": lambda: None},
    "exercises.check_block": {"block_class": lambda: None},
    "exercises.check_mean_abs_weight": {"value": lambda: 0.0},
    "exercises.check_stopping_rule": {"answer": lambda: None},
    "exercises.check_shrink_factor": {"value": lambda: 0.0},
    "exercises.UNetLevelBase": {"channels": lambda: 4},
    "exercises.dense_layers": {},
}
for _name in ("check_bn_block", "check_residual_block", "check_skip_block", "check_highway_layer",
              "check_unet_level"):
    OVERRIDES[f"exercises.{_name}"] = {"cls": lambda: None}
for _name in ("check_two_branch_paths", "check_tau_after_swaps", "check_filter_normalization",
              "check_power_iteration", "check_quiet_layer", "check_scaled_distance",
              "check_dense_block", "check_autocorrelation", "check_causal_attention", "check_pre_ln_block"):
    OVERRIDES[f"exercises.{_name}"] = {"fn": lambda: None}


def _square(depth):
    return depth * depth


def _draw(fig, k):
    fig.add_subplot().plot(range(k))


def _diag_matvec(v):
    return v * torch.arange(1.0, v.shape[-1] + 1)


@functools.cache
def _surface_cached():
    m = small_res()
    return landscape.surface_2d(m, spirals(), direction_of(), direction_of(seed=1), points=3)


def _surface():
    return _surface_cached()


def valid_arguments(qualname: str, fn: Callable) -> dict[str, Any]:
    """The keyword arguments of a valid call of fn; KeyError naming a parameter with no valid
    value known (a new public function: add it to VALID or OVERRIDES)."""
    own = OVERRIDES.get(qualname, {})
    out = {}
    for p in parameters(fn):
        if p.name in own:
            out[p.name] = own[p.name]()
        elif p.default is not inspect.Parameter.empty and p.kind != p.VAR_POSITIONAL:
            continue  # the default is valid
        elif p.name in VALID:
            out[p.name] = VALID[p.name]()
        elif p.kind == p.VAR_POSITIONAL:
            out[p.name] = ()
        else:
            raise KeyError(f"{qualname}: no valid value known for parameter {p.name!r}")
    if qualname == "landscape.fast.rop.hessian_operator":
        m = out["model"]
        out["params"] = {k: p.detach().unsqueeze(0) for k, p in m.named_parameters()}
    return out


def parameters(fn: Callable) -> list[inspect.Parameter]:
    """fn's parameters a caller fills (not **kwargs, which go on to matplotlib or a data set)."""
    return [p for p in inspect.signature(fn).parameters.values() if p.kind != p.VAR_KEYWORD]


# --- odd values ------------------------------------------------------------------------------

class _Raises:
    def __call__(self, *args, **kwargs):
        raise RuntimeError("a callable that raises")

    def __repr__(self):
        return "<callable that raises>"


def _user_net():
    torch.manual_seed(5)  # a user's model is built on the global RNG; restored by the caller's
    return nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 3))


def _one_example():
    d = spirals()
    return data.Dataset("one", d.x_train[:1], d.y_train[:1], d.x_test[:2], d.y_test[:2],
                        "classification", 3)


def _dataset_as(x_dtype=torch.float32, y_dtype=torch.long):
    d = spirals()
    return data.Dataset("cast", d.x_train.to(x_dtype), d.y_train.to(y_dtype), d.x_test.to(x_dtype),
                        d.y_test.to(y_dtype), "classification", 3)


def _with_rng_kept(factory):
    def make():
        state = torch.get_rng_state()
        try:
            return factory()
        finally:
            torch.set_rng_state(state)
    return make


# (label, factory): every value a careless or curious caller might pass anywhere.
ODD: list[tuple[str, Callable[[], Any]]] = [
    ("None", lambda: None), ("'abc'", lambda: "abc"), ("''", lambda: ""), ("[]", lambda: []),
    ("[1, 2]", lambda: [1, 2]), ("[[1.0]]", lambda: [[1.0]]), ("{}", lambda: {}),
    ("{'a': 1}", lambda: {"a": 1}), ("0", lambda: 0), ("-1", lambda: -1), ("3", lambda: 3),
    ("10**12", lambda: 10 ** 12), ("2.5", lambda: 2.5), ("-2.5", lambda: -2.5), ("1e-300", lambda: 1e-300),
    ("nan", lambda: math.nan), ("inf", lambda: math.inf), ("-inf", lambda: -math.inf),
    ("True", lambda: True), ("False", lambda: False),
    ("np.int64(2)", lambda: np.int64(2)), ("np.float32(0.5)", lambda: np.float32(0.5)),
    ("np.bool_(True)", lambda: np.bool_(True)), ("np.float64(nan)", lambda: np.float64("nan")),
    ("np.array([1., 2.])", lambda: np.array([1.0, 2.0])),
    ("torch.tensor(2)", lambda: torch.tensor(2)), ("torch.tensor(0.5)", lambda: torch.tensor(0.5)),
    ("torch.tensor(True)", lambda: torch.tensor(True)), ("torch.tensor(nan)", lambda: torch.tensor(math.nan)),
    ("torch.ones(3)", lambda: torch.ones(3)), ("float64 (2, 2)", lambda: torch.ones(2, 2, dtype=torch.float64)),
    ("empty (0, 2)", lambda: torch.zeros(0, 2)), ("half (4, 2)", lambda: torch.ones(4, 2, dtype=torch.half)),
    ("meta (4, 2)", lambda: torch.ones(4, 2, device="meta")), ("object()", lambda: object()),
    ("callable that raises", _Raises), ("lambda: None", lambda: (lambda *a, **k: None)),
    ("nn.Linear(2, 3)", _with_rng_kept(lambda: nn.Linear(2, 3))),
    ("user Sequential", _with_rng_kept(_user_net)),
    ("PlainMLP", lambda: models.PlainMLP(2, 3, width=4, depth=2)),
    ("HighwayMLP", lambda: models.HighwayMLP(2, 3, width=4, depth=2)),
    ("TelescopeMLP", lambda: models.TelescopeMLP(2, 3, width=4, depth=3)),
    ("ResNet1d 3 sections", lambda: models.ResNet1d(channels=4, blocks=1, sections=3)),
    ("DenseNet1d", lambda: models.DenseNet1d(stem=4, growth=2, layers=2, blocks=1)),
    ("UNet1d", lambda: models.UNet1d(channels=4)),
    ("SkipConvNet", lambda: models.SkipConvNet(channels=4, depth=2)),
    ("ResidualMLP batch norm", lambda: models.ResidualMLP(2, 3, 4, 2, norm="batch")),
    ("ResidualMLP float64", lambda: small_res().double()),
    ("ResidualMLP wrong size", lambda: models.ResidualMLP(5, 2, 4, 2)),
    ("ResidualMLP class", lambda: models.ResidualMLP),
    ("spirals", spirals), ("sine", lambda: data.sine(n_train=8, n_test=4)),
    ("one-example data set", _one_example),
    ("float64 data set", lambda: _dataset_as(torch.float64)),
    ("int32-label data set", lambda: _dataset_as(y_dtype=torch.int32)),
]


def variations(value: Any) -> list[tuple[str, Callable[[], Any]]]:
    """Odd values made from a valid one: other spellings of the same number, the tensor in other
    dtypes, shapes and devices, the model in other modes and precisions."""
    out = []
    if isinstance(value, bool):
        out += [("np.bool_", lambda: np.bool_(value)), ("0-d bool tensor", lambda: torch.tensor(value)),
                ("'yes'", lambda: "yes"), ("1", lambda: 1)]
    elif isinstance(value, (int, float)):
        out += [("np.int64 / np.float64 of it", lambda: np.array(value)[()]),
                ("np.float32 of it" if isinstance(value, float) else "as np.float32",
                 lambda: np.float32(value)),
                ("0-d tensor of it", lambda: torch.tensor(value)),
                ("1-element array of it", lambda: np.array([value])),
                ("its negative", lambda: -value), ("it times 1e12", lambda: value * 10 ** 12),
                ("its string", lambda: str(value))]
    elif isinstance(value, torch.Tensor):
        t = value
        out += [("as float64", lambda: t.double()), ("as half", lambda: t.half()),
                ("as int32", lambda: t.int()), ("as bool", lambda: t.bool()),
                ("as long", lambda: t.long()), ("on meta", lambda: t.to("meta")),
                ("empty", lambda: t[:0]), ("one more dim", lambda: t.unsqueeze(0)),
                ("one row", lambda: t[:1]), ("as numpy", lambda: t.numpy()),
                ("as list", lambda: t.tolist()), ("with a NaN", lambda: _with_nan(t)),
                ("needing grad", lambda: t.float().requires_grad_() if t.dim() else t.float()),
                ("(L, 1)", lambda: t.reshape(-1, 1))]
    elif isinstance(value, str):
        out += [("upper case", lambda: value.upper()), ("padded", lambda: f" {value} ")]
    elif isinstance(value, (list, tuple)) and not isinstance(value, nn.ModuleList):
        v = list(value)
        out += [("as tuple", lambda: tuple(v)), ("as numpy", lambda: _try(np.array, v)),
                ("as tensor", lambda: _try(torch.tensor, v)), ("empty", lambda: []),
                ("with None", lambda: v + [None]), ("doubled", lambda: v + v),
                ("as generator", lambda: iter(v))]
    elif isinstance(value, nn.Module):
        m = value
        out += [("in eval mode", lambda: m.eval()), ("float64", lambda: m.double()),
                ("without grad", lambda: m.requires_grad_(False))]
    elif isinstance(value, data.Dataset):
        out += [("one example", _one_example), ("float64", lambda: _dataset_as(torch.float64)),
                ("int32 labels", lambda: _dataset_as(y_dtype=torch.int32))]
    return out


def _with_nan(t):
    t = t.clone().float()
    if t.numel():
        t.view(-1)[0] = math.nan
    return t


def _try(f, v):
    try:
        return f(v)
    except Exception:
        return v
