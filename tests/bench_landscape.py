"""Loss-landscape benchmark for `make bench`: skipviz.landscape side by side with the tools people
use, on the same model, data, directions and grid, in one run.

Peers (the optional `bench` extra, never imported by skipviz): `loss_landscapes.random_plane`
(loss-landscapes 3.0.6) and PyHessian 0.1's power iteration; and, rewritten here in the style of
the paper's own code (github.com/tomgoldstein/loss-landscape, not packaged), its per-point loop
(set the weights, then one pass over a DataLoader) and its `min_max_hessian_eigs` (scipy's eigsh on
Hessian-vector products summed over mini-batches).

Usage: python tests/bench_landscape.py
"""

from __future__ import annotations

import os
import platform

# One BLAS thread for numpy/scipy (the paper-style eigsh): OpenBLAS's idle threads spin for a
# while after each call and, on 2 cores, slowed whichever torch code ran next by up to 1.7x,
# skewing the interleaved timings below. Set before numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import copy  # noqa: E402
import inspect  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from bench import timed  # noqa: E402  (tests/ is on sys.path as this script's folder)
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from skipviz import data, landscape, models, training  # noqa: E402
from skipviz.landscape import directions  # noqa: E402
from skipviz.landscape import products as hessian_products  # noqa: E402


def seconds(fn, repeat: int = 1) -> float:
    """Median wall seconds of `repeat` calls of fn, warmed up first only when repeat > 1 (the
    peers' planes take seconds each)."""
    return timed(fn, repeat, warmup=repeat > 1)[0] / 1000


def matmul_peak() -> float:
    """This machine's float32 matmul throughput in GFLOP/s: best of square products."""
    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        t = seconds(lambda a=a, b=b: a @ b, repeat=5)
        best = max(best, 2 * n ** 3 / t / 1e9)
    return best


def linear_flops(model: nn.Module, n_points: int) -> float:
    """Multiply-add FLOPs of one forward pass over n_points (the matrix products of every Linear)."""
    return sum(2.0 * n_points * m.in_features * m.out_features
               for m in model.modules() if isinstance(m, nn.Linear))


# ------------------------------------------------------------ the paper code's way, rewritten


def paper_style_plane(model: nn.Module, x, y, dx, dy, coords, batch_size: int = 128) -> np.ndarray:
    """One point at a time: write weights + a dx + b dy into the model, then evaluate the loss and
    accuracy over a DataLoader in eval mode (net_plotter.set_weights + evaluation.eval_loss)."""
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)
    criterion = nn.CrossEntropyLoss()
    saved = [p.data.clone() for p in model.parameters()]
    losses = np.zeros((len(coords), len(coords)))
    for i, a in enumerate(coords):
        for j, b in enumerate(coords):
            for p, w, u, v in zip(model.parameters(), saved, dx, dy):
                p.data = w + u * float(a) + v * float(b)
            model.eval()
            total, correct, count = 0.0, 0, 0
            with torch.no_grad():
                for xb, yb in loader:
                    out = model(xb)
                    total += criterion(out, yb).item() * len(xb)
                    correct += out.argmax(1).eq(yb).sum().item()
                    count += len(xb)
            losses[i, j] = total / count
    for p, w in zip(model.parameters(), saved):
        p.data = w
    return losses


