"""Small data sets made on this machine (never downloaded): sin(x), MNIST-1D, 2-D spirals and
sorting digit sequences."""

from __future__ import annotations

import hashlib
import random
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from . import _cache
from ._validation import check_choice, check_int, check_number, check_positive, check_seed
from .errors import SkipvizValueError
from .settings import cache_dir

__all__ = ["DATASETS", "IGNORE", "SPLITS", "TASKS", "Dataset", "denoising", "load", "mnist1d", "sine",
           "sorting", "spirals"]

TASKS = ("classification", "regression")
SPLITS = ("train", "test")
MNIST1D_FORMAT = 3  # the cache file layout (3: with a checksum); older files are rebuilt
MNIST1D_TRAIN, MNIST1D_TEST = 4000, 1000  # what mnist1d's make_dataset generates
# The label of a sequence position that is not scored (a prompt's): it counts in neither the loss
# nor the accuracy. Only labels of shape (n, positions) may hold it.
IGNORE = -1


def lowest_label(labels: torch.Tensor) -> int:
    """The smallest class label allowed in `labels`: IGNORE for labels per position (n, positions),
    0 for one label per example (n,)."""
    return IGNORE if labels.dim() == 2 else 0


@dataclass(frozen=True)
class Dataset:
    """A train/test split held as float32 inputs and int64 labels (or float32 targets).

    x_train: (n_train, in_dim); y_train: (n_train,) class indices, or (n_train, out_dim) targets.
    A sequence task (`sorting`) has token ids as inputs (whole-number floats) and one label per
    position, (n_train, positions), IGNORE where a position is not scored.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str
    num_classes: int | None = None

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        if not isinstance(self.name, str):
            raise SkipvizValueError(f"name must be a string; got {self.name!r}")
        classification = self.task == "classification"
        if classification:
            num_classes = check_int("num_classes", self.num_classes, minimum=2)
        elif self.num_classes is not None:
            raise SkipvizValueError(f"a regression Dataset has no num_classes; got {self.num_classes!r}")
        for part in ("train", "test"):
            x = _as_inputs(f"x_{part}", getattr(self, f"x_{part}"))
            y = _as_targets(f"y_{part}", getattr(self, f"y_{part}"), classification)
            if len(y) != len(x):
                raise SkipvizValueError(f"y_{part} must have one entry per row of x_{part} ({len(x)}); got {len(y)}")
            if classification and (y.min() < lowest_label(y) or y.max() >= num_classes):
                allowed = f" or IGNORE ({IGNORE})" if y.dim() == 2 else ""
                raise SkipvizValueError(f"y_{part} must hold class labels in 0..num_classes-1 = "
                                        f"0..{num_classes - 1}{allowed}; got labels {int(y.min())}..{int(y.max())}")
            if classification and y.dim() == 2 and (y == IGNORE).all(1).any():
                row = int((y == IGNORE).all(1).nonzero()[0])
                raise SkipvizValueError(f"y_{part} must score at least one position of every example; "
                                        f"row {row} is all IGNORE ({IGNORE})")
            object.__setattr__(self, f"x_{part}", x)
            object.__setattr__(self, f"y_{part}", y)
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise SkipvizValueError(f"x_train and x_test must have the same features; got "
                             f"{tuple(self.x_train.shape[1:])} and {tuple(self.x_test.shape[1:])}")
        if self.y_train.shape[1:] != self.y_test.shape[1:]:
            raise SkipvizValueError(f"y_train and y_test must have the same shape per example; got "
                             f"{tuple(self.y_train.shape[1:])} and {tuple(self.y_test.shape[1:])}")
        if classification:
            object.__setattr__(self, "num_classes", num_classes)

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) of the 'train' or 'test' split."""
        check_choice("split", name, SPLITS)
        return (self.x_train, self.y_train) if name == "train" else (self.x_test, self.y_test)

    @property
    def in_dim(self) -> int:
        """Number of input features."""
        return self.x_train.shape[1]

    @property
    def out_dim(self) -> int:
        """Number of network outputs: classes for classification, target size for regression."""
        return self.num_classes if self.task == "classification" else self.y_train.shape[1]

    def fingerprint(self) -> str:
        """A short hash of all four tensors, so a cache key changes whenever the data do."""
        h = hashlib.sha256(self.name.encode())
        for t in (self.x_train, self.y_train, self.x_test, self.y_test):
            h.update(str((tuple(t.shape), t.dtype)).encode())
            h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        extra = f", num_classes={self.num_classes}" if self.num_classes else ""
        return (f"Dataset({self.name!r}, task={self.task!r}, train={tuple(self.x_train.shape)}, "
                f"test={tuple(self.x_test.shape)}{extra})")


