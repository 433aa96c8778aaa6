"""Loss landscapes (Li et al. 2018): filter-normalized random directions, 1-D and 2-D slices of
the training loss through the trained weights, and the Hessian's extreme eigenvalues by Lanczos.

Every function leaves the model's weights, buffers and train/eval mode exactly as it found them:
the weights are never written, points of the plane are evaluated with `torch.func.functional_call`
on separate tensors. The model is evaluated in eval mode without gradients, on the whole split at
once (one tensor, no DataLoader).

A direction is a list of tensors, one per tensor of `model.parameters()`, in that order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from . import _cache, batched, hvp
from ._validation import check_bool, check_choice, check_int, check_positive, check_seed
from .data import SPLITS, Dataset
from .settings import cache_dir, progress_bars
from .training import cache_key, check_fits, eval_mode

NORMALIZATIONS = ("filter", "layer", "none")
IGNORES = ("biasbn", "none")
METHODS = ("auto", "batched", "vmap", "loop")
CACHE_FORMAT = 2  # 2: CurvatureMap.steps_taken

Direction = list[torch.Tensor]


# ---------------------------------------------------------------- directions


def random_direction(model: nn.Module, normalize: str = "filter", ignore: str = "biasbn",
                     seed: int = 0) -> Direction:
    """A Gaussian random direction in weight space, one tensor per parameter of `model`.

    normalize='filter' (Li et al.): every filter of a weight tensor with 2 or more dimensions (a
    Linear row, a conv output channel) is rescaled to the norm of the same filter of the model's
    weights, so a step of 1 moves each filter by its own size. 'layer' rescales whole tensors;
    'none' keeps the raw N(0, 1) entries. ignore='biasbn' sets the directions of 1-D parameters
    (biases, normalization scales and shifts) to zero; ignore='none' keeps them, each vector
    rescaled (unless normalize='none') to the norm of its parameter.
    """
    check_choice("normalize", normalize, NORMALIZATIONS)
    check_choice("ignore", ignore, IGNORES)
    seed = check_seed("seed", seed)
    gen = torch.Generator().manual_seed(seed)
    direction = []
    for p in model.parameters():
        w = p.detach()
        d = torch.randn(w.shape, generator=gen, dtype=torch.float32).to(w.dtype)
        if w.dim() <= 1 and ignore == "biasbn":
            d.zero_()
        elif normalize == "layer" or (normalize == "filter" and w.dim() <= 1):
            d.mul_(w.norm() / d.norm())
        elif normalize == "filter":
            # One norm per filter: rows of the (filters, everything else) view.
            w_norms = w.reshape(len(w), -1).norm(dim=1)
            d_norms = d.reshape(len(d), -1).norm(dim=1)
            d.mul_((w_norms / d_norms).view(-1, *[1] * (w.dim() - 1)))
        direction.append(d)
    return direction


def direction_to(model: nn.Module, state: dict[str, torch.Tensor]) -> Direction:
    """The direction from the model's current weights to the weights in `state` (a state_dict,
    e.g. saved at initialization): state[name] - parameter, one tensor per parameter."""
    direction = []
    for name, p in model.named_parameters():
        if name not in state or state[name].shape != p.shape:
            raise ValueError(f"state must hold a tensor of shape {tuple(p.shape)} for {name!r}")
        direction.append(state[name].detach().to(p.dtype) - p.detach())
    return direction


def check_direction(model: nn.Module, direction: Sequence[torch.Tensor], name: str = "direction") -> None:
    """Raise ValueError unless `direction` has one finite tensor per parameter of `model`, each of
    the parameter's shape."""
    shapes = [tuple(p.shape) for p in model.parameters()]
    if isinstance(direction, torch.Tensor) or not isinstance(direction, Sequence):
        raise ValueError(f"{name} must be a list of {len(shapes)} tensors, one per parameter "
                         f"of the model (see random_direction); got {type(direction).__name__}")
    if len(direction) != len(shapes):
        raise ValueError(f"{name} must have one tensor per parameter of the model ({len(shapes)}); "
                         f"got {len(direction)}")
    for i, (d, shape) in enumerate(zip(direction, shapes)):
        if not isinstance(d, torch.Tensor) or tuple(d.shape) != shape:
            got = tuple(d.shape) if isinstance(d, torch.Tensor) else type(d).__name__
            raise ValueError(f"{name}[{i}] must have the shape of parameter {i}, {shape}; got {got}")
        if not torch.isfinite(d).all():
            raise ValueError(f"{name}[{i}] contains inf or nan")


# ---------------------------------------------------------------- plumbing


