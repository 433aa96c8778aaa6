"""What a student is likely to type wrong, into every public function: each call either raises a
SkipvizError (a ValueError or TypeError) whose message names the argument or what is allowed, or
gives a correct result. (tests/test_fuzz.py fuzzes the same contract; this table is the readable
list of the mistakes students actually make.)

The table BAD holds 207 calls that must be refused (wrong types, non-finite numbers, wrong shapes
and dtypes, numbers out of range, mismatched model and data). ACCEPTED holds 24 calls that look
odd but are right (numpy integers and floats, numpy arrays, 1-D regression targets, an instance
handed to a check) and must give the same result as the plain spelling. The remaining tests
cover state: item assignment to `model.skips`, a model edited between two `fit` calls,
unwritable and damaged caches, a reorder refused before it touches the model, widgets.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from skipviz import data, exercises, landscape, models, paths, probes, training, widgets
from skipviz.claims import claim
from skipviz.errors import SkipvizError

NAN, INF = float("nan"), float("inf")


@pytest.fixture(scope="module")
def spirals():
    return data.spirals(n_train=64, n_test=64)


@pytest.fixture(scope="module")
def sine():
    return data.sine(n_train=32, n_test=16)


def res(**kw):
    return models.ResidualMLP(2, 3, width=8, depth=3, **kw)


def spiral_set():
    return data.spirals(n_train=64, n_test=64)


def x2(n=4):
    return torch.randn(n, 2)


def labels(n=4):
    return torch.zeros(n, dtype=torch.long)


def direction(model):
    return landscape.random_direction(model)


# (label, call, pattern the ValueError must match)
BAD = [
    # data: numbers
    ("sine n_train 0", lambda: data.sine(n_train=0), "n_train"),
    ("sine n_train float", lambda: data.sine(n_train=2.5), "n_train"),
    ("sine n_train str", lambda: data.sine(n_train="10"), "n_train"),
    ("sine n_test 1", lambda: data.sine(n_test=1), "n_test"),
    ("sine noise nan", lambda: data.sine(noise=NAN), "noise"),
    ("sine noise -1", lambda: data.sine(noise=-1), "noise"),
    ("sine noise inf", lambda: data.sine(noise=INF), "noise"),
    ("sine high inf", lambda: data.sine(high=INF), "high"),
    ("sine low nan", lambda: data.sine(low=NAN), "low"),
    ("sine low > high", lambda: data.sine(low=1, high=0), "below high"),
    ("sine low str", lambda: data.sine(low="0"), "low"),
    ("sine seed -1", lambda: data.sine(seed=-1), "seed"),
    ("sine seed float", lambda: data.sine(seed=0.5), "seed"),
    ("spirals noise inf", lambda: data.spirals(noise=INF), "noise"),
    ("spirals noise nan", lambda: data.spirals(noise=NAN), "noise"),
    ("spirals classes 1", lambda: data.spirals(num_classes=1), "num_classes"),
    ("spirals classes 2.5", lambda: data.spirals(num_classes=2.5), "num_classes"),
    ("spirals turns 0", lambda: data.spirals(turns=0), "turns"),
    ("spirals turns inf", lambda: data.spirals(turns=INF), "turns"),
    ("spirals seed None", lambda: data.spirals(seed=None), "seed"),
    ("spirals n_test bool", lambda: data.spirals(n_test=True), "n_test"),
    ("mnist1d n_train huge", lambda: data.mnist1d(n_train=10**9), r"n_train.*1\.\.4000"),
    ("mnist1d n_train 0", lambda: data.mnist1d(n_train=0), "n_train"),
    ("mnist1d seed str", lambda: data.mnist1d(seed="a"), "seed"),
    ("load unknown", lambda: data.load("cifar10"), "'sine', 'mnist1d', 'spirals'|one of"),
    # data: Dataset construction
    ("Dataset classes 1", lambda: data.Dataset("d", x2(), labels(), x2(), labels(), "classification", 1), "num_classes"),
    ("Dataset classes -3", lambda: data.Dataset("d", x2(), labels(), x2(), labels(), "classification", -3), "num_classes"),
    ("Dataset classes 2.5", lambda: data.Dataset("d", x2(), labels(), x2(), labels(), "classification", 2.5), "num_classes"),
    ("Dataset classes None", lambda: data.Dataset("d", x2(), labels(), x2(), labels(), "classification"), "num_classes"),
    ("Dataset short labels", lambda: data.Dataset("d", x2(4), labels(3), x2(), labels(), "classification", 2), "one entry per row"),
    ("Dataset float labels", lambda: data.Dataset("d", x2(), torch.zeros(4), x2(), labels(), "classification", 2), "integer class labels"),
    ("Dataset label too big", lambda: data.Dataset("d", x2(), torch.full((4,), 5), x2(), labels(), "classification", 3), r"0\.\.2"),
    ("Dataset negative label", lambda: data.Dataset("d", x2(), torch.full((4,), -1), x2(), labels(), "classification", 3), r"0\.\.2"),
    ("Dataset empty train", lambda: data.Dataset("d", torch.zeros(0, 2), labels(0), x2(), labels(), "classification", 2), "at least one"),
    ("Dataset 1-D inputs", lambda: data.Dataset("d", torch.zeros(4), labels(), x2(), labels(), "classification", 2), r"\(examples, features\)"),
    ("Dataset list inputs", lambda: data.Dataset("d", [[0.0, 1.0]], labels(1), x2(), labels(), "classification", 2), "tensor or numpy"),
    ("Dataset nan inputs", lambda: data.Dataset("d", torch.full((4, 2), NAN), labels(), x2(), labels(), "classification", 2), "inf or nan"),
    ("Dataset inf targets", lambda: data.Dataset("d", x2(), torch.full((4, 1), INF), x2(), torch.zeros(4, 1), "regression"), "inf or nan"),
    ("Dataset features differ", lambda: data.Dataset("d", x2(), labels(), torch.randn(4, 3), labels(), "classification", 2), "same features"),
    ("Dataset regression classes", lambda: data.Dataset("d", x2(), torch.zeros(4, 1), x2(), torch.zeros(4, 1), "regression", 3), "no num_classes"),
    ("Dataset task", lambda: data.Dataset("d", x2(), labels(), x2(), labels(), "clustering", 2), "task"),
    ("Dataset sparse", lambda: data.Dataset("d", x2().to_sparse(), labels(), x2(), labels(), "classification", 2), "dense"),
    ("Dataset complex", lambda: data.Dataset("d", torch.zeros(4, 2, dtype=torch.complex64), labels(), x2(), labels(), "classification", 2), "real numbers"),
    ("Dataset bool labels", lambda: data.Dataset("d", x2(), torch.zeros(4, dtype=torch.bool), x2(), labels(), "classification", 2), "integer class labels"),
    ("split name", lambda: spiral_set().split("val"), "split"),
    # models
    ("PlainMLP in_dim 0", lambda: models.PlainMLP(0, 2), "in_dim"),
    ("PlainMLP width float", lambda: models.PlainMLP(2, 2, width=8.0), "width"),
    ("PlainMLP depth str", lambda: models.PlainMLP(2, 2, depth="4"), "depth"),
    ("PlainMLP seed 1.7", lambda: models.PlainMLP(2, 2, seed=1.7), "seed"),
    ("PlainMLP seed -1", lambda: models.PlainMLP(2, 2, seed=-1), "seed"),
    ("PlainMLP activation", lambda: models.PlainMLP(2, 2, activation="gelu"), "activation"),
    ("PlainMLP init", lambda: models.PlainMLP(2, 2, init="lecun"), "init"),
    ("ResidualMLP block v3", lambda: models.ResidualMLP(2, 2, block="v3"), "block"),
    ("ResidualMLP span 0", lambda: models.ResidualMLP(2, 2, span=0), "span"),
    ("ResidualMLP span 2.0", lambda: models.ResidualMLP(2, 2, span=2.0), "span"),
    ("ResidualMLP span True", lambda: models.ResidualMLP(2, 2, span=True), "span"),
    ("ResidualMLP norm layer", lambda: models.ResidualMLP(2, 2, norm="layer"), "norm"),
    ("ResidualMLP branch_scale 0", lambda: models.ResidualMLP(2, 2, branch_scale=0), "branch_scale"),
    ("ResidualMLP branch_scale nan", lambda: models.ResidualMLP(2, 2, branch_scale=NAN), "branch_scale"),
    ("ResidualMLP seed str", lambda: models.ResidualMLP(2, 2, seed="0"), "seed"),
    ("ResidualBlock block v3", lambda: models.ResidualBlock(16, block="v3"), "block"),
    ("ResidualBlock span 0", lambda: models.ResidualBlock(16, span=0), "span"),
    ("ResidualBlock norm layer", lambda: models.ResidualBlock(16, norm="layer"), "norm"),
    ("ResidualBlock width 0", lambda: models.ResidualBlock(0), "width"),
    ("ResidualBlock activation", lambda: models.ResidualBlock(16, activation="elu"), "activation"),
    ("ResidualBlock branch_scale inf", lambda: models.ResidualBlock(16, branch_scale=INF), "branch_scale"),
    ("SkipBlock1d stride 3", lambda: models.SkipBlock1d(4, 4, stride=3), "stride"),
    ("SkipBlock1d shortcut", lambda: models.SkipBlock1d(4, 8, shortcut="pad"), "shortcut"),
    ("SkipBlock1d double 4->12", lambda: models.SkipBlock1d(4, 12, shortcut="double"), "out_ch"),
    ("SkipBlock1d in_ch 0", lambda: models.SkipBlock1d(0, 4), "in_ch"),
    ("SkipConvNet depth 1", lambda: models.SkipConvNet(depth=1), "depth"),
    ("SkipConvNet in_len 1", lambda: models.SkipConvNet(in_len=1), "in_len"),
    ("SkipConvNet seed 0.5", lambda: models.SkipConvNet(seed=0.5), "seed"),
    ("SkipConvNet wrong length", lambda: models.SkipConvNet(in_len=40, depth=2)(torch.randn(2, 30)), r"\(batch, 40\)"),
    ("TelescopeMLP depth 0", lambda: models.TelescopeMLP(1, 1, depth=0), "depth"),
    ("make_activation", lambda: models.make_activation("swish"), "activation"),
    ("init_weights", lambda: models.init_weights(res(), "orthogonal"), "init"),
    # skips
    ("skips str", lambda: setattr(res(), "skips", "TTT"), "booleans"),
    ("skips short", lambda: setattr(res(), "skips", [True]), "length 3"),
    ("skips ints", lambda: setattr(res(), "skips", [1, 0, 1]), "booleans"),
    ("skips None", lambda: setattr(res(), "skips", None), "booleans"),
    ("skips[3] of 3", lambda: res().skips.__setitem__(3, False), r"0\.\.2"),
    ("skips[0] = 0", lambda: res().skips.__setitem__(0, 0), "True or False"),
    ("skips['a']", lambda: res().skips.__setitem__("a", False), "integer"),
    ("skips[1.0]", lambda: res().skips.__setitem__(1.0, False), "integer"),
    ("skips[0:2] = [False]", lambda: res().skips.__setitem__(slice(0, 2), [False]), "length 3"),
    ("del skips[0]", lambda: res().skips.__delitem__(0), "fixed"),
    ("skips.append", lambda: res().skips.append(True), "fixed"),
    ("skips_off index 3", lambda: res().skips_off([3]).__enter__(), r"0\.\.2"),
    ("skips_off float", lambda: res().skips_off([1.0]).__enter__(), "integer"),
    # training: model against data
    ("fit in_dim", lambda: training.fit(models.ResidualMLP(3, 10), spiral_set(), 5), r"in_dim=3.*\(2,\)"),
    ("fit too few outputs", lambda: training.fit(models.ResidualMLP(2, 2), spiral_set(), 5), r"out_dim=2.*3 classes"),
    ("fit too many outputs", lambda: training.fit(models.ResidualMLP(2, 5), spiral_set(), 5), r"out_dim=5.*3 classes"),
    ("fit regression outputs", lambda: training.fit(models.PlainMLP(1, 3), data.sine(n_train=8, n_test=4), 5), r"out_dim=3.*\(1,\)"),
    ("fit conv on sine", lambda: training.fit(models.SkipConvNet(depth=2), data.sine(n_train=8, n_test=4), 5), r"in_len=40.*\(1,\)"),
    ("fit custom wrong in", lambda: training.fit(nn.Linear(3, 3), spiral_set(), 5), "cannot take the inputs"),
    ("fit custom wrong out", lambda: training.fit(nn.Linear(2, 2), spiral_set(), 5), r"\(batch, 3\) logits"),
    ("fit custom regression", lambda: training.fit(nn.Linear(1, 2), data.sine(n_train=8, n_test=4), 5), r"\(2,\).*\(1,\)"),
    ("fit not a module", lambda: training.fit(lambda x: x, spiral_set(), 5), "nn.Module"),
    ("fit not a dataset", lambda: training.fit(res(), (x2(), labels()), 5), "Dataset"),
    ("fit no trainable", lambda: training.fit(res().requires_grad_(False), spiral_set(), 5), "requires_grad"),
    # training: numbers
    ("fit steps 0", lambda: training.fit(res(), spiral_set(), 0), "steps"),
    ("fit steps float", lambda: training.fit(res(), spiral_set(), 10.0), "steps"),
    ("fit lr 0", lambda: training.fit(res(), spiral_set(), 5, lr=0), "lr"),
    ("fit lr nan", lambda: training.fit(res(), spiral_set(), 5, lr=NAN), "lr"),
    ("fit lr inf", lambda: training.fit(res(), spiral_set(), 5, lr=INF), "lr"),
    ("fit lr str", lambda: training.fit(res(), spiral_set(), 5, lr="1e-3"), "lr"),
    ("fit batch 0", lambda: training.fit(res(), spiral_set(), 5, batch_size=0), "batch_size"),
    ("fit seed 1.5", lambda: training.fit(res(), spiral_set(), 5, seed=1.5), "seed"),
    ("fit seed -2", lambda: training.fit(res(), spiral_set(), 5, seed=-2), "seed"),
    ("fit seed None", lambda: training.fit(res(), spiral_set(), 5, seed=None), "seed"),
    ("fit optimizer", lambda: training.fit(res(), spiral_set(), 5, optimizer="rmsprop"), "optimizer"),
    ("fit weight_decay nan", lambda: training.fit(res(), spiral_set(), 5, weight_decay=NAN), "weight_decay"),
    ("fit weight_decay inf", lambda: training.fit(res(), spiral_set(), 5, weight_decay=INF), "weight_decay"),
    ("fit weight_decay str", lambda: training.fit(res(), spiral_set(), 5, weight_decay="0"), "weight_decay"),
    ("fit weight_decay -1", lambda: training.fit(res(), spiral_set(), 5, weight_decay=-1), "weight_decay"),
    ("fit eval_every 0", lambda: training.fit(res(), spiral_set(), 5, eval_every=0), "eval_every"),
    ("fit eval_every float", lambda: training.fit(res(), spiral_set(), 5, eval_every=2.0), "eval_every"),
    ("fit cache 'no'", lambda: training.fit(res(), spiral_set(), 5, cache="no"), "cache"),
    ("fit cache 0", lambda: training.fit(res(), spiral_set(), 5, cache=0), "cache"),
    ("fit progress 'off'", lambda: training.fit(res(), spiral_set(), 5, progress="off"), "progress"),
    ("evaluate split", lambda: training.evaluate(res(), spiral_set(), "val"), "split"),
    ("evaluate in_dim", lambda: training.evaluate(models.ResidualMLP(3, 3), spiral_set()), "in_dim=3"),
    ("evaluate outputs", lambda: training.evaluate(models.ResidualMLP(2, 2), spiral_set()), "out_dim=2"),
    # probes
    ("probe in_dim", lambda: probes.probe(models.ResidualMLP(3, 3), x2(), labels()), "in_dim=3"),
    ("probe outputs", lambda: probes.probe(models.ResidualMLP(2, 2), x2(), torch.tensor([0, 1, 2, 0])), "out_dim=2"),
    ("probe y length", lambda: probes.probe(res(), x2(4), labels(3)), "one entry per example"),
    ("probe x list", lambda: probes.probe(res(), [[0.0, 0.0]], labels(1)), "tensor"),
    ("probe y 2-D labels", lambda: probes.probe(res(), x2(), torch.zeros(4, 1, dtype=torch.long)), r"\(batch,\)"),
    ("probe regression shape", lambda: probes.probe(models.PlainMLP(1, 1, depth=2), torch.randn(4, 1), torch.randn(4, 3)), r"out_dim=1.*\(3,\)"),
    ("probe empty", lambda: probes.probe(res(), torch.zeros(0, 2), labels(0)), "at least one"),
    ("probe no layers", lambda: probes.probe(nn.Linear(2, 3), x2(), labels()), "probe_layers"),
    ("glorot activation", lambda: probes.glorot_factor("gelu", "default"), "activation"),
    ("per_layer_factor short", lambda: probes.per_layer_factor(torch.ones(3)), "at least 2"),
    ("per_layer_factor zero", lambda: probes.per_layer_factor(torch.tensor([1.0, 0.0, 1.0]), skip_ends=0), "positive"),
    ("per_layer_factor skip_ends -1", lambda: probes.per_layer_factor(torch.ones(9), skip_ends=-1), "skip_ends"),
    # paths
    ("path_counts -1", lambda: paths.path_counts(-1), "n"),
    ("path_counts float", lambda: paths.path_counts(5.0), "n"),
    ("fraction range", lambda: paths.fraction_in_range(10, 5, 11), "high must be an integer in 5..10"),
    ("central_range mass 0", lambda: paths.central_range(10, 0), "mass"),
    ("lesion index", lambda: paths.lesion(res(), spiral_set(), [3]), r"0\.\.2"),
    ("lesion float index", lambda: paths.lesion(res(), spiral_set(), [1.0]), "integer"),
    ("lesion int not list", lambda: paths.lesion(res(), spiral_set(), 1), "deleted_blocks must be a list of integers"),
    ("lesion regression", lambda: paths.lesion(models.ResidualMLP(1, 1, depth=2), data.sine(n_train=8, n_test=4), [0]), "classification"),
    ("lesion model/data", lambda: paths.lesion(models.ResidualMLP(3, 3), spiral_set(), [0]), "in_dim=3"),
    ("lesion plain first layer", lambda: paths.lesion(models.PlainMLP(2, 3, depth=3), spiral_set(), [0]), r"1\.\.2"),
    ("reordered float", lambda: paths.reordered(res(), [1, 0.0, 2]).__enter__(), "integer"),
    ("reordered repeat", lambda: paths.reordered(res(), [0, 0, 1]).__enter__(), "permutation"),
    ("reordered short", lambda: paths.reordered(res(), [0, 1]).__enter__(), "permutation"),
    ("reordered range", lambda: paths.reordered(res(), [0, 1, 3]).__enter__(), r"0\.\.2"),
    ("reordered str", lambda: paths.reordered(res(), "012").__enter__(), "list"),
    ("reordered conv", lambda: paths.reordered(models.SkipConvNet(depth=2), [1, 0]).__enter__(), "cannot be reordered"),
    ("path gradient plain", lambda: paths.gradient_by_path_length(models.PlainMLP(2, 3), x2(), labels()), "must be a skipviz ResidualMLP, SkipConvNet or ResNet1d"),
    ("path gradient in_dim", lambda: paths.gradient_by_path_length(models.ResidualMLP(3, 3), x2(), labels()), "in_dim=3"),
    ("path gradient outputs", lambda: paths.gradient_by_path_length(models.ResidualMLP(2, 2), x2(), torch.tensor([0, 1, 2, 0])), "out_dim=2"),
    ("path gradient y length", lambda: paths.gradient_by_path_length(res(), x2(4), labels(2)), "one entry per example"),
    ("sampled samples 0", lambda: paths.sampled_path_gradients(res(), x2(), labels(), samples=0), "samples"),
    ("sampled length", lambda: paths.sampled_path_gradients(res(), x2(), labels(), lengths=[4]), r"0\.\.3"),
    ("sampled seed", lambda: paths.sampled_path_gradients(res(), x2(), labels(), seed=-1), "seed"),
    ("kendall short", lambda: paths.kendall_tau([0]), "at least 2"),
    # landscape
    ("direction normalize", lambda: landscape.random_direction(res(), normalize="unit"), "normalize"),
    ("direction ignore", lambda: landscape.random_direction(res(), ignore="bn"), "ignore"),
    ("direction seed", lambda: landscape.random_direction(res(), seed=1.5), "seed"),
    ("surface_1d tensor", lambda: landscape.surface_1d(res(), spiral_set(), torch.zeros(3)), "list of"),
    ("surface_1d short", lambda: landscape.surface_1d(res(), spiral_set(), direction(res())[:2]), "one tensor per parameter"),
    ("surface_1d nan", lambda: landscape.surface_1d(res(), spiral_set(), [d * NAN for d in direction(res())]), "inf or nan"),
    ("surface_1d shape", lambda: landscape.surface_1d(res(), spiral_set(), direction(models.ResidualMLP(2, 3, width=4, depth=3))), "shape of model's parameter"),
    ("surface_1d method", lambda: landscape.surface_1d(res(), spiral_set(), direction(res()), method="fast"), "method"),
    ("surface_1d points 1", lambda: landscape.surface_1d(res(), spiral_set(), direction(res()), points=1), "points"),
    ("surface_1d span 0", lambda: landscape.surface_1d(res(), spiral_set(), direction(res()), span=0), "span"),
    ("surface_1d split", lambda: landscape.surface_1d(res(), spiral_set(), direction(res()), split="val"), "split"),
    ("surface_1d model/data", lambda: landscape.surface_1d(models.ResidualMLP(2, 2, width=8, depth=3), spiral_set(), direction(models.ResidualMLP(2, 2, width=8, depth=3))), "out_dim=2"),
    ("surface_1d cache 'no'", lambda: landscape.surface_1d(res(), spiral_set(), direction(res()), cache="no"), "cache"),
    ("surface_2d chunk 0", lambda: landscape.surface_2d(res(), spiral_set(), direction(res()), direction(res()), chunk_size=0), "chunk_size"),
    ("surface_2d model/data", lambda: landscape.surface_2d(models.ResidualMLP(3, 3, width=8, depth=3), spiral_set(), direction(models.ResidualMLP(3, 3, width=8, depth=3)), direction(models.ResidualMLP(3, 3, width=8, depth=3))), "in_dim=3"),
    ("surface_2d dir_y None", lambda: landscape.surface_2d(res(), spiral_set(), direction(res()), None), "dir_y"),
    ("hessian iterations 1", lambda: landscape.hessian_extremes(res(), spiral_set(), iterations=1), "iterations"),
    ("hessian tol 0", lambda: landscape.hessian_extremes(res(), spiral_set(), tol=0), "tol"),
    ("hessian seed", lambda: landscape.hessian_extremes(res(), spiral_set(), seed=0.5), "seed"),
    ("hessian model/data", lambda: landscape.hessian_extremes(models.ResidualMLP(2, 2, width=8, depth=3), spiral_set()), "out_dim=2"),
    ("hessian batch 0", lambda: landscape.hessian_extremes(res(), spiral_set(), batch_size=0), "batch_size"),
    ("curvature lanczos 1", lambda: landscape.curvature_map(res(), spiral_set(), direction(res()), direction(res()), lanczos_iterations=1), "lanczos_iterations"),
    ("curvature model/data", lambda: landscape.curvature_map(models.ResidualMLP(3, 3, width=8, depth=3), spiral_set(), direction(models.ResidualMLP(3, 3, width=8, depth=3)), direction(models.ResidualMLP(3, 3, width=8, depth=3))), "in_dim=3"),
    ("direction_to missing", lambda: landscape.direction_to(res(), {}), "state must hold"),
    # widgets
    ("control step 0", lambda: widgets.make_control("a", (0, 1, 0)), "0 < step"),
    ("control step -1", lambda: widgets.make_control("a", (0, 10, -1)), "0 < step"),
    ("control nan bound", lambda: widgets.make_control("a", (0.0, NAN, 0.1)), "finite"),
    ("control inf bound", lambda: widgets.make_control("a", (0, INF, 1)), "finite"),
    ("control low == high", lambda: widgets.make_control("a", (1, 1, 1)), "min < max"),
    ("control value outside", lambda: widgets.make_control("a", (0, 10, 1, 11)), "min <= value <= max"),
    ("control empty list", lambda: widgets.make_control("a", []), "non-empty list"),
    ("control dict", lambda: widgets.make_control("a", {"x": 1}), "must be a widget"),
    ("toggles nothing", lambda: widgets.SkipToggles(), "give a model"),
    ("toggles plain model", lambda: widgets.SkipToggles(models.PlainMLP(2, 3)), "no skip connections"),
    ("toggles n mismatch", lambda: widgets.SkipToggles(res(), n=4), "n must equal"),
    ("toggles preset length", lambda: widgets.SkipToggles(res(), presets={"all": lambda k: [True] * (k + 1)}), r"presets\['all'\]"),
    ("toggles preset raises", lambda: widgets.SkipToggles(res(), presets={"bad": lambda k: 1 / 0}), r"presets\['bad'\] failed"),
    ("toggles preset ints", lambda: widgets.SkipToggles(res(), presets={"ints": lambda k: [1] * k}), "booleans"),
    ("toggles set short", lambda: widgets.SkipToggles(res()).set([True]), "length 3"),
    ("toggles set str", lambda: widgets.SkipToggles(res()).set("TTT"), "booleans"),
    ("toggles labels", lambda: widgets.SkipToggles(res(), labels=["a"]), "labels"),
    # exercises and claims
    ("check_block kind", lambda: exercises.check_block(nn.Linear, block="v4"), "block"),
    ("check_block width", lambda: exercises.check_block(nn.Linear, width=1), "width"),
    ("check_block seed", lambda: exercises.check_block(nn.Linear, seed=-1), "seed"),
    ("check_block seed float", lambda: exercises.check_block(nn.Linear, seed=0.5), "seed"),
    ("claim empty", lambda: claim("", True), "statement"),
    ("claim many values", lambda: claim("all large", torch.ones(3) > 0), "holds must be a truth value"),
]


def test_the_table_counts_what_the_docstring_says():
    assert len(BAD) == 207 and len(ACCEPTED) == 24


@pytest.mark.parametrize("call, match", [(c, m) for _, c, m in BAD], ids=[label for label, _, _ in BAD])
def test_refused_with_a_clear_error(call, match):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SkipvizError, match=match):
            call()


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, data.Dataset):
        return a.fingerprint() == b.fingerprint()
    if isinstance(a, nn.Module):
        return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    return a == b


# (label, odd call, plain call): both must succeed and give the same result.
ACCEPTED = [
    ("numpy int sizes", lambda: models.PlainMLP(np.int64(40), np.int32(10)), lambda: models.PlainMLP(40, 10)),
    ("numpy int depth", lambda: models.ResidualMLP(2, 3, depth=np.int64(4)), lambda: models.ResidualMLP(2, 3, depth=4)),
    ("numpy int span", lambda: models.ResidualMLP(2, 3, span=np.int64(1)), lambda: models.ResidualMLP(2, 3, span=1)),
    ("numpy int seed", lambda: models.ResidualMLP(2, 3, seed=np.int64(3)), lambda: models.ResidualMLP(2, 3, seed=3)),
    ("numpy float scale", lambda: models.ResidualMLP(2, 3, branch_scale=np.float32(0.5)), lambda: models.ResidualMLP(2, 3, branch_scale=0.5)),
    ("numpy int conv", lambda: models.SkipConvNet(channels=np.int64(4), depth=np.int64(2)), lambda: models.SkipConvNet(channels=4, depth=2)),
    ("numpy int n_train", lambda: data.sine(n_train=np.int64(16)), lambda: data.sine(n_train=16)),
    ("numpy float noise", lambda: data.sine(noise=np.float64(0.1)), lambda: data.sine(noise=0.1)),
    ("numpy float bounds", lambda: data.sine(low=np.float32(-1.0), high=np.float64(1.0)), lambda: data.sine(low=-1.0, high=1.0)),
    ("numpy int classes", lambda: data.spirals(num_classes=np.int64(4)), lambda: data.spirals(num_classes=4)),
    ("numpy int mnist n_train", lambda: data.mnist1d(n_train=np.int64(100)), lambda: data.mnist1d(n_train=100)),
    ("numpy arrays in Dataset",
     lambda: data.Dataset("d", np.ones((4, 2)), np.zeros(4, dtype=np.int64), np.ones((2, 2)), np.zeros(2, dtype=np.int64), "classification", np.int64(2)),
     lambda: data.Dataset("d", torch.ones(4, 2), torch.zeros(4, dtype=torch.long), torch.ones(2, 2), torch.zeros(2, dtype=torch.long), "classification", 2)),
    ("float64 inputs", lambda: data.Dataset("d", torch.ones(4, 2, dtype=torch.float64), labels(), x2(2).zero_(), labels(2), "classification", 2),
     lambda: data.Dataset("d", torch.ones(4, 2), labels(), torch.zeros(2, 2), labels(2), "classification", 2)),
    ("int32 labels", lambda: data.Dataset("d", torch.ones(4, 2), torch.zeros(4, dtype=torch.int32), torch.ones(2, 2), labels(2), "classification", 2),
     lambda: data.Dataset("d", torch.ones(4, 2), labels(), torch.ones(2, 2), labels(2), "classification", 2)),
    ("1-D regression targets", lambda: data.Dataset("d", torch.ones(4, 1), torch.zeros(4), torch.ones(2, 1), torch.zeros(2), "regression"),
     lambda: data.Dataset("d", torch.ones(4, 1), torch.zeros(4, 1), torch.ones(2, 1), torch.zeros(2, 1), "regression")),
    ("numpy int fit args", lambda: training.fit(res(), spiral_set(), np.int64(5), batch_size=np.int64(16), seed=np.int64(1), cache=False, progress=False).train_loss,
     lambda: training.fit(res(), spiral_set(), 5, batch_size=16, seed=1, cache=False, progress=False).train_loss),
    ("numpy float lr", lambda: training.fit(res(), spiral_set(), 5, lr=np.float32(1e-2), cache=np.bool_(False), progress=False).train_loss,
     lambda: training.fit(res(), spiral_set(), 5, lr=float(np.float32(1e-2)), cache=False, progress=False).train_loss),
    ("numpy lesion index", lambda: paths.lesion(res(), spiral_set(), [np.int64(1)]), lambda: paths.lesion(res(), spiral_set(), [1])),
    ("negative skip index", lambda: _set_skip(-1), lambda: _set_skip(2)),
    ("numpy skip index", lambda: _set_skip(np.int64(1)), lambda: _set_skip(1)),
    ("numpy bool skip", lambda: _set_skip(0, np.bool_(False)), lambda: _set_skip(0, False)),
    ("tuple reorder", lambda: _reordered_output((2, 1, 0)), lambda: _reordered_output([2, 1, 0])),
    ("numpy seed direction", lambda: landscape.random_direction(res(), seed=np.int64(2))[0], lambda: landscape.random_direction(res(), seed=2)[0]),
    ("numpy slider bounds", lambda: widgets.make_control("a", (0, 10, 1, 3)).value, lambda: 3),
]


def _set_skip(index, value=False):
    net = res()
    net.skips[index] = value
    return list(net.skips)


def _reordered_output(order):
    net, x = res(), x2()
    with paths.reordered(net, order):
        return net(x)


@pytest.mark.parametrize("odd, plain", [(o, p) for _, o, p in ACCEPTED], ids=[label for label, _, _ in ACCEPTED])
def test_accepted_and_correct(odd, plain):
    torch.manual_seed(0)
    a = odd()
    torch.manual_seed(0)
    assert same(a, plain())


# ---------------------------------------------------------------------------- state


def test_skips_item_assignment_writes_through_and_is_checked():
    net = models.ResidualMLP(2, 3, width=8, depth=5)
    x = x2()
    before = net(x)
    net.skips[3] = False
    assert net.skips == [True, True, True, False, True] and net._skips[3] is False
    with net.skips_off([0]):
        assert not torch.equal(net(x), before)
    assert net.skips == [True, True, True, False, True]
    net.skips[3] = True
    assert torch.equal(net(x), before)
    net.skips[1:3] = [False, False]
    assert list(net.skips) == [True, False, False, True, True]
    copy = list(net.skips)
    net.skips = [True] * 5
    assert copy == [True, False, False, True, True]  # list() is a copy, the view is live


def test_editing_a_model_class_changes_the_cache_key(spirals):
    settings = dict(steps=5, lr=1e-3, batch_size=8, seed=0, optimizer="adam", weight_decay=0.0, eval_every=1)

    def make_class(with_skip: bool):
        class Net(nn.Module):  # the same name twice, as when a notebook cell is edited and rerun
            def __init__(self):
                super().__init__()
                torch.manual_seed(0)
                self.a, self.b = nn.Linear(2, 8), nn.Linear(8, 3)

            if with_skip:
                def forward(self, x):
                    h = torch.relu(self.a(x))
                    return self.b(h + torch.relu(h))
            else:
                def forward(self, x):
                    return self.b(torch.relu(self.a(x)))
        return Net

    old, new = make_class(False)(), make_class(True)()
    assert all(torch.equal(p, q) for p, q in zip(old.state_dict().values(), new.state_dict().values()))
    assert training.cache_key(old, spirals, settings) != training.cache_key(new, spirals, settings)
    h_old = training.fit(old, spirals, 5, progress=False)
    h_new = training.fit(make_class(True)(), spirals, 5, progress=False)
    assert not h_new.from_cache and h_new.train_loss != h_old.train_loss
    assert training.fit(make_class(True)(), spirals, 5, progress=False).from_cache

    frozen = make_class(False)()
    frozen.a.weight.requires_grad_(False)
    assert training.cache_key(frozen, spirals, settings) != training.cache_key(make_class(False)(), spirals, settings)


def test_a_helper_function_edited_changes_the_cache_key(spirals):
    settings = dict(steps=5, lr=1e-3, batch_size=8, seed=0, optimizer="adam", weight_decay=0.0, eval_every=1)
    namespace: dict = {"nn": nn, "torch": torch}
    source = """
