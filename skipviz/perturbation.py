"""Do residual blocks compute a perturbation from identity? Hauser's (2019) measures, derived in
notebook 06: per block the absolute perturbation |x_{l+1} - x_l| and the scaled one
|x_{l+1} - x_l| / |x_l| (per example, then averaged over the examples), and per section of
equal-shape blocks the computational distance d, the scaled distance d_scaled, their means over
the L blocks, and the stopping rule L = ceil(d_scaled / eps). `sweep` trains one network per depth,
on this machine's cores or on a Dask cluster."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ._validation import check_bool, check_choice, check_int, check_model, check_number, show
from .errors import SkipvizError, SkipvizTypeError, SkipvizValueError
from .models import SkipNet
from .settings import progress_bars
from .training import check_inputs, eval_mode

__all__ = ["BACKENDS", "Perturbations", "SweepError", "block_perturbations", "stopping_rule",
           "sweep"]

BACKENDS = ("serial", "loky", "dask")


@dataclass
class Perturbations:
    """What each measured block did to a batch of B inputs.

    absolute, scaled: (blocks, B) per-example |x_{l+1} - x_l| and |x_{l+1} - x_l| / |x_l| (the
    Euclidean norm over all of an example's features); blocks: the measured blocks' indices in
    model.blocks; section: each measured block's section (0, 1, ...). A section is a run of
    blocks that keep the hidden state's shape; a block or layer that changes it starts the next
    section and is not measured (it has no x_{l+1} - x_l).
    """

    absolute: torch.Tensor
    scaled: torch.Tensor
    blocks: list[int]
    section: list[int]

    @property
    def num_sections(self) -> int:
        return max(self.section) + 1

    def _rows(self, section: int) -> list[int]:
        section = check_int("section", section, minimum=0, maximum=self.num_sections - 1)
        return [i for i, s in enumerate(self.section) if s == section]

    def profile(self, section: int, scaled: bool = True) -> torch.Tensor:
        """(L,) the section's per-block perturbation, averaged over the examples."""
        values = self.scaled if check_bool("scaled", scaled) else self.absolute
        return values[self._rows(section)].mean(dim=1)

    def positions(self, section: int) -> torch.Tensor:
        """(L,) each block's place in its section from 0 (first) to 1 (last), as in Hauser's
        figures; a section of one block sits at 0.5."""
        n = len(self._rows(section))
        return torch.linspace(0, 1, n) if n > 1 else torch.tensor([0.5])

    def distance(self, section: int) -> float:
        """d: the section's computational distance, the sum of its mean absolute perturbations."""
        return self.profile(section, scaled=False).sum().item()

    def scaled_distance(self, section: int) -> float:
        """d_scaled: the sum of the section's mean scaled perturbations."""
        return self.profile(section).sum().item()

    def mean_scaled(self, section: int) -> float:
        """d_scaled / L: the mean scaled perturbation of the section's L blocks (Hauser's eq. 11)."""
        return self.profile(section).mean().item()


@torch.no_grad()
def block_perturbations(model: nn.Module, x: torch.Tensor) -> Perturbations:
    """Run x (batch, ...) through `model` in eval mode with its skips as they are, and measure
    every residual block that keeps the hidden state's shape. Raises ValueError for a model
    without residual blocks, for inputs it cannot take, and when a block receives an all-zero
    hidden state (its scaled perturbation is undefined).

    The sizes are written out in notebook 06, §1 (`perturbation_sizes`).
    """
    check_model("model", model)
    blocks = getattr(model, "blocks", None)
    if not (isinstance(model, SkipNet) and isinstance(blocks, nn.ModuleList) and model.num_skips):
        raise SkipvizValueError(f"model must be a skipviz model with residual blocks (model.blocks) and "
                                f"skips, such as ResidualMLP or ResNet1d; {type(model).__name__} has no "
                                "residual blocks")
    check_inputs(model, x)
    # The calls in the order they happen, one hook per distinct module: a model that runs one
    # shared module as several blocks (tied weights) gets one record per block all the same.
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    handles = [block.register_forward_hook(lambda _m, inputs, output: calls.append((inputs[0], output)))
               for block in {id(b): b for b in blocks}.values()]
    try:
        with eval_mode(model):
            try:
                model(x)
            except SkipvizError:
                raise
            except Exception as err:
                raise SkipvizValueError(f"model {type(model).__name__} cannot take x of shape "
                                        f"{tuple(x.shape[1:])}: {type(err).__name__}: {err}") from None
    finally:
        for h in handles:
            h.remove()
    if len(calls) != len(blocks):
        raise SkipvizValueError(f"model {type(model).__name__}.forward ran its blocks {len(calls)} times; "
                                f"it has {len(blocks)}")
    seen = dict(enumerate(calls))
    absolute, scaled, measured, section = [], [], [], []
    current, shape = -1, None
    for i in range(len(blocks)):
        x_in, x_out = seen[i]
        if x_in.shape != x_out.shape:
            shape = None  # a block that changes the shape has no x_(l+1) - x_l: it ends a section
            continue
        if x_in.shape != shape:
            current, shape = current + 1, x_in.shape
        x_in, x_out = x_in.flatten(1), x_out.flatten(1)
        size = x_in.norm(dim=1)
        if (size == 0).any():
            raise SkipvizValueError(f"model's block {i} receives an all-zero hidden state from x for "
                             f"{int((size == 0).sum())} example(s): |x_l| = 0 has no scaled perturbation")
        step = (x_out - x_in).norm(dim=1)
        absolute.append(step)
        scaled.append(step / size)
        measured.append(i)
        section.append(current)
    if not measured:
        raise SkipvizValueError(f"every block of model {type(model).__name__} changes the hidden state's shape: "
                         "no block has a perturbation x_(l+1) - x_l to measure")
    return Perturbations(torch.stack(absolute), torch.stack(scaled), measured, section)


def stopping_rule(scaled_distance: float, eps: float = 0.1) -> int:
    """Hauser's depth rule L = ceil(d_scaled / eps): the blocks a section needs for a mean scaled
    perturbation of at most eps. Computed on the decimals as written (4.11 / 0.1 is 41.1, not
    41.100000000000001), so a quotient that is a whole number is not rounded up."""
    d = check_number("scaled_distance", scaled_distance, 0)
    eps = check_number("eps", eps, 0, strict=True)
    return max(1, math.ceil(Decimal(repr(float(d))) / Decimal(repr(float(eps)))))


class SweepError(RuntimeError):
    """A depth of a sweep failed; `depths` are the ones that did not finish."""

    def __init__(self, message: str, depths: list[int]):
        super().__init__(message, list(depths))  # both in args, so that it survives pickling
        self.depths = list(depths)

    def __str__(self) -> str:
        return self.args[0]


def _run_one(train_one: Callable[[int], Any], depth: int) -> tuple[int, Any]:
    # One thread per task wherever it runs, so that a depth gives bit-for-bit the same numbers
    # in the notebook's process, in a local worker and on a cluster (threads change rounding).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return depth, train_one(depth)
    except Exception as err:
        raise SweepError(f"train_one({depth}) raised {type(err).__name__}: {err}", [depth]) from err
    finally:
        torch.set_num_threads(threads)


def _unfinished(err: Exception, depths: list[int], done: dict[int, Any]) -> SweepError:
    """A SweepError for a sweep that stopped at `err`: every depth not in `done` is unfinished,
    the failing one and those that never ran or were still running alike."""
    missing = [d for d in depths if d not in done]
    cause = str(err) if isinstance(err, SweepError) else f"{type(err).__name__}: {err}"
    return SweepError(f"the sweep stopped ({cause}) with depths {missing} unfinished; the finished "
                      f"ones ({sorted(done)}) are in the model cache if train_one caches, so a rerun "
                      "trains only the rest", missing)


def sweep(depths: Sequence[int], train_one: Callable[[int], Any], *, backend: str | None = None,
          n_jobs: int | None = None, progress: bool | None = None) -> list[Any]:
    """[train_one(L) for L in depths], run in parallel; the results in the order of `depths`.

    backend: "serial" (this process), "loky" (joblib's local worker processes; the default,
    with n_jobs = the number of cores) or "dask" (joblib's Dask backend: the tasks go to the
    workers of the `dask.distributed.Client` connected in this process; pip install
    "skipviz[cluster]"). Every task runs on one thread, so the results do not depend on where it
    ran. progress shows a bar of the finished depths (None: as training does, off in FAST mode
    and with SKIPVIZ_PROGRESS=0). train_one should cache what it trains (training.fit does): if a depth fails, SweepError
    names the depths that did not finish, and a rerun trains only those.
    """
    if isinstance(depths, (torch.Tensor, np.ndarray)) and depths.ndim == 1:
        depths = depths.tolist()
    if isinstance(depths, (str, bytes)) or not isinstance(depths, Sequence) or not depths:
        raise SkipvizValueError(f"depths must be a non-empty list of positive integers; got {show(depths)}")
    depths = [check_int(f"depths[{i}]", d) for i, d in enumerate(depths)]
    if not callable(train_one) or isinstance(train_one, type):
        raise SkipvizTypeError(f"train_one must be a function of the depth; got {show(train_one)}")
    backend = check_choice("backend", "loky" if backend is None else backend, BACKENDS)
    n_jobs = check_int("n_jobs", (os.cpu_count() or 1) if n_jobs is None else n_jobs)
    progress = progress_bars() if progress is None else check_bool("progress", progress)
    unique = list(dict.fromkeys(depths))
    bar = tqdm(total=len(unique), desc="depths trained", disable=not progress)
    done: dict[int, Any] = {}
    if backend == "serial" or len(unique) == 1:
        try:
            for d in unique:
                done[d] = _run_one(train_one, d)[1]
                bar.update()
        except SweepError as err:
            raise _unfinished(err, unique, done) from err.__cause__
        finally:
            bar.close()
        return [done[d] for d in depths]
    import joblib

    if backend == "dask":
        try:
            from distributed import get_client
        except ImportError:
            raise SkipvizValueError('backend="dask" needs dask.distributed: pip install "skipviz[cluster]"') from None
        try:
            get_client()
        except ValueError:
            raise SkipvizValueError('backend="dask" sends the depths to the workers of a Dask cluster: connect '
                             'one first, e.g. Client(LocalCluster(n_workers=2, threads_per_worker=1)) '
                             'or Client("tcp://scheduler:8786")') from None
    tasks = (joblib.delayed(_run_one)(train_one, d) for d in unique)
    with joblib.parallel_config(backend=backend, n_jobs=-1 if backend == "dask" else n_jobs):
        try:
            for depth, result in joblib.Parallel(return_as="generator_unordered")(tasks):
                done[depth] = result
                bar.update()
        except Exception as err:
            raise _unfinished(err, unique, done) from err
        finally:
            bar.close()
    return [done[d] for d in depths]
