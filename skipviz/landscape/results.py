"""What the loss-landscape results share: their cache (a result is stored under a hash of the
model, the data, the directions and the settings, and a bad file is ignored and recomputed), a
progress bar, and the check of their tensors when one is read back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import warnings
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from .. import _cache
from .._validation import check_bool
from ..data import Dataset
from ..errors import SkipvizValueError
from ..settings import cache_dir, progress_bars
from ..training import cache_key, check_fits

CACHE_FORMAT = 3  # raised whenever a stored result's meaning or layout changes


@contextlib.contextmanager
def progress(total: int, enabled: bool | None, desc: str) -> Iterator[Callable | None]:
    """A tqdm bar's update function (enabled None: follow `settings.progress_bars`), or None."""
    if not (progress_bars() if enabled is None else check_bool("progress", enabled)):
        yield None
        return
    from tqdm.auto import tqdm
    bar = tqdm(total=total, desc=desc, leave=False)
    try:
        yield bar.update
    finally:
        bar.close()


def cached(cache: bool, kind: str, model: nn.Module, dataset: Dataset, settings: dict,
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
                raise SkipvizValueError("it does not hold a " + result_type.__name__)
            result = result_type(**fields)
            result._check()
            return result
        except Exception as err:  # never trust a bad cache file: warn and recompute
            warnings.warn(f"ignoring cache file {path.name}: {err}; recomputing", stacklevel=3)
    result = compute()
    _cache.save(path, key, CACHE_FORMAT, {"result": dataclasses.asdict(result)})
    return result


def check_float64(name: str, t: object, shape: tuple[int, ...] | None = None) -> None:
    """A float64 tensor of `shape`, or of any length when shape is None (a coordinate vector)."""
    ok = isinstance(t, torch.Tensor) and t.dtype == torch.float64 and (
        t.dim() == 1 if shape is None else tuple(t.shape) == shape)
    if not ok:
        raise SkipvizValueError(f"{name} must be a float64 tensor of shape {shape or '(points,)'}")
