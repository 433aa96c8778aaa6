"""Training with Adam or SGD, deterministic for a seed, with an optional disk cache of trained weights."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import types
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
    check_number,
    check_positive,
    check_seed,
)
from .data import Dataset
from .settings import cache_dir, progress_bars

OPTIMIZERS = ("adam", "sgd")
CACHE_FORMAT = 3  # 3: code-aware keys and checksummed files


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
            raise ValueError("history lists of unequal length")
        return h


def loss_for_targets(out: torch.Tensor, y: torch.Tensor, points: bool = False) -> torch.Tensor:
    """The loss of every skipviz model: mean cross-entropy when y holds integer class labels (n,),
    mean squared error over all entries for float targets (n, ...). out (n, ...) -> a scalar;
    with points=True, out (P, n, ...) holds the outputs of P weight vectors on the same batch
    -> (P,), the loss of each."""
    if y.is_floating_point():
        return (out - y).pow(2).flatten(1).mean(1) if points else nn.functional.mse_loss(out, y)
    if points:
        # Classes along dim 1, (P, classes, n): ten times faster on CPU than classes last.
        return nn.functional.cross_entropy(out.transpose(1, 2), y.expand(len(out), -1),
                                           reduction="none").mean(1)
    return nn.functional.cross_entropy(out, y)


def check_fits(model: nn.Module, dataset: Dataset) -> None:
    """Raise one ValueError naming both sizes unless `model` maps the data set's inputs to
    outputs its targets fit: (n, num_classes) logits for classification, the targets' shape for
    regression. Every function that runs a model on a data set calls this first.

    skipviz models are checked against their constructor's sizes (in_dim / in_len, out_dim /
    num_classes); any other module by one forward pass on two examples in eval mode.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    if not isinstance(dataset, Dataset):
        raise ValueError(f"dataset must be a skipviz Dataset (see skipviz.data); got {type(dataset).__name__}")
    check_input_fits(model, dataset.x_train[:2], dataset.y_train[:2], f"the data set {dataset.name!r}",
                     dataset.num_classes)