def _grid(steps: int, span: float) -> torch.Tensor:
    """`steps` coordinates from -span to span; an odd count puts 0 exactly in the middle."""
    check_int("steps", steps, minimum=2)
    check_positive("span", span)
    coords = torch.linspace(-span, span, steps, dtype=torch.float64)
    if steps % 2:
        coords[steps // 2] = 0.0  # exact, not linspace's rounding
    return coords


class _Flat:
    """The model's parameters as one flat vector, and the directions flattened the same way."""

    def __init__(self, model: nn.Module):
        self.names = [n for n, _ in model.named_parameters()]
        self.shapes = [p.shape for p in model.parameters()]
        self.sizes = [p.numel() for p in model.parameters()]
        self.vector = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
        self.buffers = {n: b.detach() for n, b in model.named_buffers()}

    def flatten(self, direction: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([d.detach().reshape(-1).to(self.vector.dtype) for d in direction])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of `flat` (..., n) as a {name: (..., *shape)} parameter dict."""
        lead = flat.shape[:-1]
        parts = torch.split(flat, self.sizes, dim=-1)
        return {n: t.reshape((*lead, *s)) for n, t, s in zip(self.names, parts, self.shapes)}


def _losses(outputs: torch.Tensor, y: torch.Tensor, classification: bool) -> torch.Tensor:
    """outputs (points, n, out) -> the mean loss of every point (points,): the loss of
    `training.loss_for_targets`, for all points in one call."""
    if classification:
        # Classes along dim 1, as cross_entropy expects for (points, classes, n): measured 10x
        # faster on CPU than the same loss over a last dimension of 10 classes.
        return F.cross_entropy(outputs.transpose(1, 2), y.expand(len(outputs), -1),
                               reduction="none").mean(1)
    return (outputs - y).pow(2).flatten(1).mean(1)


def _point_losses(outputs: torch.Tensor, y: torch.Tensor, classification: bool
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """outputs (points, n, out) -> per-point mean loss (points,) float64 and accuracy (points,)
    or None for regression."""
    losses = _losses(outputs, y, classification).double()
    # max().indices: the same first-maximum rule as argmax, measured 2x faster over 10 classes.
    return losses, ((outputs.max(-1).indices == y).double().mean(-1) if classification else None)


# Which method was faster, per (model signature, data shape, chunk size), measured once per
# process so that repeated calls on the same model give identical numbers; and the chunk size
# per (model, data shape).
_METHOD_CHOICE: dict[tuple, set[str]] = {}
_CHUNKS: dict[tuple, int] = {}

# A chunk's activations should stay near this many scalars (2 MB of float32): measured on this
# machine, point-batched passes slow down once a chunk no longer fits the caches.
_CHUNK_SCALARS = 2 ** 19


def _chunk_for(model: nn.Module, x: torch.Tensor, flat: _Flat) -> int:
    """Points per chunk: _CHUNK_SCALARS over the largest activation of one pass on x, in 1..64."""
    key = (type(model).__name__, tuple(tuple(s) for s in flat.shapes), tuple(x.shape))
    if key not in _CHUNKS:
        _CHUNKS[key] = _measure_chunk(model, x, flat)
    return _CHUNKS[key]


def _measure_chunk(model: nn.Module, x: torch.Tensor, flat: _Flat) -> int:
    widest = [1]  # the outputs of modules only: the batched pass does not repeat the input
    hooks = [m.register_forward_hook(lambda _m, _i, out: widest.append(
        out.numel() if isinstance(out, torch.Tensor) else 0)) for m in model.modules()]
    # Two examples, not one: a batch norm that normalizes with the batch's own statistics even in
    # eval mode (track_running_stats=False) cannot take a batch of one.
    sample = x[:2]
    try:
        functional_call(model, (flat.unflatten(flat.vector), flat.buffers), (sample,))
    finally:
        for h in hooks:
            h.remove()
    per_example = max(widest) / len(sample)
    return max(1, min(64, int(_CHUNK_SCALARS // (per_example * len(x)))))


def _evaluate_points(model: nn.Module, dataset: Dataset, points: torch.Tensor, basis: torch.Tensor,
                     split: str, method: str, chunk_size: int | None,
                     progress: Callable | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """Loss (and accuracy) at weights = trained + points @ basis, for points (P, k), basis (k, n).
    The public callers have checked split, method and chunk_size."""
    x, y = dataset.split(split)
    classification = dataset.task == "classification"
    flat = _Flat(model)
    points = points.to(flat.vector.dtype)

    def forward(params: dict[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(model, (params, flat.buffers), (x,))

    def weights(rows: torch.Tensor) -> torch.Tensor:
        # Always the same buffer, small enough to stay in the caches: a fresh megabyte-sized
        # tensor per chunk costs page faults on every chunk.
        return torch.addmm(flat.vector, rows, basis, out=buffer[:len(rows)])

    # Each run maps a chunk of points, rows (chunk, k), to their losses and accuracies.
    def run_batched(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if plane is not None:
            return _point_losses(plane(rows), y, classification)
        params = evaluator.prepare(flat.unflatten(weights(rows)), flat.buffers)
        return _point_losses(evaluator.run(params, flat.buffers, x), y, classification)

    def run_vmap(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        return _point_losses(vmap(forward)(flat.unflatten(weights(rows))), y, classification)

    def run_loop(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        # Each row is contiguous, so its unflattened views are the parameters as they are.
        results = [_point_losses(forward(flat.unflatten(w)).unsqueeze(0), y, classification)
                   for w in weights(rows)]
        losses = torch.cat([r[0] for r in results])
        return losses, (torch.cat([r[1] for r in results]) if classification else None)

    with eval_mode(model), torch.no_grad():
        try:
            evaluator = batched.evaluator_for(model)
        except Exception:  # a model the tracer cannot take: the reference paths remain
            evaluator = None
        if evaluator is None and method == "batched":
            raise ValueError("method='batched' needs a model whose layers with parameters are all "
                             f"{', '.join(t.__name__ for t in batched.SUPPORTED_LAYERS)}; "
                             "use method='vmap' or 'loop'")
        runs = {"vmap": run_vmap, "loop": run_loop}
        plane = None  # the batched pass along the plane's directions, where it applies
        if evaluator is not None:
            runs["batched"] = run_batched
            if method in ("auto", "batched"):
                try:
                    plane = evaluator.on_plane(flat.unflatten(flat.vector.unsqueeze(0)),
                                               flat.unflatten(basis), flat.buffers, x)
                except Exception:
                    plane = None
        if chunk_size is None:
            chunk_size = _chunk_for(model, x, flat)
        buffer = torch.empty(min(chunk_size, len(points)), len(flat.vector), dtype=flat.vector.dtype)
        trusted = _trusted_methods(model, flat, x, chunk_size, points[:chunk_size], runs, plane is not None)
        if method == "auto":
            method = next(name for name in ("batched", "vmap", "loop") if name in trusted)
        elif method not in trusted:
            raise ValueError(f"method={method!r} does not reproduce this model's losses (it differs "
                             "from evaluating one point at a time on a trial point): the model does "
                             "something the fast path cannot batch, e.g. statistics over the batch, "
                             "an in-place write or a weight used twice; use method='auto' or 'loop'")
        losses, accuracies = [], []
        for start in range(0, len(points), chunk_size):
            loss, acc = runs[method](points[start:start + chunk_size])
            losses.append(loss)
            accuracies.append(acc)
            if progress is not None:
                progress(len(loss))
    return (torch.cat(losses), torch.cat(accuracies) if classification else None, method)


def _trusted_methods(model: nn.Module, flat: _Flat, x: torch.Tensor, chunk_size: int,
                     trial: torch.Tensor, runs: dict[str, Callable], plane: bool) -> set[str]:
    """The methods whose losses agree with the one-point-at-a-time loop's on two points of the
    `trial` chunk ('loop' always). 'auto' takes the first of batched, vmap, loop in it: chosen
    by capability, never by timing, so a notebook takes the same path on every machine and run.
    Decided once per model signature (structure and settings, skips included), data shape and
    chunk size in this process; a method that raises is not trusted."""
    key = (batched.signature(model), tuple(tuple(s) for s in flat.shapes), tuple(x.shape),
           chunk_size, tuple(flat.buffers), plane, tuple(sorted(runs)))
    if key not in _METHOD_CHOICE:
        reference, _ = runs["loop"](trial[:2])
        trusted = {"loop"}
        for name in ("batched", "vmap"):
            if name not in runs:
                continue
            try:
                if torch.allclose(runs[name](trial[:2])[0], reference, rtol=1e-4, atol=1e-6):
                    trusted.add(name)
            except Exception:  # anything this method cannot handle (a layer, tied weights, ...)
                pass
        _METHOD_CHOICE[key] = trusted
    return _METHOD_CHOICE[key]


@contextlib.contextmanager
def _progress(total: int, enabled: bool | None, desc: str) -> Iterator[Callable | None]:
    if not (progress_bars() if enabled is None else enabled):
        yield None
        return
    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc=desc, leave=False)
    try:
        yield bar.update
    finally:
        bar.close()


def _cached(cache: bool, kind: str, model: nn.Module, dataset: Dataset, settings: dict,
            directions: Sequence[Sequence[torch.Tensor]], result_type: type,
            compute: Callable[[], object]):
    """compute(), or its result stored under a hash of the model, data, directions and settings.

    A file that cannot be read, belongs to another key or does not hold a valid `result_type` is
    ignored with a warning and recomputed. Checks first that the model fits the data set.
    """
    check_fits(model, dataset)
    if not check_bool("cache", cache):
        return compute()
    h = hashlib.sha256()
    for direction in directions:
        for d in direction:
            h.update(d.detach().contiguous().numpy().tobytes())
    key = cache_key(model, dataset, {"kind": kind, "directions": h.hexdigest(), **settings,
                                     "landscape_format": CACHE_FORMAT})
    path = cache_dir() / "landscapes" / f"{key}.pt"
    if path.exists():
        try:
            fields = _cache.load(path, key, CACHE_FORMAT)["result"]
            names = {f.name for f in dataclasses.fields(result_type)}
            if not isinstance(fields, dict) or set(fields) != names:
                raise ValueError("it does not hold a " + result_type.__name__)
            result = result_type(**fields)
            result._check()
            return result
        except Exception as err:  # never trust a bad cache file: warn and recompute
            warnings.warn(f"ignoring cache file {path.name}: {err}; recomputing", stacklevel=3)
    result = compute()
    _cache.save(path, key, CACHE_FORMAT, {"result": dataclasses.asdict(result)})
    return result


# ---------------------------------------------------------------- slices


def _check_tensor(name: str, t: object, shape: tuple[int, ...] | None = None) -> None:
    """A float64 tensor of `shape`, or of any length when shape is None (a coordinate vector)."""
    ok = isinstance(t, torch.Tensor) and t.dtype == torch.float64 and (
        t.dim() == 1 if shape is None else tuple(t.shape) == shape)
    if not ok:
        raise ValueError(f"{name} must be a float64 tensor of shape {shape or '(steps,)'}")


def _check_evaluated(losses: object, accuracies: object, method: object,
                     shape: tuple[int, ...]) -> None:
    """The evaluated part of a Slice1D or Surface2D: losses (and accuracies unless None) of
    `shape`, and the method that evaluated them."""
    _check_tensor("losses", losses, shape)
    if accuracies is not None:
        _check_tensor("accuracies", accuracies, shape)
    check_choice("method", method, METHODS[1:])


@dataclass
class Slice1D:
    """The loss along one direction: losses[i] at weights + alphas[i] * direction.

    alphas, losses, accuracies: (steps,) float64 tensors; accuracies (0..1) is None for regression.
    method: 'batched', 'vmap' or 'loop', how the points were evaluated.
    """

    alphas: torch.Tensor
    losses: torch.Tensor
    accuracies: torch.Tensor | None
    method: str

    def _check(self) -> None:
        _check_tensor("alphas", self.alphas)
        _check_evaluated(self.losses, self.accuracies, self.method, tuple(self.alphas.shape))


@dataclass
class Surface2D:
    """The loss over a plane: losses[i, j] at weights + alphas[i] * dir_x + betas[j] * dir_y.

    alphas, betas: (steps,) centred coordinates; losses, accuracies: (steps, steps) float64
    tensors (accuracies in 0..1, None for regression); method: 'batched', 'vmap' or 'loop'.
    """

    alphas: torch.Tensor
    betas: torch.Tensor
    losses: torch.Tensor
    accuracies: torch.Tensor | None
    method: str

    def _check(self) -> None:
        _check_tensor("alphas", self.alphas)
        _check_tensor("betas", self.betas)
        _check_evaluated(self.losses, self.accuracies, self.method,
                         (len(self.alphas), len(self.betas)))

    @property
    def center_loss(self) -> float:
        """The loss at (0, 0), the model's own weights (odd `steps` only)."""
        i, j = int((self.alphas == 0).nonzero()[0]), int((self.betas == 0).nonzero()[0])
        return float(self.losses[i, j])


def _check_evaluation(split: str, method: str, chunk_size: int | None) -> None:
    check_choice("split", split, SPLITS)
    check_choice("method", method, METHODS)
    if chunk_size is not None:
        check_int("chunk_size", chunk_size)


def surface_1d(model: nn.Module, dataset: Dataset, direction: Sequence[torch.Tensor],
               steps: int = 51, span: float = 1.0, alphas: Sequence[float] | None = None,
               split: str = "train", method: str = "auto", chunk_size: int | None = None,
               cache: bool = False, progress: bool | None = False) -> Slice1D:
    """Mean loss on a split along weights + alpha * direction, for `steps` alphas in [-span, span]
    (or the given `alphas`). Returns a Slice1D; the model is left unchanged.

    method and chunk_size as in `surface_2d`; cache=True stores the result in the cache folder.
    """
    check_direction(model, direction)
    _check_evaluation(split, method, chunk_size)
    if alphas is None:
        coords = _grid(steps, span)
    else:
        coords = torch.as_tensor(alphas, dtype=torch.float64).reshape(-1)
        if len(coords) < 2 or not torch.isfinite(coords).all():
            raise ValueError("alphas must hold at least 2 finite numbers")

    def compute() -> Slice1D:
        basis = _Flat(model).flatten(direction).unsqueeze(0)
        with _progress(len(coords), progress, "1-D slice") as bar:
            losses, accs, used = _evaluate_points(model, dataset, coords.unsqueeze(1), basis,
                                                  split, method, chunk_size, bar)
        return Slice1D(coords, losses, accs, used)

    settings = dict(alphas=coords.tolist(), split=split, method=method, chunk_size=chunk_size)
    return _cached(cache, "surface_1d", model, dataset, settings, [direction], Slice1D, compute)


def surface_2d(model: nn.Module, dataset: Dataset, dir_x: Sequence[torch.Tensor],
               dir_y: Sequence[torch.Tensor], steps: int = 25, span: float = 1.0,
               split: str = "train", method: str = "auto", chunk_size: int | None = None,
               cache: bool = False, progress: bool | None = False) -> Surface2D:
    """Mean loss on a split over the plane weights + a * dir_x + b * dir_y, on a steps x steps grid
    of a, b in [-span, span] (odd steps put the model itself at the centre).

    Points are evaluated in chunks of `chunk_size` (None: as many as keep a chunk's activations
    near 2 MB, at most 64). method 'batched' runs a chunk as one forward pass with every weight
    tensor stacked along a points dimension (`skipviz.batched`: Linear, Conv1d and BatchNorm
    layers); 'vmap' does the same through `torch.func.vmap`, for any model; 'loop' runs one point
    after another; 'auto' takes 'batched' where it is supported and agrees with the loop on two
    points, else 'vmap' where it agrees, else 'loop' (by capability, so every machine takes the
    same path).
    cache=True stores the result in the cache folder under a hash of the model, data, directions
    and arguments. Returns a Surface2D; the model is left unchanged.
    """
    check_direction(model, dir_x, "dir_x")
    check_direction(model, dir_y, "dir_y")
    _check_evaluation(split, method, chunk_size)
    coords = _grid(steps, span)

    def compute() -> Surface2D:
        flat = _Flat(model)
        basis = torch.stack([flat.flatten(dir_x), flat.flatten(dir_y)])
        points = torch.cartesian_prod(coords, coords)  # row-major: (alphas[i], betas[j])
        with _progress(len(points), progress, "2-D surface") as bar:
            losses, accs, used = _evaluate_points(model, dataset, points, basis, split, method,
                                                  chunk_size, bar)
        shape = (steps, steps)
        return Surface2D(coords, coords.clone(), losses.view(shape),
                         accs.view(shape) if accs is not None else None, used)

    settings = dict(steps=steps, span=float(span), split=split, method=method,
                    chunk_size=chunk_size)
    return _cached(cache, "surface_2d", model, dataset, settings, [dir_x, dir_y], Surface2D,
                   compute)


# ---------------------------------------------------------------- curvature


@dataclass
class HessianExtremes:
    """The largest and smallest eigenvalues of the Hessian of the mean loss (all parameters).

    residual_max / residual_min: ||H v - lambda v|| for the unit Ritz vectors v, computed from the
    Hessian-vector products Lanczos made (0 = exact eigenpair). steps: Lanczos iterations done.
    """

    lambda_max: float
    lambda_min: float
    residual_max: float
    residual_min: float
    steps: int

    def _check(self) -> None:
        for name in ("lambda_max", "lambda_min", "residual_max", "residual_min"):
            if not isinstance(getattr(self, name), float):
                raise ValueError(f"{name} must be a float")
        check_int("steps", self.steps, minimum=2)

    @property
    def ratio(self) -> float:
        """|lambda_min / lambda_max|: near 0 where the surface is locally convex."""
        return abs(self.lambda_min / self.lambda_max)


# Per (model signature, data, settings): whether the fast Hessian-vector products agreed with
# the reference on a probe (see `_hessian_operator`).
_HVP_TRUSTED: dict[tuple, bool] = {}


def _hessian_operator(model: nn.Module, dataset: Dataset, split: str, batch_size: int | None,
                      weights: torch.Tensor, autograd: bool = False
                      ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The Hessian-vector products of `_products`, checked before they are trusted: the first
    time a model signature, data shape and setting meet, the fast products (the R-operator or
    the point-batched pass) are compared on a random probe with the reference (autograd through
    `functional_call`, one point at a time) on up to two points; if they disagree the reference
    is used, for this call and every later one of that kind."""
    try:
        fast = _products(model, dataset, split, batch_size, weights, autograd)
    except Exception:  # a model the fast products cannot take (tied weights, an odd layer, ...)
        return _products(model, dataset, split, batch_size, weights, True, reference=True)
    if fast.kind == "reference":
        return fast
    n = weights.shape[1]
    key = (fast.kind, batched.signature(model), tuple(tuple(p.shape) for p in model.parameters()),
           tuple(dataset.split(split)[0].shape), split, batch_size, len(weights) > 1)
    if key not in _HVP_TRUSTED:
        rows = min(2, len(weights))
        probe = torch.randn(len(weights), n, generator=torch.Generator().manual_seed(0), dtype=weights.dtype)
        reference = _products(model, dataset, split, batch_size, weights[:rows], True, reference=True)
        want = reference(probe[:rows])
        try:
            got = fast(probe)[:rows]
            _HVP_TRUSTED[key] = bool((got - want).norm() <= 1e-3 * want.norm() + 1e-10)
        except Exception:
            _HVP_TRUSTED[key] = False
    return fast if _HVP_TRUSTED[key] else _products(model, dataset, split, batch_size, weights, True,
                                                    reference=True)


def _products(model: nn.Module, dataset: Dataset, split: str, batch_size: int | None,
              weights: torch.Tensor, autograd: bool = False, reference: bool = False
              ) -> Callable[[torch.Tensor], torch.Tensor]:
    """matvec(v (P, n)) -> (P, n), whose row p is H(weights[p]) v[p]: the Hessian of the mean loss
    over the split, taken at that row's weights (weights (P, n), flat like `_Flat.vector`).

    For an MLP (Linear, batch norm, activations, additions) without `batch_size`, the products
    are Pearlmutter's R-operator written out layer by layer (`skipviz.hvp`). Otherwise, or with
    autograd=True (for comparisons), reverse over reverse: the gradient g(w) is built once,
    with its graph, and each product is one more backward pass through it (the gradient of
    g . v), so a Lanczos run pays for the forward pass and the first backward pass only once.
    With `batch_size`, the split is processed in pieces and the graph rebuilt piece by piece for
    every product (memory bounded by one piece); each piece's product is weighted by its share
    of the data, so the result is the mean's Hessian, not a sum over pieces. Several rows run
    together in one point-batched pass (`skipviz.batched`) when the model's layers allow it; a
    single row, or a model they do not allow, through `functional_call`.
    """
    x, y = dataset.split(split)
    classification = dataset.task == "classification"
    flat = _Flat(model)
    n = len(x)
    if batch_size is None and not autograd:
        # An MLP's products written out by the R-operator (`skipviz.hvp`): fewer operations
        # than autograd's second backward pass, about twice as fast.
        rop = hvp.hessian_operator(model, flat.unflatten(weights), flat.buffers, x, y,
                                   "cross_entropy" if classification else "mse")
        if rop is not None:
            return _Products(rop, "r-operator")
    pieces = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n, batch_size)] \
        if batch_size else [(x, y)]
    # Several points run through one point-batched pass. A single point runs through the
    # model's own layers: the batched pass folds batch norms into the layers before them, and
    # in float32 a ReLU input within rounding of zero can then fall on the other side.
    evaluator = batched.evaluator_for(model) if len(weights) > 1 and not reference else None
    leaves = [w.detach().clone().requires_grad_(True)
              for w in (weights.split(len(weights)) if evaluator else weights.split(1))]

    def gradient(w: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        """Each row's gradient of its mean loss on (xb, yb), (rows, n), with its graph."""
        with torch.enable_grad():
            if evaluator is not None:
                out = evaluator(flat.unflatten(w), flat.buffers, xb)
            else:
                out = functional_call(model, (flat.unflatten(w[0]), flat.buffers), (xb,)).unsqueeze(0)
            # The rows' losses are independent, so the gradient of their sum holds each row's own.
            total = _losses(out, yb, classification).sum() * (len(xb) / n)
            return torch.autograd.grad(total, w, create_graph=True)[0]

    def product(g: torch.Tensor, w: torch.Tensor, v: torch.Tensor, keep: bool) -> torch.Tensor:
        with torch.enable_grad():
            return torch.autograd.grad(g, w, grad_outputs=v, retain_graph=keep)[0]

    if batch_size is None:
        grads = [gradient(w, x, y) for w in leaves]

        def matvec(v: torch.Tensor) -> torch.Tensor:
            rows = v.to(weights.dtype).split([len(w) for w in leaves])
            return torch.cat([product(g, w, r, True) for g, w, r in zip(grads, leaves, rows)])
    else:
        def matvec(v: torch.Tensor) -> torch.Tensor:
            rows = v.to(weights.dtype).split([len(w) for w in leaves])
            return torch.cat([sum(product(gradient(w, xb, yb), w, r, False) for xb, yb in pieces)
                              for w, r in zip(leaves, rows)])

    return _Products(matvec, "batched" if evaluator is not None else "reference")


@dataclass
class _Products:
    """A Hessian-vector product function and how it computes: 'r-operator' (`skipviz.hvp`),
    'batched' (autograd through `skipviz.batched`) or 'reference' (autograd, functional_call)."""

    matvec: Callable[[torch.Tensor], torch.Tensor]
    kind: str

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return self.matvec(v)


def lanczos_extremes(matvec: Callable[[torch.Tensor], torch.Tensor], n: int, steps: int,
                     batch: int = 1, seed: int = 0, tol: float | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Largest and smallest eigenvalues of `batch` symmetric n x n operators at once, by Lanczos
    with full reorthogonalization.

    matvec maps (batch, n) -> (batch, n). At most `steps` iterations per operator. An operator
    whose Krylov space closes (an invariant subspace: its Ritz values are then exact) stops there,
    and with `tol` one stops once both of its Ritz pairs have residual bounds below
    tol * max |Ritz value| (the bound beta_j |s_j| of Lanczos's relation A Q = Q T + beta_j q e_j',
    which full reorthogonalization keeps accurate); the others go on, and the products of a
    finished operator's row are ignored from then on. Returns (lambda_max, lambda_min,
    residual_max, residual_min, iterations): the first four (batch,) float64, the residuals
    ||A v - lambda v|| of the unit Ritz vectors v = Q s, computed as (A Q) s from the stored
    products (A is linear), so no extra matvec is needed; iterations (batch,) int64, each
    operator's own count.
    """
    check_int("steps", steps, minimum=2)
    if tol is not None:
        check_positive("tol", tol)
    steps = min(steps, n)
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n, generator=gen, dtype=torch.float64).expand(batch, n).clone()
    q /= q.norm(dim=1, keepdim=True)
    # Only rows already written are ever read: no need to zero megabytes first.
    basis = torch.empty(batch, steps, n, dtype=torch.float64)
    products = torch.empty(batch, steps, n, dtype=torch.float64)  # A q_j, kept for the residuals
    alphas = torch.zeros(batch, steps, dtype=torch.float64)
    betas = torch.zeros(batch, steps, dtype=torch.float64)
    done = torch.full((batch,), steps, dtype=torch.int64)
    running = torch.ones(batch, dtype=torch.bool)
    for j in range(steps):
        basis[:, j] = q
        w = matvec(q).double()
        products[:, j] = w
        alphas[:, j] = (w * q).sum(1)
        # Full reorthogonalization instead of the three-term recurrence alone: in floating point
        # the Lanczos vectors lose orthogonality and ghost eigenvalues appear. A second pass when
        # the first removed most of w (the DGKS test; "twice is enough").
        before = w.norm(dim=1)
        done_basis = basis[:, :j + 1]
        for _ in range(2):
            coefficients = torch.bmm(done_basis, w.unsqueeze(2))  # (batch, j + 1, 1)
            w.unsqueeze(1).baddbmm_(coefficients.transpose(1, 2), done_basis, alpha=-1)
            after = w.norm(dim=1)
            if bool((after > 0.7071 * before).all()):
                break
            before = after
        betas[:, j] = w.norm(dim=1)
        if j == steps - 1:
            break
        closed = betas[:, j] <= 1e-12 * alphas[:, : j + 1].abs().amax(1).clamp_min(1e-30)
        if tol is not None and j >= 1:
            closed |= _converged(alphas[:, : j + 1], betas[:, : j + 1], tol)
        stopping = running & closed
        done[stopping] = j + 1
        running &= ~closed
        if not bool(running.any()):
            break
        # A finished row is fed its last vector again: harmless, and never read back.
        q = torch.where(running.unsqueeze(1), w / betas[:, j : j + 1].clamp_min(1e-300), q)
    lmax, lmin, rmax, rmin = (torch.empty(batch, dtype=torch.float64) for _ in range(4))
    for m in done.unique().tolist():
        rows = (done == m).nonzero().squeeze(1)
        values, vectors = torch.linalg.eigh(_tridiagonal(alphas[rows, :m], betas[rows, : m - 1]))
        for k, lam_out, res_out in ((-1, lmax, rmax), (0, lmin, rmin)):  # the largest, the smallest
            lam, s = values[:, k], vectors[:, :, k]
            ritz = torch.einsum("bk,bkn->bn", s, basis[rows, :m])
            # A is linear, so A (Q s) = (A Q) s from the products already made: the true residual
            # of the Ritz pair, without another product.
            image = torch.einsum("bk,bkn->bn", s, products[rows, :m])
            lam_out[rows] = lam
            res_out[rows] = (image - lam.unsqueeze(1) * ritz).norm(dim=1)
    return lmax, lmin, rmax, rmin, done


def _tridiagonal(alphas: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """(batch, m) diagonals and (batch, m - 1) off-diagonals -> (batch, m, m) matrices."""
    return torch.diag_embed(alphas) + torch.diag_embed(betas, 1) + torch.diag_embed(betas, -1)


def _converged(alphas: torch.Tensor, betas: torch.Tensor, tol: float) -> torch.Tensor:
    """(batch,) whether each operator's extreme Ritz pairs after m steps (alphas (batch, m), betas
    (batch, m), the last one the coupling to the next vector) have residual bounds below
    tol * max |Ritz value|."""
    values, vectors = torch.linalg.eigh(_tridiagonal(alphas, betas[:, :-1]))
    scale = values.abs().amax(1)
    bounds = betas[:, -1:] * vectors[:, -1, [0, -1]].abs()  # (batch, 2): smallest and largest
    return (bounds <= tol * scale.unsqueeze(1)).all(1)


def hessian_extremes(model: nn.Module, dataset: Dataset, steps: int = 40, split: str = "train",
                     tol: float | None = None, batch_size: int | None = None, seed: int = 0,
                     cache: bool = False) -> HessianExtremes:
    """lambda_max and lambda_min of the Hessian of the mean loss over a split, with respect to all
    parameters, at the model's weights: up to `steps` Lanczos iterations on Hessian-vector
    products, fully reorthogonalized, from a random start fixed by `seed`. With `tol`, Lanczos
    stops once both residual bounds are below tol times the largest |eigenvalue| found (see
    `lanczos_extremes`); `steps` in the result says how many iterations ran.
    batch_size splits the data to bound memory without changing the result (each product then
    recomputes the gradient piece by piece). cache=True stores the result in the cache folder.
    """
    check_int("steps", steps, minimum=2)
    check_choice("split", split, SPLITS)
    seed = check_seed("seed", seed)
    if tol is not None:
        check_positive("tol", tol)
    if batch_size is not None:
        check_int("batch_size", batch_size)

    def compute() -> HessianExtremes:
        with eval_mode(model):
            weights = _Flat(model).vector.unsqueeze(0)
            matvec = _hessian_operator(model, dataset, split, batch_size, weights)
            lmax, lmin, rmax, rmin, done = lanczos_extremes(matvec, weights.shape[1], steps,
                                                            seed=seed, tol=tol)
        return HessianExtremes(float(lmax[0]), float(lmin[0]), float(rmax[0]), float(rmin[0]),
                               int(done[0]))

    settings = dict(steps=steps, split=split, batch_size=batch_size, seed=seed)
    if tol is not None:  # leaves the keys of results cached without tol unchanged
        settings["tol"] = tol
    return _cached(cache, "hessian_extremes", model, dataset, settings, [], HessianExtremes,
                   compute)


@dataclass
class CurvatureMap:
    """Hessian extremes over a plane: lambda_max[i, j] and lambda_min[i, j] at
    weights + alphas[i] * dir_x + betas[j] * dir_y; all (steps, steps) float64 tensors except the
    (steps,) coordinates. residual_max / residual_min as in HessianExtremes. lanczos_steps: the
    iterations asked for (at most the number of parameters); steps_taken (steps, steps) int64:
    the iterations each point really ran (fewer where its Krylov space closed)."""

    alphas: torch.Tensor
    betas: torch.Tensor
    lambda_max: torch.Tensor
    lambda_min: torch.Tensor
    residual_max: torch.Tensor
    residual_min: torch.Tensor
    lanczos_steps: int
    steps_taken: torch.Tensor

    def _check(self) -> None:
        _check_tensor("alphas", self.alphas)
        _check_tensor("betas", self.betas)
        shape = (len(self.alphas), len(self.betas))
        for name in ("lambda_max", "lambda_min", "residual_max", "residual_min"):
            _check_tensor(name, getattr(self, name), shape)
        check_int("lanczos_steps", self.lanczos_steps, minimum=2)
        taken = self.steps_taken
        if not (isinstance(taken, torch.Tensor) and taken.dtype == torch.int64 and tuple(taken.shape) == shape
                and bool(((taken >= 1) & (taken <= self.lanczos_steps)).all())):
            raise ValueError(f"steps_taken must be an int64 tensor of shape {shape} in 1..lanczos_steps")

    @property
    def ratio(self) -> torch.Tensor:
        """|lambda_min / lambda_max| at every grid point (Li et al.'s figure 7)."""
        return (self.lambda_min / self.lambda_max).abs()


def curvature_map(model: nn.Module, dataset: Dataset, dir_x: Sequence[torch.Tensor],
                  dir_y: Sequence[torch.Tensor], steps: int = 7, span: float = 1.0,
                  lanczos_steps: int = 30, split: str = "train", chunk_size: int = 8,
                  batch_size: int | None = None, seed: int = 0, cache: bool = False,
                  progress: bool | None = False) -> CurvatureMap:
    """lambda_max and lambda_min of the Hessian of the mean loss at every point of a steps x steps
    grid on the plane of `surface_2d` (same coordinates for the same steps and span).

    The grid points of a chunk run Lanczos in lockstep: one point-batched gradient graph for the
    chunk (`skipviz.batched`, where the model's layers allow), built once and reused by every
    Hessian-vector product, and one batched reorthogonalization and tridiagonal eigensolve.
    Memory grows with chunk_size times the graph of one pass over the split; batch_size bounds
    it as in `hessian_extremes`. cache=True
    stores the result in the cache folder.
    """
    check_direction(model, dir_x, "dir_x")
    check_direction(model, dir_y, "dir_y")
    check_int("lanczos_steps", lanczos_steps, minimum=2)
    check_choice("split", split, SPLITS)
    check_int("chunk_size", chunk_size)
    seed = check_seed("seed", seed)
    if batch_size is not None:
        check_int("batch_size", batch_size)
    coords = _grid(steps, span)

    def compute() -> CurvatureMap:
        points = torch.cartesian_prod(coords, coords)
        results = []
        with eval_mode(model), _progress(len(points), progress, "curvature map") as bar:
            flat = _Flat(model)
            basis = torch.stack([flat.flatten(dir_x), flat.flatten(dir_y)])
            for start in range(0, len(points), chunk_size):
                weights = flat.vector + points[start:start + chunk_size].to(flat.vector.dtype) @ basis
                matvec = _hessian_operator(model, dataset, split, batch_size, weights)
                results.append(lanczos_extremes(matvec, weights.shape[1], lanczos_steps,
                                                batch=len(weights), seed=seed))
                del matvec  # frees this chunk's values and graph before the next is built
                if bar is not None:
                    bar(len(weights))
        lmax, lmin, rmax, rmin, taken = (torch.cat(r).view(steps, steps) for r in zip(*results))
        return CurvatureMap(coords, coords.clone(), lmax, lmin, rmax, rmin,
                            min(lanczos_steps, len(flat.vector)), taken)

    settings = dict(steps=steps, span=float(span), lanczos_steps=lanczos_steps, split=split,
                    chunk_size=chunk_size, batch_size=batch_size, seed=seed)
    return _cached(cache, "curvature_map", model, dataset, settings, [dir_x, dir_y], CurvatureMap,
                   compute)


# ---------------------------------------------------------------- roughness


def slice_curvature(surface: Surface2D) -> tuple[torch.Tensor, torch.Tensor]:
    """The curvature of the plotted slice itself: eigenvalues (largest, smallest) of the 2 x 2
    finite-difference Hessian of losses[i, j] at every interior grid point, in loss units per
    squared coordinate step. Returns two (steps - 2, steps - 2) float64 tensors.

    A negative smallest eigenvalue proves the full loss is non-convex there (the slice is a
    restriction of it); a slice that looks convex proves nothing about the other directions.
    """
    f = surface.losses
    ha = (surface.alphas[1] - surface.alphas[0]).item()
    hb = (surface.betas[1] - surface.betas[0]).item()
    faa = (f[2:, 1:-1] - 2 * f[1:-1, 1:-1] + f[:-2, 1:-1]) / ha ** 2
    fbb = (f[1:-1, 2:] - 2 * f[1:-1, 1:-1] + f[1:-1, :-2]) / hb ** 2
    fab = (f[2:, 2:] - f[2:, :-2] - f[:-2, 2:] + f[:-2, :-2]) / (4 * ha * hb)
    mean, gap = (faa + fbb) / 2, torch.sqrt(((faa - fbb) / 2) ** 2 + fab ** 2)
    return mean + gap, mean - gap


def nonconvex_fraction(lambda_max: torch.Tensor, lambda_min: torch.Tensor,
                       threshold: float = 0.1) -> float:
    """The share of points whose negative curvature is not negligible: lambda_min < 0 and
    |lambda_min / lambda_max| > threshold (Li et al. colour |lambda_min / lambda_max| in figure 7).
    Takes the maps of `curvature_map` or `slice_curvature`; returns a number in 0..1."""
    check_positive("threshold", threshold)
    if lambda_max.shape != lambda_min.shape or lambda_max.numel() == 0:
        raise ValueError("lambda_max and lambda_min must be maps of the same, non-empty shape")
    bad = (lambda_min < 0) & (lambda_min.abs() > threshold * lambda_max.abs())
    return bad.double().mean().item()
