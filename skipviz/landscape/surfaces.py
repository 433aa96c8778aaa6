"""1-D and 2-D slices of the training loss through a model's weights (Li et al. 2018; notebook 04
writes the plane loop out in a few lines before it calls these).

The model's weights are never written: every grid point's weights are separate tensors, run with
`torch.func.functional_call` in eval mode without gradients, on the whole split at once. Points
run in chunks, by one of three methods, all giving the same numbers:

- 'batched': a chunk as one forward pass, every weight stacked along a points dimension
  (`fast.points`), for the models `fast.graph.prove` shows it handles exactly;
- 'vmap': the same through `torch.func.vmap` over `functional_call`, for any model;
- 'loop': one point after another, the reference.

On every call a method is used only after it has reproduced the loop on the first two points;
'auto' takes the first that does in that order, so the choice depends on what the model is,
never on timing or on earlier calls, and is the same on every machine and run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap

from .._validation import check_choice, check_int, float_array, show
from ..data import IGNORE, SPLITS, Dataset
from ..errors import SkipvizValueError
from ..training import eval_mode, loss_for_targets
from .directions import MAX_POINTS, Flat, check_direction, grid
from .fast.points import evaluator_for
from .fast.points import refusal as batched_refusal
from .results import cached, check_float64
from .results import progress as progress_bar

METHODS = ("auto", "batched", "vmap", "loop")

# Points per chunk, a function of the model's type and shapes only (a speed setting, not a result).
_CHUNKS: dict[tuple, int] = {}
# A chunk's activations should stay near this many scalars (2 MB of float32): point-batched
# passes slow down once a chunk no longer fits the CPU's caches.
_CHUNK_SCALARS = 2 ** 19


def _point_losses(outputs: torch.Tensor, y: torch.Tensor, classification: bool
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """outputs (P, n, out), or (P, n, positions, classes) for labels (n, positions) -> each
    point's mean loss (P,) float64, and its accuracy over the scored labels (P,) or None."""
    losses = loss_for_targets(outputs, y, points=True).double()
    if not classification:
        return losses, None
    # max().indices: argmax's first-maximum rule, and twice as fast over 10 classes.
    right = outputs.max(-1).indices == y
    if y.dim() == 2:  # a sequence task: only the scored positions count
        right = right[:, y != IGNORE]
    return losses, right.double().mean(-1)