def check_input_fits(model: nn.Module, x: torch.Tensor, y: torch.Tensor, what: str = "x",
                     num_classes: int | None = None) -> None:
    """`check_fits` for a batch: inputs x (batch, ...) and targets y (integer labels (batch,) or
    float targets of the output's shape). With num_classes the model must give exactly that many
    logits; without, more than the largest label in y."""
    name = type(model).__name__
    for label, t in (("x", x), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{label} must be a torch tensor; got {type(t).__name__}")
    if len(x) != len(y):
        raise ValueError(f"x and y must have one entry per example; got {len(x)} and {len(y)}")
    if len(x) == 0:
        raise ValueError("x must hold at least one example")
    classification = not y.is_floating_point()
    if classification and y.dim() != 1:
        raise ValueError(f"integer labels y must have shape (batch,); got {tuple(y.shape)}")
    config = getattr(model, "config", None)
    config = config if isinstance(config, dict) else {}
    takes = config.get("in_dim", config.get("in_len"))
    if isinstance(takes, int) and (x.dim() != 2 or x.shape[1] != takes):
        key = "in_dim" if "in_dim" in config else "in_len"
        raise ValueError(f"{name}({key}={takes}) takes inputs of {takes} features, but {what} has "
                         f"inputs of shape {tuple(x.shape[1:])} per example")
    classes = num_classes if num_classes is not None else (int(y.max()) + 1 if classification else None)
    gives = config.get("out_dim", config.get("num_classes"))
    if isinstance(gives, int) and isinstance(takes, int):
        wanted = classes if classification else (y.shape[1] if y.dim() == 2 else None)
        key = "out_dim" if "out_dim" in config else "num_classes"
        if classification and (gives != wanted if num_classes is not None else gives < wanted):
            raise ValueError(f"{name}({key}={gives}) has {gives} outputs, but {what} has {wanted} "
                             f"classes: it needs {key}={wanted}")
        if not classification and gives != wanted:
            raise ValueError(f"{name}({key}={gives}) has {gives} outputs, but the targets of {what} "
                             f"have shape {tuple(y.shape[1:])} per example: a regression needs "
                             f"{key} = {wanted}")
        return
    try:
        with torch.no_grad(), eval_mode(model):
            out = model(x[:2])
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(f"{name} cannot take the inputs of {what} (shape {tuple(x.shape[1:])} per "
                         f"example): {type(err).__name__}: {err}") from None
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"{name} must return a tensor; it returned {type(out).__name__}")
    if classification:
        if out.dim() != 2 or (out.shape[1] != classes if num_classes is not None else out.shape[1] < classes):
            raise ValueError(f"{name} gives outputs of shape {tuple(out.shape[1:])} per example, but "
                             f"{what} has {classes} classes: a classifier must give (batch, {classes}) logits")
    elif tuple(out.shape[1:]) != tuple(y.shape[1:]):
        raise ValueError(f"{name} gives outputs of shape {tuple(out.shape[1:])} per example, but the "
                         f"targets of {what} have shape {tuple(y.shape[1:])}")


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, split: str = "test") -> tuple[float, float]:
    """(mean loss, metric) of `model` in eval mode on the 'train' or 'test' split, in one batch.

    The metric is accuracy in 0..1 for classification and the MSE for regression. The model's
    train/eval mode is restored afterwards.
    """
    check_fits(model, dataset)
    x, y = dataset.split(split)
    with eval_mode(model):
        out = model(x)
        loss = loss_for_targets(out, y).item()
        metric = (out.argmax(1) == y).float().mean().item() if dataset.task == "classification" else loss
    return loss, metric


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put `model` in eval mode for the block, then restore its train/eval mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def fit(model: nn.Module, dataset: Dataset, steps: int, lr: float = 1e-3, batch_size: int = 128,
        seed: int = 0, optimizer: str = "adam", weight_decay: float = 0.0,
        eval_every: int | None = None, cache: bool = True, progress: bool | None = None,
        desc: str | None = None) -> History:
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
    """
    check_fits(model, dataset)
    steps = check_int("steps", steps)
    lr = check_positive("lr", lr)
    batch_size = check_int("batch_size", batch_size)
    seed = check_seed("seed", seed)
    optimizer = check_choice("optimizer", optimizer, OPTIMIZERS)
    weight_decay = check_number("weight_decay", weight_decay, 0)
    eval_every = max(1, steps // 50) if eval_every is None else check_int("eval_every", eval_every)
    cache = check_bool("cache", cache)
    if progress is not None:
        progress = check_bool("progress", progress)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"{type(model).__name__} has no parameters with requires_grad=True to train")
    settings = dict(steps=steps, lr=lr, batch_size=batch_size, seed=seed, optimizer=optimizer,
                    weight_decay=weight_decay, eval_every=eval_every)
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
            running += loss.item()
            count += 1
            if step % s["eval_every"] == 0 or step == s["steps"]:
                history.steps.append(step)
                history.train_loss.append(running / count)
                history.test_metric.append(evaluate(model, dataset, "test")[1])
                running, count = 0.0, 0
    history.final_train_loss = evaluate(model, dataset, "train")[0]
    history.final_test_metric = history.test_metric[-1]
    model.eval()
    return history


def cache_key(model: nn.Module, dataset: Dataset, settings: dict) -> str:
    """A hex digest of everything that determines the trained weights: the model's code (see
    `code_fingerprint`), configuration, skips, weights and which of them train; the data; the
    settings; and the torch version."""
    h = hashlib.sha256()
    # The constructor's config names what the weights alone cannot (v1 and v2 blocks share shapes).
    config = getattr(model, "config", {})
    config = sorted(config.items()) if isinstance(config, dict) else repr(config)
    h.update(f"format={CACHE_FORMAT}|torch={torch.__version__}|{type(model).__name__}|{config}|"
             f"{model!r}|{sorted(settings.items())}".encode())
    h.update(str(list(getattr(model, "skips", []))).encode())
    h.update(code_fingerprint(model).encode())
    h.update(str([(n, p.requires_grad) for n, p in model.named_parameters()]).encode())
    h.update(dataset.fingerprint().encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(_cache.checksum(t).encode())
    return h.hexdigest()[:32]


def code_fingerprint(model: nn.Module) -> str:
    """A hash of the code that runs in `model`: the bytecode and constants of every method of
    the classes of the model and of its submodules (with their base classes, up to torch's
    own), and of the plain functions those methods call by a global name. Editing a `forward`
    in a notebook cell and re-running the cell changes it; torch's classes are covered by the
    torch version instead."""
    h = hashlib.sha256()
    seen: set[int] = set()

    def feed_code(code: types.CodeType) -> None:
        h.update(code.co_code)
        h.update(repr(code.co_names).encode() + repr(code.co_varnames).encode())
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                feed_code(const)
            else:
                h.update(repr(const).encode())

    def feed_function(fn: types.FunctionType) -> None:
        if id(fn) in seen or _is_torch(fn.__module__):
            return
        seen.add(id(fn))
        feed_code(fn.__code__)
        h.update(repr(fn.__defaults__).encode())
        for name in fn.__code__.co_names:  # helpers called by a global name, one level at a time
            target = fn.__globals__.get(name)
            if isinstance(target, types.FunctionType):
                feed_function(target)

    for cls in sorted({type(m) for m in model.modules()}, key=lambda c: c.__qualname__):
        for klass in cls.__mro__:
            if klass is object or _is_torch(klass.__module__) or id(klass) in seen:
                continue
            seen.add(id(klass))
            h.update(klass.__qualname__.encode())
            for attr, value in sorted(vars(klass).items()):
                fn = value.fget if isinstance(value, property) else getattr(value, "__func__", value)
                if isinstance(fn, types.FunctionType):
                    h.update(attr.encode())
                    feed_function(fn)
    return h.hexdigest()


def _is_torch(module: str | None) -> bool:
    return module is not None and (module == "torch" or module.startswith("torch."))


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
            raise ValueError("its weights do not fit this model")
        for k, t in state.items():
            if not isinstance(t, torch.Tensor) or t.layout != torch.strided \
                    or t.shape != own[k].shape or t.dtype != own[k].dtype:
                raise ValueError(f"its tensor {k!r} does not fit this model")
            if t.is_floating_point() and not torch.isfinite(t).all():
                raise ValueError(f"its tensor {k!r} holds inf or nan")
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
