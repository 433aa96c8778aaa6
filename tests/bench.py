"""`make bench`: the wall time of `make test` itself and of its three passes (budget: 5 minutes),
wall times of every notebook (FAST and FULL, cold and warm cache), of the
package's hot functions, `make site` (build time and size), `make slides`, notebook 06's depth sweep on each backend, and the click-to-redraw latency of every notebook's widget
in a real JupyterLab in Chromium, in the notebook and in the live slideshow, as ratios to a plain
one-figure ipywidgets notebook measured in the same run. Prints tables; nothing here is a pass/fail test.

Usage: python tests/bench.py [--notebooks 01 02] [--no-full] [--no-browser] [--repeat N] [--clicks N]
                             [--no-make-test] [--no-landscape | --only-landscape]
(make bench BENCH_ARGS="--only-landscape"). The loss-landscape comparison is tests/bench_landscape.py.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# See bench_landscape.py: OpenBLAS's spinning idle threads skew the timings on 2 cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def run_notebook(path: Path, fast: bool, cache: Path) -> float:
    """Execute a copy of `path` (the stored notebook is untouched); return wall seconds."""
    code = ("import sys, nbformat; from nbclient import NotebookClient; "
            "nb = nbformat.read(sys.argv[1], as_version=4); "
            "NotebookClient(nb, timeout=3600, kernel_name='python3', "
            "resources={'metadata': {'path': sys.argv[2]}}).execute()")
    env = {**os.environ, "SKIPVIZ_FAST": "1" if fast else "0", "SKIPVIZ_CACHE": str(cache)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(path), str(path.parent)], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def bench_notebooks(names: list[str] | None, full: bool) -> None:
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if names:
        paths = [p for p in paths if p.name[:2] in names]
    print(f"{'notebook':32s}{'FAST cold':>11s}{'FAST warm':>11s}{'FULL cold':>11s}{'FULL warm':>11s}")
    for path in paths:
        row = []
        with tempfile.TemporaryDirectory() as tmp:
            for fast in ([True, False] if full else [True]):
                cache = Path(tmp) / ("fast" if fast else "full")
                row += [run_notebook(path, fast, cache), run_notebook(path, fast, cache)]
        cells = "".join(f"{t:>10.1f}s" for t in row)
        print(f"{path.stem:32s}{cells}", flush=True)


def timed(fn, repeat: int, warmup: bool = True) -> tuple[float, float]:
    """(median, min) milliseconds over `repeat` calls, after one warm-up call if `warmup`."""
    if warmup:
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), min(times)


def bench_functions(repeat: int) -> None:
    import torch
    from matplotlib.figure import Figure

    from skipviz import data, exercises, models, paths, plots, probes, training, widgets

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SKIPVIZ_CACHE"] = tmp
        start = time.perf_counter()
        mnist = data.mnist1d()
        cold = (time.perf_counter() - start) * 1000
        rows = [("data.mnist1d(), generated (cold cache)", cold, cold)]
        rows.append(("data.mnist1d(), from the cache", *timed(data.mnist1d, repeat)))
        x, y = mnist.x_train[:512], mnist.y_train[:512]
        plain = models.PlainMLP(40, 10, width=256, depth=30)
        rows.append(("probes.probe, plain 30 x 256, batch 512", *timed(lambda: probes.probe(plain, x, y), repeat)))
        res = models.ResidualMLP(40, 10, width=128, depth=40)
        rows.append(("probes.probe, residual 40 blocks x 128, batch 256",
                     *timed(lambda: probes.probe(res, x[:256], y[:256]), repeat)))
        deep = models.ResidualMLP(40, 10, width=64, depth=54)
        xb, yb = mnist.x_test[:128], mnist.y_test[:128]
        rows.append(("paths.gradient_by_path_length, 54 blocks x 64, batch 128",
                     *timed(lambda: paths.gradient_by_path_length(deep, xb, yb), repeat)))
        rows.append(("paths.sampled_path_gradients, 54 blocks, 20/length, batch 32",
                     *timed(lambda: paths.sampled_path_gradients(deep, xb[:32], yb[:32], samples=20), 2)))
        net = models.ResidualMLP(40, 10, width=64, depth=16)
        steps = 200
        ms = timed(lambda: training.fit(net, mnist, steps, cache=False, progress=False), 1)[0]
        rows.append((f"training.fit, residual 16 x 64, per step (of {steps})", ms / steps, ms / steps))
        conv = models.SkipConvNet(channels=8, depth=32)
        ms = timed(lambda: training.fit(conv, mnist, 50, batch_size=64, cache=False, progress=False), 1)[0]
        rows.append(("training.fit, SkipConvNet 32 blocks x 8 ch, per step", ms / 50, ms / 50))
        sorting = data.sorting()
        deep_post = models.TinyTransformer(10, 9, d_model=32, depth=12, norm="post")
        ms = timed(lambda: training.fit(deep_post, sorting, 50, lr=1e-2, batch_size=64, eval_every=50, cache=False, progress=False), 1)[0]
        rows.append(("training.fit, TinyTransformer 12 layers x 32, per step (notebook 09)", ms / 50, ms / 50))

        def causal_attention(attention, x):  # a right answer to notebook 09's exercise 1
            q, k, v = attention.qkv(x).view(*x.shape[:2], 3, attention.heads, -1).permute(2, 0, 3, 1, 4)
            out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            return attention.proj(out.transpose(1, 2).reshape(x.shape))

        rows.append(("exercises.check_causal_attention, a right answer",
                     *timed(lambda: exercises.check_causal_attention(causal_attention), repeat)))

        def fit_fresh() -> None:  # a new model each time: the cache key hashes the starting weights
            training.fit(models.ResidualMLP(40, 10, width=64, depth=16), mnist, 100, progress=False)

        rows.append(("training.fit, 100 steps, warm cache (load)", *timed(fit_fresh, repeat)))
        curve = torch.logspace(-12, -4, 40)

        def draw(fig: Figure, skips: bool) -> None:
            ax = fig.add_subplot()
            ax.semilogy(range(40), curve if skips else curve.flip(0))
            plots.log_ticks(ax)

        panel = widgets.FigurePanel(draw, {"skips": True})
        toggle = panel.controls["skips"]

        def flip() -> None:
            toggle.value = not toggle.value

        rows.append(("widgets.FigurePanel redraw (log plot -> PNG)", *timed(flip, repeat)))
    print(f"\n{'function':56s}{'median':>10s}{'min':>10s}")
    for name, med, low in rows:
        print(f"{name:56s}{med:>8.1f}ms{low:>8.1f}ms")


# The floor of the click-to-redraw path: one checkbox and one figure with plain ipywidgets and
# matplotlib, no skipviz. Every notebook's widget latency is reported as a ratio to it.
PLAIN_SOURCE = """\
import io

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

