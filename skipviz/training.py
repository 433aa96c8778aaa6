"""Training with Adam or SGD, deterministic for a seed, with a disk cache of trained weights (on by
default, `cache=True`)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from . import _cache
from ._validation import (
    check_bool,
    check_choice,
    check_int,
    check_model,
    check_number,
    check_positive,
    check_seed,
    show,
)
from .data import IGNORE, Dataset, lowest_label
from .errors import SkipvizError, SkipvizTypeError, SkipvizValueError
from .fingerprints import CACHE_FORMAT, cache_key
from .models import ModelConfig
from .settings import cache_dir, progress_bars

__all__ = ["OPTIMIZERS", "History", "eval_mode", "evaluate", "fit", "loss_for_targets"]

OPTIMIZERS = ("adam", "sgd")


@dataclass
class History:
    """What happened during `fit`, one entry per evaluation point.

    steps: optimizer steps done at each point; train_loss: mean minibatch loss over the steps
    since the previous point; test_metric: test accuracy (classification, 0..1) or test MSE
    (regression) at that point. final_train_loss / final_test_metric: on the whole sets at the end.
    """

    steps: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    test_metric: list[float] = field(default_factory=list)
    metric_name: str = "accuracy"
    final_train_loss: float = float("nan")
    final_test_metric: float = float("nan")
    from_cache: bool = False

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("from_cache")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> History:
        h = cls(steps=[int(s) for s in d["steps"]], train_loss=[float(v) for v in d["train_loss"]],
                test_metric=[float(v) for v in d["test_metric"]], metric_name=str(d["metric_name"]),
                final_train_loss=float(d["final_train_loss"]),
                final_test_metric=float(d["final_test_metric"]), from_cache=True)
        if not len(h.steps) == len(h.train_loss) == len(h.test_metric):
            raise SkipvizValueError("history lists of unequal length")
        return h


def loss_for_targets(out: torch.Tensor, y: torch.Tensor, points: bool = False) -> torch.Tensor:
    """The loss of every skipviz model: mean cross-entropy when y holds integer class labels (n,)
    for out (n, classes), or (n, positions) for out (n, positions, classes) with the positions
    labelled data.IGNORE left out; mean squared error over all entries for float targets (n, ...).
    out (n, ...) -> a scalar; with points=True, out (P, n, ...) holds the outputs of P weight
    vectors on the same batch -> (P,), the loss of each."""
    points = check_bool("points", points)
    for name, t in (("out", out), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise SkipvizTypeError(f"{name} must be a torch tensor; got {show(t)}")
    if not out.is_floating_point():
        raise SkipvizValueError(f"out must hold floating-point model outputs; got {out.dtype}")
    lead = out.shape[1:] if points else out.shape
    if y.is_floating_point():
        if tuple(lead) != tuple(y.shape) or out.dtype != y.dtype:
            raise SkipvizValueError(f"y (float targets, {y.dtype} {tuple(y.shape)}) must match out per "
                                    f"example ({out.dtype} {tuple(lead)})")
    elif y.dtype != torch.int64 or y.dim() not in (1, 2) or len(lead) != y.dim() + 1 \
            or tuple(lead[:-1]) != tuple(y.shape) or out.device != y.device \
            or (y.numel() and not lowest_label(y) <= int(y.min()) <= int(y.max()) < lead[-1]):
        raise SkipvizValueError(f"y must be int64 class labels (n,) in 0..classes-1 for out of shape (n, "
                                f"classes), labels (n, positions) (or IGNORE = {IGNORE}) for out of shape "
                                f"(n, positions, classes), or float targets of out's shape; got y {y.dtype} "
                                f"{tuple(y.shape)} and out {tuple(out.shape)}{' (points)' if points else ''}")
    if y.is_floating_point():
        return (out - y).pow(2).flatten(1).mean(1) if points else nn.functional.mse_loss(out, y)
    if y.dim() == 2:
        if not (y != IGNORE).any():
            raise SkipvizValueError(f"y must score at least one position; every label is IGNORE ({IGNORE})")
        if points:  # (P, n, T, C) -> (P, C, n T), the layout cross_entropy is fast with
            each = nn.functional.cross_entropy(out.flatten(1, 2).transpose(1, 2), y.flatten().expand(len(out), -1),
                                               ignore_index=IGNORE, reduction="none")
            return each.sum(1) / (y != IGNORE).sum()
        return nn.functional.cross_entropy(out.flatten(0, 1), y.flatten(), ignore_index=IGNORE)
    if points:
        # Classes along dim 1, (P, classes, n): ten times faster on CPU than classes last.
        return nn.functional.cross_entropy(out.transpose(1, 2), y.expand(len(out), -1),
                                           reduction="none").mean(1)
    return nn.functional.cross_entropy(out, y)


def check_fits(model: nn.Module, dataset: Dataset) -> None:
    """Raise one SkipvizValueError naming both sizes unless `model` maps the data set's inputs to
    outputs its targets fit: (n, num_classes) logits for classification, the targets' shape for
    regression. Every function that runs a model on a data set calls this first.

    skipviz models are checked against their constructor's sizes (in_dim / in_len, out_dim /
    num_classes); any other module by one forward pass on two examples in eval mode.
    """
    check_model("model", model)
    if not isinstance(dataset, Dataset):
        raise SkipvizTypeError(f"dataset must be a skipviz Dataset (see skipviz.data); got {show(dataset)}")
    check_input_fits(model, dataset.x_train[:2], dataset.y_train[:2], f"dataset {dataset.name!r}",
                     dataset.num_classes)


def check_input_fits(model: nn.Module, x: torch.Tensor, y: torch.Tensor, what: str = "x",
                     num_classes: int | None = None) -> None:
    """`check_fits` for a batch: inputs x (batch, ...) and targets y (int64 labels (batch,) or
    float targets of the output's shape), on the CPU, finite, of the model's dtype. With
    num_classes the model must give exactly that many logits; without, more than the largest
    label in y. `what` names x in messages ('x', or the data set)."""
    name = type(model).__name__
    xs, ys = ("x", "y") if what == "x" else (f"the inputs of {what}", f"the targets of {what}")
    check_inputs(model, x, xs)
    if not isinstance(y, torch.Tensor):
        raise SkipvizTypeError(f"{ys} must be a torch tensor; got {show(y)}")
    if y.device.type != "cpu":
        raise SkipvizValueError(f"{ys} must be on the CPU; got a tensor on {y.device}")
    if y.dim() == 0:
        raise SkipvizValueError(f"{xs} and {ys} must have one entry per example; got shapes "
                                f"{tuple(x.shape)} and {tuple(y.shape)}")
    if len(x) != len(y):
        raise SkipvizValueError(f"{xs} and {ys} must have one entry per example; got {len(x)} and {len(y)}")
    classification = not y.is_floating_point()
    if classification and y.dtype != torch.int64:
        raise SkipvizValueError(f"{ys} must be int64 class labels (or float targets); got {y.dtype}: "
                                "convert with y.long()")
    if not classification and (y.dtype != x.dtype or not torch.isfinite(y).all()):
        raise SkipvizValueError(f"{ys} must be finite {x.dtype} targets like {xs}; got {y.dtype}"
                                + ("" if torch.isfinite(y).all() else " holding inf or nan"))
    if not classification and y.dim() < 2:
        raise SkipvizValueError(f"{ys} holds float targets of shape {tuple(y.shape)}: regression targets need "
                                "shape (batch, outputs), and class labels must be int64")
    if classification and y.dim() not in (1, 2):
        raise SkipvizValueError(f"integer labels {ys} must have shape (batch,), or (batch, positions) for a "
                                f"sequence model; got {tuple(y.shape)}")
    if classification and y.min() < lowest_label(y):
        raise SkipvizValueError(f"{ys} must hold class labels >= 0{' or IGNORE' if y.dim() == 2 else ''}; "
                                f"got {int(y.min())}")
    config = getattr(model, "config", None)
    sized = isinstance(config, ModelConfig)
    key, takes = config.input_size() if sized else ("", None)
    if sized and (x.dim() != 2 or x.shape[1] != takes):
        raise SkipvizValueError(f"model {name}({key}={takes}) takes inputs of {takes} features, but {xs} has "
                                f"shape {tuple(x.shape[1:])} per example")
    classes = num_classes if num_classes is not None else (int(y.max()) + 1 if classification else None)
    if sized:
        key, gives = config.output_size()
        if not classification and y.dim() != 2:
            raise SkipvizValueError(f"{ys} must have shape (batch, {gives}) for model {name}: one target per "
                                    f"output; got {tuple(y.shape)}")
        positions = config.label_shape()
        if classification and tuple(y.shape[1:]) != positions:
            want = f"(batch, {positions[0]}): one label per position" if positions else "(batch,): one label per example"
            raise SkipvizValueError(f"model {name}({key}={gives}) needs labels {ys} of shape {want}; "
                                    f"got {tuple(y.shape)}")
        wanted = classes if classification else y.shape[1]
        if classification and (gives != wanted if num_classes is not None else gives < wanted):
            raise SkipvizValueError(f"model {name}({key}={gives}) has {gives} outputs, but {ys} has {wanted} "
                                    f"classes: it needs {key}={wanted}")
        if not classification and gives != wanted:
            raise SkipvizValueError(f"model {name}({key}={gives}) has {gives} outputs, but {ys} "
                                    f"have shape {tuple(y.shape[1:])} per example: a regression needs "
                                    f"{key} = {wanted}")
        return
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(x[:2])
    except SkipvizError:
        raise
    except Exception as err:
        raise SkipvizValueError(f"model {name} cannot take {xs} (shape {tuple(x.shape[1:])} per "
                         f"example): {type(err).__name__}: {err}") from None
    if not isinstance(out, torch.Tensor):
        raise SkipvizValueError(f"model {name} must return a tensor; it returned {type(out).__name__}")
    if classification:
        if out.dim() != y.dim() + 1 or tuple(out.shape[1:-1]) != tuple(y.shape[1:]) \
                or (out.shape[-1] != classes if num_classes is not None else out.shape[-1] < classes):
            want = f"(batch, {y.shape[1]}, {classes})" if y.dim() == 2 else f"(batch, {classes})"
            raise SkipvizValueError(f"model {name} gives outputs of shape {tuple(out.shape[1:])} per example, but "
                             f"{ys} has {classes} classes: a classifier must give {want} logits")
    elif tuple(out.shape[1:]) != tuple(y.shape[1:]):
        raise SkipvizValueError(f"model {name} gives outputs of shape {tuple(out.shape[1:])} per example, but "
                         f"{ys} have shape {tuple(y.shape[1:])}")


def check_inputs(model: nn.Module, x: torch.Tensor, name: str = "x") -> None:
    """Raise unless x (batch, ...) is a finite CPU tensor of at least one example, of the dtype
    of model's weights (which `check_model` checks first)."""
    dtype = check_model("model", model)
    if not isinstance(x, torch.Tensor):
        raise SkipvizTypeError(f"{name} must be a torch tensor; got {show(x)}")
    if x.device.type != "cpu":
        raise SkipvizValueError(f"{name} must be on the CPU; got a tensor on {x.device}")
    if x.dim() < 2 or len(x) == 0:
        raise SkipvizValueError(f"{name} must have shape (batch, ...) with at least one example; got "
                                f"shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise SkipvizValueError(f"{name} must hold floating-point values; got {x.dtype}")
    if dtype is not None and x.dtype != dtype:
        raise SkipvizValueError(
            f"{name} has dtype {x.dtype} but model's weights have {dtype}: give both one dtype, e.g. "
            f"model.to({x.dtype}) or x.to({dtype}) (skipviz's data sets are float32)")
    if not torch.isfinite(x).all():
        raise SkipvizValueError(f"{name} holds inf or nan")


class Evaluation(tuple):
    """What `evaluate` returns: the pair (loss, metric), with names. `.loss` is the mean loss;
    `.accuracy` (classification, 0..1) or `.mse` (regression) is the metric, and asking a
    regression for its accuracy is refused rather than answered with its MSE."""

    def __new__(cls, loss: float, metric: float, task: str) -> Evaluation:
        self = super().__new__(cls, (loss, metric))
        self.task = task
        return self

    @property
    def loss(self) -> float:
        return self[0]

    @property
    def metric(self) -> float:
        return self[1]

    @property
    def accuracy(self) -> float:
        if self.task != "classification":
            raise SkipvizValueError("this data set is a regression: its metric is the MSE, .mse, not .accuracy")
        return self[1]

    @property
    def mse(self) -> float:
        if self.task == "classification":
            raise SkipvizValueError("this data set is a classification: its metric is .accuracy, not .mse")
        return self[1]

    def __repr__(self) -> str:
        name = "accuracy" if self.task == "classification" else "mse"
        return f"Evaluation(loss={self[0]:.4g}, {name}={self[1]:.4g})"


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, split: str = "test") -> Evaluation:
    """The mean loss and the metric of `model` in eval mode on the 'train' or 'test' split, in one
    batch: an Evaluation, read as `.loss` and `.accuracy` (classification, 0..1) or `.mse`
    (regression), or unpacked as `loss, metric = evaluate(...)`. The model's train/eval mode is
    restored afterwards.
    """
    check_fits(model, dataset)
    x, y = dataset.split(split)
    with eval_mode(model):
        out = model(x)
        loss = loss_for_targets(out, y).item()
        metric = (out.argmax(-1) == y)[y != IGNORE].float().mean().item() \
            if dataset.task == "classification" else loss
    return Evaluation(loss, metric, dataset.task)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode for the block, then restore its train/eval mode."""
    check_model("model", model)
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def fit(model: nn.Module, dataset: Dataset, steps: int, lr: float = 1e-3, batch_size: int = 128,
        seed: int = 0, optimizer: str = "adam", weight_decay: float = 0.0,
        eval_every: int | None = None, warmup: int = 0, cache: bool = True,
        progress: bool | None = None, desc: str | None = None) -> History:
    """Train `model` in place on `dataset` for `steps` minibatch steps; return its History.

    Training starts from the model's current weights (call it on a fresh model to train from
    initialization).

    Deterministic on a CPU for a given seed (minibatch order; the model's own init is fixed by
    its constructor). With cache=True the trained weights are stored in the cache folder under a
    hash of the whole configuration (initial weights, architecture, skips, data, every argument
    here, and the code of the model's classes, so editing `forward` retrains) and loaded instead
    of training next time; a damaged or mismatched file is ignored with a warning and the model
    retrained. A run whose loss or weights became inf or nan is returned with a warning and not
    cached. The model is left in eval mode.

    warmup: the learning rate rises linearly over the first `warmup` steps, lr/warmup at step 1 to
    lr at step `warmup` (notebook 09); 0 starts at lr.
    """
    check_fits(model, dataset)
    steps = check_int("steps", steps)
    lr = check_positive("lr", lr)
    batch_size = check_int("batch_size", batch_size)
    seed = check_seed("seed", seed)
    optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
    weight_decay = check_number("weight_decay", weight_decay, 0)
    eval_every = max(1, steps // 50) if eval_every is None else check_int("eval_every", eval_every)
    warmup = check_int("warmup", warmup, minimum=0)
    cache = check_bool("cache", cache)
    if progress is not None:
        progress = check_bool("progress", progress)
    if min(batch_size, len(dataset.x_train)) < 2 and any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise SkipvizValueError(
            f"batch_size must be at least 2 for model {type(model).__name__}, which has batch norm (it "
            f"normalizes by each batch's statistics); got batch_size={batch_size} and dataset "
            f"{dataset.name!r} with {len(dataset.x_train)} training example(s)")
    if not any(p.requires_grad for p in model.parameters()):
        raise SkipvizValueError(f"model {type(model).__name__} has no parameters with requires_grad=True to train")
    settings = dict(steps=steps, lr=lr, batch_size=batch_size, seed=seed, optimizer=optimizer,
                    weight_decay=weight_decay, eval_every=eval_every)
    if warmup:  # only when used, so that the runs cached before warm-up existed keep their keys
        settings["warmup"] = warmup
    key = cache_key(model, dataset, settings) if cache else None
    if key is not None:
        history = _load_cached(model, key)
        if history is not None:
            model.eval()
            return history

    history = _train(model, dataset, settings, progress, desc)
    diverged = not (math.isfinite(history.final_train_loss)
                    and all(torch.isfinite(t).all() for t in model.state_dict().values()
                            if t.is_floating_point()))
    if diverged:
        warnings.warn(f"training diverged (the loss or the weights became inf or nan) with lr={lr:g}; "
                      "try a smaller learning rate. The result is not cached.", stacklevel=2)
    elif key is not None:
        _save_cached(model, key, history)
    return history


def _train(model: nn.Module, dataset: Dataset, s: dict, progress: bool | None,
           desc: str | None) -> History:
    if progress is None:
        progress = progress_bars()
    params = [p for p in model.parameters() if p.requires_grad]
    if s["optimizer"] == "adam":
        opt = torch.optim.Adam(params, lr=s["lr"], weight_decay=s["weight_decay"])
    else:
        opt = torch.optim.SGD(params, lr=s["lr"], momentum=0.9, weight_decay=s["weight_decay"])
    warmup = s.get("warmup", 0)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda done: min(1.0, (done + 1) / warmup) if warmup else 1.0)
    g = torch.Generator().manual_seed(s["seed"])
    n = dataset.x_train.shape[0]
    batch = min(s["batch_size"], n)
    history = History(metric_name="accuracy" if dataset.task == "classification" else "mse")
    order, pos, running, count = torch.randperm(n, generator=g), 0, 0.0, 0
    model.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s["seed"])
        for step in tqdm(range(1, s["steps"] + 1), disable=not progress, desc=desc, leave=False):
            if pos + batch > n:  # a new epoch: a new shuffle
                order, pos = torch.randperm(n, generator=g), 0
            idx = order[pos: pos + batch]
            pos += batch
            loss = loss_for_targets(model(dataset.x_train[idx]), dataset.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            running += loss.item()
            count += 1
            if step % s["eval_every"] == 0 or step == s["steps"]:
                history.steps.append(step)
                history.train_loss.append(running / count)
                history.test_metric.append(evaluate(model, dataset, "test").metric)
                running, count = 0.0, 0
    history.final_train_loss = evaluate(model, dataset, "train").loss
    history.final_test_metric = history.test_metric[-1]
    model.eval()
    return history


def _cache_path(key: str):
    return cache_dir() / "models" / f"{key}.pt"


def _load_cached(model: nn.Module, key: str) -> History | None:
    path = _cache_path(key)
    if not path.exists():
        return None
    own = model.state_dict()
    saved = {k: v.detach().clone() for k, v in own.items()}
    try:
        blob = _cache.load(path, key, CACHE_FORMAT)
        state = blob["state_dict"]
        if not isinstance(state, dict) or set(state) != set(own):
            raise SkipvizValueError("its weights do not fit this model")
        for k, t in state.items():
            if not isinstance(t, torch.Tensor) or t.layout != torch.strided \
                    or t.shape != own[k].shape or t.dtype != own[k].dtype:
                raise SkipvizValueError(f"its tensor {k!r} does not fit this model")
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise SkipvizValueError(f"its tensor {k!r} holds inf or nan")
        history = History.from_dict(blob["history"])
        model.load_state_dict(state)
    except Exception as err:  # never trust a bad cache file: warn, retrain, and replace it
        model.load_state_dict(saved)
        warnings.warn(f"ignoring cache file {path.name}: {err}; retraining", stacklevel=3)
        return None
    return history


def _save_cached(model: nn.Module, key: str, history: History) -> None:
    _cache.save(_cache_path(key), key, CACHE_FORMAT, {
        "history": history.to_dict(),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}})