def _as_tensor(name: str, value: object) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise SkipvizValueError(f"{name} must be a torch tensor or numpy array; got {type(value).__name__}")
    if value.layout != torch.strided:
        raise SkipvizValueError(f"{name} must be a dense tensor; got a {value.layout} one")
    if value.device.type != "cpu":
        raise SkipvizValueError(f"{name} must be on the CPU; got a tensor on {value.device}")
    return value.detach()


def _as_inputs(name: str, x: object) -> torch.Tensor:
    """(n, features) float32 inputs, at least one row, every value finite."""
    x = _as_tensor(name, x)
    if x.dim() != 2 or len(x) == 0 or x.shape[1] == 0:
        raise SkipvizValueError(f"{name} must have shape (examples, features) with at least one of each; "
                         f"got {tuple(x.shape)}")
    if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64, torch.uint8)):
        raise SkipvizValueError(f"{name} must hold real numbers; got dtype {x.dtype}")
    x = x.to(torch.float32).contiguous()
    if not torch.isfinite(x).all():
        raise SkipvizValueError(f"{name} contains inf or nan (or values beyond float32's range)")
    return x


def _as_targets(name: str, y: object, classification: bool) -> torch.Tensor:
    """int64 labels (n,), or (n, positions) for a sequence task, for classification; float32
    targets (n, outputs) for regression (a 1-D target becomes (n, 1), so that it cannot broadcast
    against an (n, 1) output)."""
    y = _as_tensor(name, y)
    if classification:
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool or y.dim() not in (1, 2) \
                or 0 in y.shape:
            raise SkipvizValueError(f"{name} must hold integer class labels (int64), one per example (n,) or "
                                    f"one per position (n, positions); got dtype {y.dtype}, shape {tuple(y.shape)}")
        return y.to(torch.int64).contiguous()
    if y.dim() == 1:
        y = y.unsqueeze(1)
    if y.dim() != 2 or y.is_complex() or y.dtype == torch.bool:
        raise SkipvizValueError(f"{name} must hold real-valued targets of shape (examples, outputs); got "
                         f"dtype {y.dtype}, shape {tuple(y.shape)}")
    y = y.to(torch.float32).contiguous()
    if not torch.isfinite(y).all():
        raise SkipvizValueError(f"{name} contains inf or nan")
    return y


def sine(n_train: int = 256, n_test: int = 1000, low: float = -2 * np.pi, high: float = 2 * np.pi,
         noise: float = 0.0, seed: int = 0) -> Dataset:
    """Regression on y = sin(x), x uniform in [low, high]: inputs (n, 1), targets (n, 1).

    Training inputs are drawn at random; test inputs are an even grid over the same range, so a
    test-set plot of the prediction is a curve.
    """
    n_train = check_int("n_train", n_train)
    n_test = check_int("n_test", n_test, minimum=2)
    low, high = check_number("low", low), check_number("high", high)
    if not low < high:
        raise SkipvizValueError(f"low must be below high; got low={low}, high={high}")
    noise = check_number("noise", noise, 0)
    g = torch.Generator().manual_seed(check_seed("seed", seed))
    x_train = low + (high - low) * torch.rand(n_train, 1, generator=g)
    y_train = torch.sin(x_train) + noise * torch.randn(n_train, 1, generator=g)
    x_test = torch.linspace(low, high, n_test).unsqueeze(1)
    return Dataset("sine", x_train, y_train, x_test, torch.sin(x_test), "regression")