def act(h):
    return torch.relu(h){}

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = nn.Linear(2, 3)

    def forward(self, x):
        return act(self.a(x))
"""
    exec(source.format(""), namespace)
    first = training.cache_key(namespace["Net"](), spirals, settings)
    exec(source.format(" * 2"), namespace)
    assert training.cache_key(namespace["Net"](), spirals, settings) != first


def test_a_read_only_cache_folder_warns_once_and_keeps_the_result(tmp_path, monkeypatch, spirals):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    monkeypatch.setenv("SKIPVIZ_CACHE", str(folder / "cache"))
    try:
        if os.access(folder, os.W_OK):  # root ignores permission bits: use a path under a file
            (tmp_path / "file").write_text("")
            monkeypatch.setenv("SKIPVIZ_CACHE", str(tmp_path / "file" / "cache"))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            net = res()
            h = training.fit(net, spirals, 20, progress=False)
            h2 = training.fit(res(seed=1), spirals, 20, progress=False)
        assert math.isfinite(h.final_train_loss) and math.isfinite(h2.final_train_loss)
        cache_warnings = [w for w in caught if "cannot write to its cache folder" in str(w.message)]
        assert len(cache_warnings) == 1
    finally:
        folder.chmod(0o700)


def test_a_tilde_in_the_cache_setting_is_expanded(monkeypatch, tmp_path):
    from skipviz import settings
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SKIPVIZ_CACHE", "~/skipviz-cache")
    assert settings.cache_dir() == tmp_path / "skipviz-cache"


def _damage_weights(path):
    record = torch.load(path, weights_only=True)
    name = next(iter(record["state_dict"]))
    record["state_dict"][name] = record["state_dict"][name].clone()
    record["state_dict"][name].view(-1)[0] += 1e-3  # a flipped bit's worth, checksum kept
    torch.save(record, path)


def _nan_weights(path):
    from skipviz import _cache
    record = torch.load(path, weights_only=True)
    for t in record["state_dict"].values():
        t.fill_(NAN)
    blob = {k: v for k, v in record.items() if k not in ("format", "key", "checksum")}
    record["checksum"] = _cache.checksum(blob)  # a consistent file with NaN weights
    torch.save(record, path)


def _sparse_weights(path):
    record = torch.load(path, weights_only=True)
    name = next(k for k, v in record["state_dict"].items() if v.dim() == 2)
    record["state_dict"][name] = record["state_dict"][name].to_sparse()
    torch.save(record, path)


def _zeros_inside(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 256] = bytes(256)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("damage", [_damage_weights, _nan_weights, _sparse_weights, _zeros_inside],
                         ids=["changed weight", "nan weights", "sparse tensor", "zeroed bytes"])
def test_a_damaged_weight_file_is_ignored_retrained_and_replaced(spirals, damage):
    first = training.fit(res(), spirals, 20, progress=False)
    (path,) = (training.cache_dir() / "models").glob("*.pt")
    damage(path)
    with pytest.warns(UserWarning, match="ignoring cache file"):
        again = training.fit(res(), spirals, 20, progress=False)
    assert not again.from_cache and again.train_loss == first.train_loss
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file was replaced: no second warning
        assert training.fit(res(), spirals, 20, progress=False).from_cache


@pytest.mark.parametrize("damage", [pytest.param("zeros", marks=pytest.mark.slow), "labels",
                                    pytest.param("shape", marks=pytest.mark.slow)])
def test_a_damaged_mnist1d_file_is_rebuilt(damage):
    from skipviz import _cache
    good = data.mnist1d()
    (path,) = training.cache_dir().glob("mnist1d-*.pt")
    if damage == "zeros":
        raw = bytearray(path.read_bytes())
        raw[100_000:100_000 + 65_536] = bytes(65_536)
        path.write_bytes(bytes(raw))
    else:  # a file that is consistent (its checksum fits) but holds the wrong data
        record = torch.load(path, weights_only=True)
        t = record["tensors"]
        if damage == "labels":
            t["y"] = torch.full_like(t["y"], 11)
        else:
            t["x"] = t["x"][:, :30].contiguous()
        _cache.save(path, record["key"], record["format"], {"tensors": t})
    with pytest.warns(UserWarning, match="ignoring unreadable MNIST-1D cache"):
        again = data.mnist1d()
    assert again.fingerprint() == good.fingerprint()


def test_a_diverging_run_warns_and_is_not_cached(spirals):
    with pytest.warns(UserWarning, match="training diverged"):
        h = training.fit(res(), spirals, 30, lr=1e6, progress=False)
    assert not math.isfinite(h.final_train_loss)
    assert not list((training.cache_dir() / "models").glob("*.pt"))


def test_reorder_is_refused_before_it_touches_the_model():
    net = res()
    blocks = list(net.blocks)
    with pytest.raises(ValueError):
        paths.reordered(net, [1, 0.0, 2]).__enter__()
    assert list(net.blocks) == blocks


def test_check_block_handles_instances_in_place_writes_and_stubs():
    class Inplace(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)

        def forward(self, x):
            x += torch.relu(self.fc2(torch.relu(self.fc1(x))))
            return x

    class Stub(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)

        def forward(self, x):
            raise NotImplementedError()

    # x += F(x) computes the right numbers, but overwrites the input that fc1 saved for backward():
    # training would fail, and the check says so (in the instance's own width too).
    for answer in (Inplace, Inplace(16), Inplace(8)):
        result = exercises.check_block(answer)
        assert not result.ok and "in-place write" in result.message
    result = exercises.check_block(Stub)
    assert not result.ok and "not done yet" in result.message
    for wrong in (None, 3, "MyBlock", torch.zeros(3)):
        result = exercises.check_block(wrong)
        assert not result.ok and result.message.startswith("pass your block's class")
    result = exercises.check_block(int)
    assert not result.ok and "nn.Module" in result.message


def test_a_draw_function_that_raises_shows_the_error_and_clears_the_status():
    def draw(fig, flag):
        if not flag:
            raise KeyError("no such curve")
        fig.add_subplot().plot([0, 1])

    panel = widgets.FigurePanel(draw, {"flag": True})
    good = panel.image.value
    panel.controls["flag"].value = False
    assert isinstance(panel.error, KeyError) and panel.status.value == ""
    assert panel.image.value != good and panel.redraw_count == 2
    panel.controls["flag"].value = True
    assert panel.error is None and panel.image.value == good


def test_skip_toggles_follow_a_change_made_elsewhere():
    net = res()
    toggles = widgets.SkipToggles(net)
    net.skips = [False, True, False]
    toggles.refresh()
    assert toggles.value == [False, True, False] and [b.value for b in toggles.buttons] == [False, True, False]
    net.skips[1] = False
    toggles.refresh()
    assert toggles.value == [False, False, False]
    toggles.buttons[2].value = True
    assert net.skips == [False, False, True]


def test_skip_toggles_poll_the_model_on_a_running_event_loop(monkeypatch):
    import asyncio

    monkeypatch.setattr(widgets.SkipToggles, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(widgets.SkipToggles, "_open", lambda self: True)  # as in a kernel

    async def scenario():
        net = res()
        toggles = widgets.SkipToggles(net)
        net.skips = [False, True, False]
        await asyncio.sleep(0.1)
        return toggles.value

    assert asyncio.run(scenario()) == [False, True, False]