x = np.linspace(0, 4 * np.pi, 400)
fig = Figure(figsize=(7, 3.6), dpi=100)
image = widgets.Image(format="png")
box = widgets.Checkbox(value=True, description="skips", indent=False)


def show(_change=None):
    fig.clear()
    fig.add_subplot().plot(x, np.sin(x) if box.value else np.sin(2 * x))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    image.value = buffer.getvalue()


box.observe(show, names="value")
show()
panel = widgets.VBox([box, image])
panel.add_class("skipviz-panel")
panel
"""


def plain_notebook() -> Path:
    """Write the plain one-figure notebook into notebooks/ (where JupyterLab serves it)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(PLAIN_SOURCE)
    cell.metadata["skipviz"] = {"browser": {"control": "skips", "restores": True}}
    cell.metadata["slideshow"] = {"slide_type": "slide"}
    nb.cells.append(cell)
    path = ROOT / "notebooks" / "_bench_plain.ipynb"
    nbformat.write(nb, path)
    return path


def bench_browser(names: list[str] | None, clicks: int) -> None:
    """Click-to-redraw latency of every notebook's widgets in a real JupyterLab + Chromium, in the
    notebook and in the live slideshow, beside the plain one-figure notebook in the same run."""
    sys.path.insert(0, str(ROOT / "tests" / "browser"))
    from lab import (
        LabServer,
        browser_specs,
        check_notebook,
        check_slideshow,
        launch_browser,
        without_outputs,
    )
    from playwright.sync_api import sync_playwright

    paths = [p for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
             if browser_specs(p) and (not names or p.name[:2] in names)]
    plain = plain_notebook()
    print(f"\n{'widget latency, click -> new figure decoded (median ms)':52s}"
          f"{'notebook':>10s}{'ratio':>7s}{'slides':>9s}{'ratio':>7s}{'1st click':>11s}")
    server = LabServer.start(fast=True)
    try:
        with sync_playwright() as p:
            browser = launch_browser(p)
            floor = {}
            for path in [plain, *paths]:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                with without_outputs(path) as copy:  # never the stored notebook (autosave)
                    in_lab = check_notebook(page, server, copy, clicks=clicks)
                page.close()
                server.shutdown_kernels()
                in_slides = check_slideshow(browser, server, path, clicks=clicks)
                row = (in_lab.median_ms, in_slides.median_ms)
                if path == plain:
                    floor = dict(zip(("lab", "slides"), row))
                label = "plain ipywidgets + matplotlib (the floor)" if path == plain else path.stem
                print(f"{label + f' ({clicks} clicks)':52s}{row[0]:>8.0f}ms{row[0] / floor['lab']:>7.2f}"
                      f"{row[1]:>7.0f}ms{row[1] / floor['slides']:>7.2f}{in_lab.latencies_ms[0]:>9.0f}ms",
                      flush=True)
            browser.close()
    finally:
        server.stop()
        plain.unlink(missing_ok=True)