def _chunk_for(model: nn.Module, x: torch.Tensor, flat: Flat) -> int:
    """Points per chunk: _CHUNK_SCALARS over the largest activation of one pass on x, in 1..64."""
    key = (type(model).__name__, tuple(tuple(s) for s in flat.shapes), tuple(x.shape))
    if key not in _CHUNKS:
        widest = [1]  # module outputs only: the batched pass does not repeat the input
        hooks = [m.register_forward_hook(lambda _m, _i, out: widest.append(
            out.numel() if isinstance(out, torch.Tensor) else 0)) for m in model.modules()]
        sample = x[:2]  # two: a batch norm using the batch's own statistics cannot take one
        try:
            functional_call(model, (flat.unflatten(flat.vector), flat.buffers), (sample,))
        finally:
            for h in hooks:
                h.remove()
        _CHUNKS[key] = max(1, min(64, int(_CHUNK_SCALARS * len(sample) // (max(widest) * len(x)))))
    return _CHUNKS[key]


def evaluate_points(model: nn.Module, dataset: Dataset, points: torch.Tensor, basis: torch.Tensor,
                    split: str = "train", method: str = "auto", chunk_size: int | None = None,
                    progress: Callable | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """Mean loss (P,) float64 and accuracy (P,) or None at the weights trained + points @ basis,
    for points (P, k) and basis (k, n_parameters) (flat like `directions.Flat`); also the method
    used. Raises ValueError when an explicit method is refused or does not reproduce the loop."""
    check_choice("split", split, SPLITS)
    check_choice("method", method, METHODS)
    x, y = dataset.split(split)
    classification = dataset.task == "classification"
    flat = Flat(model)
    points = points.to(flat.vector.dtype)

    def forward(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(model, (params, flat.buffers), (x,))

    def weights(rows: torch.Tensor) -> torch.Tensor:
        # Always the same buffer: a fresh megabyte-sized tensor per chunk costs page faults.
        return torch.addmm(flat.vector, rows, basis, out=buffer[:len(rows)])

    def run_batched(rows: torch.Tensor) -> torch.Tensor:
        return evaluator(flat.unflatten(weights(rows)), flat.buffers, x)

    def run_loop(rows: torch.Tensor) -> torch.Tensor:
        return torch.stack([forward(flat.unflatten(w)) for w in weights(rows)])

    runs = {"vmap": lambda rows: vmap(forward)(flat.unflatten(weights(rows))), "loop": run_loop}
    with eval_mode(model), torch.no_grad():
        try:
            evaluator = evaluator_for(model, x)
        except Exception:  # graph.prove itself failed on an unusual graph: no fast path
            evaluator = None
        if evaluator is None and method == "batched":
            raise SkipvizValueError(f"method='batched' refuses this model ({batched_refusal(model, x)}); "
                             "use method='auto', 'vmap' or 'loop'")
        if evaluator is not None:
            runs["batched"] = run_batched
        if chunk_size is None:
            chunk_size = _chunk_for(model, x, flat)
        check_int("chunk_size", chunk_size)
        buffer = torch.empty(min(chunk_size, len(points)), len(flat.vector), dtype=flat.vector.dtype)
        trial = points[:min(2, chunk_size)]
        if method == "auto":
            method = next(name for name in ("batched", "vmap", "loop")
                          if name in runs and _reproduces(runs, name, trial, y))
        elif not _reproduces(runs, method, trial, y):
            raise SkipvizValueError(f"method={method!r} does not reproduce this model's losses (it differs "
                                    "from evaluating one point at a time on a trial point); use "
                                    "method='auto' or 'loop'")
        losses, accuracies = [], []
        for start in range(0, len(points), chunk_size):
            loss, acc = _point_losses(runs[method](points[start:start + chunk_size]), y, classification)
            losses.append(loss)
            accuracies.append(acc)
            if progress is not None:
                progress(len(loss))
    return torch.cat(losses), (torch.cat(accuracies) if classification else None), method


def _reproduces(runs: dict[str, Callable], name: str, trial: torch.Tensor, y: torch.Tensor) -> bool:
    """Whether method `name` gives the loop's losses on the `trial` points ('loop' always does);
    a method that raises does not."""
    if name == "loop":
        return True
    try:
        got = loss_for_targets(runs[name](trial), y, points=True)
        return torch.allclose(got, loss_for_targets(runs["loop"](trial), y, points=True), rtol=1e-4, atol=1e-6)
    except Exception:  # anything this method cannot run (a layer, an odd shape, ...)
        return False


def _check_evaluated(losses: object, accuracies: object, method: object, shape: tuple[int, ...]) -> None:
    check_float64("losses", losses, shape)
    if accuracies is not None:
        check_float64("accuracies", accuracies, shape)
    check_choice("method", method, METHODS[1:])


@dataclass
class Slice1D:
    """The loss along one direction: losses[i] at weights + alphas[i] * direction.

    alphas, losses, accuracies: (points,) float64 tensors; accuracies (0..1) is None for regression.
    method: 'batched', 'vmap' or 'loop', how the points were evaluated.
    """

    alphas: torch.Tensor
    losses: torch.Tensor
    accuracies: torch.Tensor | None
    method: str

    def _check(self) -> None:
        check_float64("alphas", self.alphas)
        _check_evaluated(self.losses, self.accuracies, self.method, tuple(self.alphas.shape))


@dataclass
class Surface2D:
    """The loss over a plane: losses[i, j] at weights + alphas[i] * dir_x + betas[j] * dir_y.

    alphas, betas: (points,) centred coordinates; losses, accuracies: (points, points) float64
    tensors (accuracies in 0..1, None for regression); method: 'batched', 'vmap' or 'loop'.
    """

    alphas: torch.Tensor
    betas: torch.Tensor
    losses: torch.Tensor
    accuracies: torch.Tensor | None
    method: str

    def _check(self) -> None:
        check_float64("alphas", self.alphas)
        check_float64("betas", self.betas)
        _check_evaluated(self.losses, self.accuracies, self.method, (len(self.alphas), len(self.betas)))

    @property
    def center_loss(self) -> float:
        """The loss at (0, 0), the model's own weights (odd `points` only)."""
        if not ((self.alphas == 0).any() and (self.betas == 0).any()):
            raise SkipvizValueError(f"center_loss needs a surface made with an odd number of points, "
                                    f"which puts the model at the centre; this one has points={len(self.alphas)}")
        i, j = int((self.alphas == 0).nonzero()[0]), int((self.betas == 0).nonzero()[0])
        return float(self.losses[i, j])


def _check_evaluation(split: str, method: str, chunk_size: int | None) -> None:
    check_choice("split", split, SPLITS)
    check_choice("method", method, METHODS)
    if chunk_size is not None:
        check_int("chunk_size", chunk_size)


def surface_1d(model: nn.Module, dataset: Dataset, direction: Sequence[torch.Tensor],
               points: int = 51, span: float = 1.0, alphas: Sequence[float] | None = None,
               split: str = "train", method: str = "auto", chunk_size: int | None = None,
               cache: bool = True, progress: bool | None = None) -> Slice1D:
    """Mean loss on a split along weights + alpha * direction, for `points` alphas in [-span, span]
    (or the given `alphas`). Returns a Slice1D; the model is left unchanged.

    method, chunk_size and cache as in `surface_2d`.
    """
    check_direction(model, direction)
    _check_evaluation(split, method, chunk_size)
    if alphas is None:
        coords = grid(points, span)
    else:
        array = float_array(alphas)
        coords = torch.zeros(0) if array is None else torch.as_tensor(array).reshape(-1)
        if not 2 <= len(coords) <= MAX_POINTS or not torch.isfinite(coords).all():
            raise SkipvizValueError(f"alphas must be a list of 2 to {MAX_POINTS} finite numbers; got {show(alphas)}")

    def compute() -> Slice1D:
        basis = Flat(model).flatten(direction).unsqueeze(0)
        with progress_bar(len(coords), progress, "1-D slice") as bar:
            losses, accs, used = evaluate_points(model, dataset, coords.unsqueeze(1), basis,
                                                 split, method, chunk_size, bar)
        return Slice1D(coords, losses, accs, used)

    settings = dict(alphas=coords.tolist(), split=split, method=method, chunk_size=chunk_size)
    return cached(cache, "surface_1d", model, dataset, settings, [direction], Slice1D, compute)


def surface_2d(model: nn.Module, dataset: Dataset, dir_x: Sequence[torch.Tensor],
               dir_y: Sequence[torch.Tensor], points: int = 25, span: float = 1.0,
               split: str = "train", method: str = "auto", chunk_size: int | None = None,
               cache: bool = True, progress: bool | None = None) -> Surface2D:
    """Mean loss on a split over the plane weights + a * dir_x + b * dir_y, on a points x points grid
    of a, b in [-span, span] (odd points put the model itself at the centre).

    method: 'auto', 'batched', 'vmap' or 'loop' (see the module docstring). Points run in chunks
    of `chunk_size` (None: as many as keep a chunk's activations near 2 MB, at most 64).
    cache (default True) stores the result in the cache folder under a hash of the model, data, directions
    and arguments. Returns a Surface2D; the model is left unchanged.

    The plane loop is written out in notebook 04, §4, and checked against this.
    """
    check_direction(model, dir_x, "dir_x")
    check_direction(model, dir_y, "dir_y")
    _check_evaluation(split, method, chunk_size)
    coords = grid(points, span)

    def compute() -> Surface2D:
        flat = Flat(model)
        basis = torch.stack([flat.flatten(dir_x), flat.flatten(dir_y)])
        plane = torch.cartesian_prod(coords, coords)  # row-major: (alphas[i], betas[j])
        with progress_bar(len(plane), progress, "2-D surface") as bar:
            losses, accs, used = evaluate_points(model, dataset, plane, basis, split, method,
                                                 chunk_size, bar)
        shape = (points, points)
        return Surface2D(coords, coords.clone(), losses.view(shape),
                         accs.view(shape) if accs is not None else None, used)

    settings = dict(points=points, span=float(span), split=split, method=method, chunk_size=chunk_size)
    return cached(cache, "surface_2d", model, dataset, settings, [dir_x, dir_y], Surface2D, compute)