def paper_style_min_max_eigs(model: nn.Module, x, y, batch_size: int = 128) -> tuple[float, float, int]:
    """scipy eigsh (tol 1e-2) for the largest eigenvalue, then again on H - 0.51 lambda_max I for
    the smallest; each product sums the mini-batches' Hessian-vector products into .grad (it does
    not average them). Weights with 2+ dimensions only. Returns (max, min, products)."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    params = [p for p in model.parameters() if p.dim() > 1]
    n = sum(p.numel() for p in params)
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)
    criterion = nn.CrossEntropyLoss()
    count = [0]

    def hvp(vec: np.ndarray) -> np.ndarray:
        count[0] += 1
        pieces = torch.split(torch.from_numpy(np.asarray(vec).ravel()).float(), [p.numel() for p in params])
        vs = [v.view(p.shape) for v, p in zip(pieces, params)]
        model.eval()
        model.zero_grad()
        for xb, yb in loader:
            g = torch.autograd.grad(criterion(model(xb), yb), params, create_graph=True)
            sum((gi * vi).sum() for gi, vi in zip(g, vs)).backward()
        return np.concatenate([p.grad.numpy().ravel() for p in params]).astype(np.float64)

    top = eigsh(LinearOperator((n, n), matvec=hvp), k=1, tol=1e-2)[0][0]
    shift = 0.51 * top
    low = eigsh(LinearOperator((n, n), matvec=lambda v: hvp(v) - shift * np.asarray(v).ravel()),
                k=1, tol=1e-2)[0][0] + shift
    model.zero_grad(set_to_none=True)
    return float(top), float(low), count[0]


# ------------------------------------------------------------ the benchmark


def loss_landscapes_plane(model: nn.Module, x, y, steps: int) -> np.ndarray:
    """loss_landscapes.random_plane with filter normalization (its own directions; the cost does not
    depend on them). It never calls eval(), so the model is put in eval mode first."""
    import loss_landscapes
    import loss_landscapes.metrics

    model.eval()
    metric = loss_landscapes.metrics.Loss(nn.CrossEntropyLoss(), x, y)
    return loss_landscapes.random_plane(model, metric, distance=1, steps=steps,
                                        normalization="filter", deepcopy_model=True)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median wall seconds of each function over `rounds` turns, run round-robin after one
    warm-up each, so that this machine's slow and fast spells fall on all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def plane_row(label: str, t: float, slower: float | None, gflop: float, peak: float) -> str:
    ratio = f"{slower:7.1f}x" if slower else " " * 8
    return f"  {label:46s}{t:8.3f}s {ratio} {gflop / t:7.1f} GFLOP/s ({100 * gflop / t / peak:3.0f}% of peak)"


def bench_planes(rounds: int) -> None:
    steps = 25
    cases = [
        ("teaching size: residual 4 blocks x 32 (batch norm), 500 points",
         models.ResidualMLP(40, 10, width=32, depth=4, block="v1", norm="batch"), 500),
        ("mid size: residual 10 blocks x 64, 1000 points",
         models.ResidualMLP(40, 10, width=64, depth=10), 1000),
    ]
    for title, model, n in cases:
        ds = data.mnist1d(n_train=n)
        # Briefly trained: loss-landscapes' filter normalization divides by zero on the all-zero
        # biases of a fresh batch-norm layer.
        training.fit(model, ds, steps=100, cache=False, progress=False)
        bench_plane(title, model.eval(), ds, steps, rounds)


def bench_plane(title: str, model: nn.Module, ds: data.Dataset, steps: int, rounds: int) -> None:
    dx = landscape.random_direction(model, seed=1)
    dy = landscape.random_direction(model, seed=2)
    gflop = steps * steps * linear_flops(model, len(ds.x_train)) / 1e9
    coords = directions.grid(steps, 1.0).tolist()
    auto = landscape.surface_2d(model, ds, dx, dy, points=steps, cache=False, progress=False)  # which method auto picks
    fns = {"auto": lambda: landscape.surface_2d(model, ds, dx, dy, points=steps, cache=False, progress=False)}
    for method in ("batched", "vmap", "loop"):
        fns[method] = lambda m=method: landscape.surface_2d(model, ds, dx, dy, points=steps, method=m, cache=False, progress=False)
    fns["ll"] = lambda: loss_landscapes_plane(copy.deepcopy(model), ds.x_train, ds.y_train, steps)
    fns["paper"] = lambda: paper_style_plane(copy.deepcopy(model), ds.x_train, ds.y_train, dx, dy, coords)
    before = matmul_peak()
    times = interleaved(fns, rounds)
    # The machine's speed drifts: the peak is measured just before and just after these runs,
    # and the higher one is used (the conservative choice for "% of peak").
    peak = max(before, matmul_peak())
    print(f"\n{title}, {steps}x{steps} plane ({gflop:.0f} GFLOP of matrix products; matmul peak "
          f"around these runs {peak:.0f} GFLOP/s)")
    print(f"  {'':46s}{'time':>9s} {'slower':>7s}  (medians of {rounds} interleaved runs; "
          "slower = its time / skipviz auto's time)")
    base = times["auto"]
    print(plane_row(f"skipviz surface_2d, auto (chose {auto.method})", base, None, gflop, peak))
    for method in ("batched", "vmap", "loop"):
        print(plane_row(f"skipviz surface_2d, method='{method}'", times[method], None, gflop, peak))
    print(plane_row("loss_landscapes.random_plane 3.0.6", times["ll"], times["ll"] / base, gflop, peak))
    print(plane_row("paper-style per-point loop (DataLoader 128)", times["paper"],
                    times["paper"] / base, gflop, peak))


def bench_hessian(rounds: int) -> None:
    n = 1000
    ds = data.mnist1d(n_train=n)
    model = models.ResidualMLP(40, 10, width=32, depth=4, block="v1", norm="batch")
    training.fit(model, ds, steps=300, progress=False, cache=False)
    print(f"\nHessian extremes at a trained residual 4 x 32 net ({models.count_parameters(model)} "
          f"parameters), {n} points (medians of {rounds} interleaved runs)")
    default_steps = inspect.signature(landscape.hessian_extremes).parameters["iterations"].default
    results = {}

    def ours(steps: int) -> Callable[[], None]:
        def run() -> None:
            results[steps] = landscape.hessian_extremes(model, ds, iterations=steps, cache=False)
        return run

    def paper() -> None:
        results["paper"] = paper_style_min_max_eigs(copy.deepcopy(model), ds.x_train, ds.y_train)

    times = interleaved({default_steps: ours(default_steps), 80: ours(80), "paper": paper}, rounds)
    top, low, products = results["paper"]
    for steps in (default_steps, 80):
        r = results[steps]
        label = f"skipviz hessian_extremes, {steps} iterations" + (" (default)" if steps == default_steps else "")
        print(f"  {label:46s}{times[steps]:7.3f}s  lambda_max {r.lambda_max:9.3f}  lambda_min "
              f"{r.lambda_min:8.4f}  residuals {r.residual_max:.1e}, {r.residual_min:.1e}; "
              f"{r.iterations} products; paper-style {times['paper'] / times[steps]:.1f}x slower")
    batches = -(-n // 128)
    print(f"  {'paper-style min_max_hessian_eigs (tol 1e-2)':46s}{times['paper']:7.3f}s  lambda_max "
          f"{top:9.3f}  lambda_min {low:8.4f}  ({products} products)")
    print(f"    its products sum {batches} mini-batches: lambda_max / {batches} = {top / batches:.3f}, "
          f"lambda_min / {batches} = {low / batches:.3f} (weights only, no biases or batch-norm "
          "parameters)")
    # One product each way, on the same model, point and vector.
    flat = directions.Flat(model)
    weights = flat.vector.unsqueeze(0)
    vector = torch.randn(1, len(flat.vector), generator=torch.Generator().manual_seed(0),
                         dtype=torch.float64)
    with training.eval_mode(model):
        operators = {"rop": hessian_products.hessian_products(model, ds, "train", None, weights),
                     "autograd": hessian_products.hessian_products(model, ds, "train", None, weights,
                                                             autograd=True)}
        repeats = 20
        product_times = interleaved({k: (lambda op=op: [op(vector) for _ in range(repeats)])
                                     for k, op in operators.items()}, rounds)
        difference = (operators["rop"](vector) - operators["autograd"](vector)).norm() \
            / operators["autograd"](vector).norm()
    rop_ms, autograd_ms = (1e3 * product_times[k] / repeats for k in ("rop", "autograd"))
    print(f"  {'one Hessian-vector product: R-operator':46s}{rop_ms:6.2f} ms; autograd reverse over "
          f"reverse {autograd_ms:.2f} ms ({autograd_ms / rop_ms:.1f}x slower); relative "
          f"difference {difference:.1e}")
    try:
        from pyhessian import hessian
        start = time.perf_counter()
        eig = hessian(copy.deepcopy(model).eval(), nn.CrossEntropyLoss(), data=(ds.x_train, ds.y_train),
                      cuda=False).eigenvalues(maxIter=100, tol=1e-3, top_n=1)[0][0]
        t_py = time.perf_counter() - start
        print(f"  {'PyHessian 0.1 eigenvalues(top_n=1), cuda=False':46s}{t_py:7.3f}s  lambda_max "
              f"{eig:9.3f}  (lambda_max only, one run)")
    except Exception as err:  # report, never hide, a peer that fails
        print(f"  PyHessian 0.1: failed ({type(err).__name__}: {err})")
    d1 = landscape.random_direction(model, seed=1)
    d2 = landscape.random_direction(model, seed=2)
    k, lsteps = 5, 20
    times = interleaved({
        "map": lambda: landscape.curvature_map(model, ds, d1, d2, points=k, lanczos_iterations=lsteps, cache=False, progress=False),
        "one": lambda: landscape.hessian_extremes(model, ds, iterations=lsteps, cache=False),
    }, rounds)
    print(f"  skipviz curvature_map {k}x{k}, {lsteps} Lanczos steps, batched by 8 points "
          f"{times['map']:6.2f}s ({times['one'] * k * k / times['map']:.1f}x faster than {k * k} "
          "separate hessian_extremes)")


def cpu_name() -> str:
    """The CPU's model name (Linux), else what platform reports."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SKIPVIZ_CACHE"] = tmp
        torch.manual_seed(0)
        print(f"\nloss landscapes (float32, {torch.get_num_threads()} threads, {cpu_name()}, "
              f"ATen CPU capability {torch.backends.cpu.get_cpu_capability()})")
        bench_planes(rounds=5)
        bench_hessian(rounds=3)


if __name__ == "__main__":
    sys.exit(main())