def spirals(num_classes: int = 3, n_train: int = 600, n_test: int = 600, noise: float = 0.2,
            turns: float = 1.0, seed: int = 0) -> Dataset:
    """k interleaved 2-D spirals, one class each: inputs (n, 2), labels (n,) in 0..k-1."""
    num_classes = check_int("num_classes", num_classes, minimum=2)
    n_train, n_test = check_int("n_train", n_train), check_int("n_test", n_test)
    turns = check_positive("turns", turns)
    noise = check_number("noise", noise, 0)
    g = torch.Generator().manual_seed(check_seed("seed", seed))

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(n) % num_classes
        r = torch.rand(n, generator=g)  # radius in [0, 1)
        angle = 2 * np.pi * (turns * r + y / num_classes) + noise * torch.randn(n, generator=g)
        x = torch.stack([r * torch.cos(angle), r * torch.sin(angle)], dim=1) * 2.0
        return x, y

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return Dataset("spirals", x_train, y_train, x_test, y_test, "classification", num_classes)


def mnist1d(n_train: int | None = None, seed: int = 42) -> Dataset:
    """MNIST-1D (Greydanus 2020): 10 classes of 40-sample 1-D signals; inputs (n, 40), labels (n,).

    Generated locally with the mnist1d package's `make_dataset` (never its download path): 4,000
    training and 1,000 test examples, standardized by the generator. The result is cached on disk;
    `n_train` keeps only the first n training examples (the test set stays whole).
    """
    if n_train is not None:
        n_train = check_int("n_train", n_train, maximum=MNIST1D_TRAIN)
    seed = check_seed("seed", seed)
    key = f"mnist1d-seed{seed}"
    path = cache_dir() / f"{key}-v{MNIST1D_FORMAT}.pt"
    tensors = None
    if path.exists():
        try:
            tensors = _check_mnist1d(_cache.load(path, key, MNIST1D_FORMAT)["tensors"])
        except Exception as err:  # a corrupt file is rebuilt, never trusted
            warnings.warn(f"ignoring unreadable MNIST-1D cache {path} ({err}); regenerating",
                          stacklevel=2)
            tensors = None
    if tensors is None:
        tensors = _make_mnist1d(seed)
        _cache.save(path, key, MNIST1D_FORMAT, {"tensors": tensors})
    x, y = tensors["x"], tensors["y"]
    if n_train is not None:
        x, y = x[:n_train], y[:n_train]
    return Dataset("mnist1d", x, y, tensors["x_test"], tensors["y_test"], "classification", 10)


def _check_mnist1d(tensors: object) -> dict[str, torch.Tensor]:
    """The cached MNIST-1D tensors if they have the generator's shapes, dtypes and ranges."""
    if not isinstance(tensors, dict) or set(tensors) != {"x", "y", "x_test", "y_test"}:
        raise SkipvizValueError("unexpected contents")
    shapes = {"x": (MNIST1D_TRAIN, 40), "y": (MNIST1D_TRAIN,), "x_test": (MNIST1D_TEST, 40),
              "y_test": (MNIST1D_TEST,)}
    for name, shape in shapes.items():
        t = tensors[name]
        dtype = torch.int64 if name.startswith("y") else torch.float32
        if not isinstance(t, torch.Tensor) or t.layout != torch.strided or tuple(t.shape) != shape \
                or t.dtype != dtype:
            raise SkipvizValueError(f"{name} is not a {dtype} tensor of shape {shape}")
        if name.startswith("y") and (t.min() < 0 or t.max() > 9 or len(t.unique()) != 10):
            raise SkipvizValueError(f"{name} does not hold the labels 0..9")
        if name.startswith("x") and not torch.isfinite(t).all():
            raise SkipvizValueError(f"{name} contains inf or nan")
    return tensors


