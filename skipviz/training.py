"""Training with Adam or SGD, deterministic for a seed, with an optional disk cache of trained weights."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from . import _cache
from ._validation import check_choice, check_int, check_positive
from .data import Dataset
from .settings import cache_dir, progress_bars

OPTIMIZERS = ("adam", "sgd")
CACHE_FORMAT = 2


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


def loss_for_targets(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy when y holds integer class labels, mean squared error for float targets."""
    if y.is_floating_point():
        return nn.functional.mse_loss(out, y)
    return nn.functional.cross_entropy(out, y)


def loss_function(dataset: Dataset) -> nn.Module:
    """Cross-entropy for classification (integer labels), mean squared error for regression."""
    return nn.CrossEntropyLoss() if dataset.task == "classification" else nn.MSELoss()


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, split: str = "test") -> tuple[float, float]:
    """(mean loss, metric) of `model` in eval mode on the 'train' or 'test' split, in one batch.

    The metric is accuracy in 0..1 for classification and the MSE for regression. The model's
    train/eval mode is restored afterwards.
    """
    x, y = dataset.split(split)
    with eval_mode(model):
        out = model(x)
        loss = loss_function(dataset)(out, y).item()
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
    here) and loaded instead of training next time; a corrupt or mismatched file is ignored with
    a warning and the model is retrained. The model is left in eval mode.
    """
    check_int("steps", steps)
    check_positive("lr", lr)
    check_int("batch_size", batch_size)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0; got {weight_decay}")
    eval_every = eval_every or max(1, steps // 50)
    check_int("eval_every", eval_every)
    settings = dict(steps=steps, lr=lr, batch_size=batch_size, seed=seed, optimizer=optimizer,
                    weight_decay=weight_decay, eval_every=eval_every)
    key = cache_key(model, dataset, settings) if cache else None
    if key is not None:
        history = _load_cached(model, key)
        if history is not None:
            model.eval()
            return history

    history = _train(model, dataset, settings, progress, desc)
    if key is not None:
        _save_cached(model, key, history)
    return history


def _train(model: nn.Module, dataset: Dataset, s: dict, progress: bool | None,
           desc: str | None) -> History:
    if progress is None:
        progress = progress_bars()
    loss_fn = loss_function(dataset)
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
            loss = loss_fn(model(dataset.x_train[idx]), dataset.y_train[idx])
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
    """A hex digest of everything that determines the trained weights."""
    h = hashlib.sha256()
    # The constructor's config names what the weights alone cannot (v1 and v2 blocks share shapes).
    config = sorted(getattr(model, "config", {}).items())
    h.update(f"format={CACHE_FORMAT}|{type(model).__name__}|{config}|{model!r}|"
             f"{sorted(settings.items())}".encode())
    h.update(str(getattr(model, "skips", [])).encode())
    h.update(dataset.fingerprint().encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def _cache_path(key: str):
    return cache_dir() / "models" / f"{key}.pt"


def _load_cached(model: nn.Module, key: str) -> History | None:
    path = _cache_path(key)
    if not path.exists():
        return None
    try:
        blob = _cache.load(path, key, CACHE_FORMAT)
        state, own = blob["state_dict"], model.state_dict()
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            raise ValueError("its weights do not fit this model")
        history = History.from_dict(blob["history"])
    except Exception as err:  # never trust a bad cache file: warn and retrain
        warnings.warn(f"ignoring cache file {path.name}: {err}; retraining", stacklevel=3)
        return None
    model.load_state_dict(state)
    return history


def _save_cached(model: nn.Module, key: str, history: History) -> None:
    _cache.save(_cache_path(key), key, CACHE_FORMAT, {
        "history": history.to_dict(),
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}})