def bench_site() -> None:
    """`make site` (FULL states, warm cache: the notebooks' trained models are in the cache), run
    twice: the first renders every panel's states, the second finds them current. Its size."""
    if subprocess.run([sys.executable, "-c", "import myst_nb"], capture_output=True).returncode:
        print(f"\n{'make site: skipped (pip install -e .[site])':56s}")
        return
    out = ROOT / "build" / "site"
    (ROOT / "build" / "site-states" / "rendered.json").unlink(missing_ok=True)  # render them afresh
    for label in ("make site (states rendered, warm cache)", "make site again (states current)"):
        start = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "tools" / "course_site.py"), "--out", str(out)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env={**os.environ, "SKIPVIZ_FAST": "0", "SKIPVIZ_PROGRESS": "0"})
        print(f"{label:56s}{time.perf_counter() - start:>9.1f}s")
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e6
    print(f"{'its size':56s}{size:>8.1f}MB")


def bench_slides() -> None:
    """`make slides` for every notebook: nbconvert from the stored outputs (the panels' states
    rendered before, by bench_site or an earlier build)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "tools" / "slides.py"), "--out",
                    str(ROOT / "build" / "slides")], check=True, stdout=subprocess.DEVNULL)
    print(f"\n{'make slides (all notebooks, static reveal.js decks)':56s}"
          f"{time.perf_counter() - start:>9.1f}s")


def _sweep_task(L: int) -> float:
    """One depth of notebook 06's sweep, shortened and uncached (the bench measures training)."""
    from skipviz import data, models, training

    net = models.ResNet1d(blocks=L, seed=0)
    return training.fit(net, data.mnist1d(), 100, lr=2e-3, batch_size=64, eval_every=100,
                        cache=False, progress=False).final_train_loss


def bench_sweep() -> None:
    """perturbation.sweep over depths 1, 2, 4, 8 (100 steps each): serially, in two local worker
    processes, and on a Dask LocalCluster of two one-thread workers; the results must agree."""
    from skipviz import perturbation

    depths = [1, 2, 4, 8]
    rows, results = [], {}
    for backend in ("serial", "loky", "dask"):
        cluster = client = None
        if backend == "dask":
            import distributed

            cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None)
            client = distributed.Client(cluster)
        start = time.perf_counter()
        results[backend] = perturbation.sweep(depths, _sweep_task, backend=backend, n_jobs=2, progress=False)
        rows.append((backend, time.perf_counter() - start))
        if client is not None:
            client.close()
            cluster.close()
    same = results["serial"] == results["loky"] == results["dask"]
    print(f"\n{'perturbation.sweep, depths 1 2 4 8 x 100 steps':56s}{'wall':>10s}{'speed-up':>10s}")
    for backend, seconds in rows:
        print(f"{backend:56s}{seconds:>9.1f}s{rows[0][1] / seconds:>9.2f}x")
    print(f"{'identical final losses on all three':56s}{str(same):>10s}")


def bench_make_test() -> None:
    """`make test` as CI runs it, set up already (its installs are stamps by then): the total
    against the 5-minute budget, and each of its three commands."""
    print("make test (environment set up):")
    start = time.perf_counter()
    run = subprocess.Popen(["make", "--no-print-directory", "test"], cwd=ROOT, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    marks, last = [], start
    for line in run.stdout:   # a pytest summary line ends each pass: "... passed in 57.1s"
        if re.search(r"\d+ (passed|failed).* in [\d.]+s", line):
            now = time.perf_counter()
            marks.append((re.sub(r"\s*\(\d+:\d\d:\d\d\)", "", line.strip().strip("= ")), now - last))
            last = now
    run.wait()
    total = time.perf_counter() - start
    for name, seconds in marks:
        print(f"  {name[:54]:54s} {seconds:6.0f} s")
    verdict = "passed" if run.returncode == 0 else f"FAILED (exit {run.returncode})"
    print(f"  {'total':54s} {total:6.0f} s  ({total / 300:.0%} of the 5-minute budget; {verdict})\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", nargs="*", help="two-digit prefixes, e.g. 01 03 (default: all)")
    parser.add_argument("--no-full", action="store_true", help="skip the FULL-mode notebook runs")
    parser.add_argument("--repeat", type=int, default=10, help="calls per timed function")
    parser.add_argument("--clicks", type=int, default=10, help="widget clicks per notebook in the browser")
    parser.add_argument("--no-browser", action="store_true", help="skip the JupyterLab latency run")
    parser.add_argument("--no-make-test", action="store_true", help="skip timing `make test` itself")
    parser.add_argument("--no-landscape", action="store_true", help="skip the loss-landscape comparison")
    parser.add_argument("--only-landscape", action="store_true", help="run only the loss-landscape comparison")
    args = parser.parse_args()
    import torch

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"python {sys.version.split()[0]}\n")
    if not args.only_landscape:
        if not args.no_make_test:
            bench_make_test()
        bench_notebooks(args.notebooks, full=not args.no_full)
        bench_functions(args.repeat)
        print()
        bench_site()
        bench_slides()
        bench_sweep()
        if not args.no_browser:
            bench_browser(args.notebooks, args.clicks)
    if not args.no_landscape:
        import bench_landscape  # tests/ is on sys.path as this script's folder

        bench_landscape.main()


if __name__ == "__main__":
    main()