def _make_mnist1d(seed: int) -> dict[str, torch.Tensor]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    # make_dataset reseeds numpy's and Python's global generators: restore them afterwards.
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return {"x": torch.tensor(d["x"], dtype=torch.float32),
            "y": torch.tensor(d["y"], dtype=torch.int64),
            "x_test": torch.tensor(d["x_test"], dtype=torch.float32),
            "y_test": torch.tensor(d["y_test"], dtype=torch.int64)}


def denoising(noise: float = 0.5, seed: int = 0) -> Dataset:
    """MNIST-1D as a denoising task (notebook 07): inputs are the signals plus Gaussian noise of
    standard deviation `noise`, targets the signals themselves, both (n, 40). The noise is drawn
    once per example from `seed`, so the data set is fixed."""
    noise = check_number("noise", noise, 0, strict=True)
    seed = check_seed("seed", seed)
    clean = mnist1d()
    g = torch.Generator().manual_seed(seed)
    noisy_train = clean.x_train + noise * torch.randn(clean.x_train.shape, generator=g)
    noisy_test = clean.x_test + noise * torch.randn(clean.x_test.shape, generator=g)
    return Dataset(f"mnist1d-denoising-{noise:g}-seed{seed}", noisy_train, clean.x_train.clone(),
                   noisy_test, clean.x_test.clone(), "regression")


def sorting(length: int = 5, digits: int = 10, n_train: int = 10_000, n_test: int = 1_000,
            seed: int = 0) -> Dataset:
    """Sorting digit sequences as next-token prediction (notebook 09, after minGPT's demo).

    An example is `length` random digits (0..digits-1) followed by the same digits sorted, the last
    one left out: inputs (n, 2 length - 1) token ids. Labels (n, 2 length - 1): position t is
    labelled with the token at t + 1 where that is a sorted digit, IGNORE before (the unsorted
    digits cannot be predicted), so the accuracy is the fraction of sorted digits predicted right.
    Train and test sequences are distinct; there must be at least n_train + n_test possible ones.
    """
    length = check_int("length", length, minimum=2, maximum=32)
    digits = check_int("digits", digits, minimum=2, maximum=1000)
    n_train, n_test = check_int("n_train", n_train), check_int("n_test", n_test)
    wanted = n_train + n_test
    if digits ** length < wanted:
        raise SkipvizValueError(f"only {digits ** length:,} sequences of length={length} over digits={digits} "
                                f"exist, fewer than n_train + n_test = {wanted:,}: lower n_train or n_test, "
                                "or raise length or digits")
    rng = np.random.default_rng(check_seed("seed", seed))
    if digits ** length <= 4 * wanted:  # few possible sequences: draw without replacement
        codes = rng.choice(digits ** length, size=wanted, replace=False)
        seqs = (codes[:, None] // digits ** np.arange(length)[::-1]) % digits
    else:  # many: draw at random, keep the first copy of each, draw again for what is missing
        seqs = np.empty((0, length), dtype=np.int64)
        while len(seqs) < wanted:
            more = np.concatenate([seqs, rng.integers(0, digits, size=(wanted, length))])
            _, first = np.unique(more, axis=0, return_index=True)
            seqs = more[np.sort(first)][:wanted]
    seqs = torch.from_numpy(seqs.astype(np.int64))
    ordered = seqs.sort(dim=1).values
    x = torch.cat([seqs, ordered[:, :-1]], dim=1)
    y = torch.cat([torch.full((wanted, length - 1), IGNORE), ordered], dim=1)
    return Dataset(f"sorting-{length}x{digits}-seed{seed}", x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                   "classification", digits)


DATASETS = {"sine": sine, "spirals": spirals, "mnist1d": mnist1d, "denoising": denoising, "sorting": sorting}


def load(name: str, **kwargs) -> Dataset:
    """Build a data set by name: one of 'sine', 'spirals', 'mnist1d', 'denoising', 'sorting' (kwargs
    go to its function)."""
    check_choice("name", name, DATASETS)
    return DATASETS[name](**kwargs)
