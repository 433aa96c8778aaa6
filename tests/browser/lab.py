"""Drive a real JupyterLab in headless Chromium: start `make lab` on a free port, open a notebook,
run it, check every widget rendered, click the control its metadata names, and time the redraw.

Used by tests/browser/test_in_browser.py and by `make bench` (latencies).

A notebook opts in with metadata on the widget's cell, for the k-th widget panel of the notebook:
    "skipviz": {"browser": {"control": "skips", "restores": true}}
`control` is the label of a checkbox, toggle button or dropdown inside that panel; `restores`
says that changing it back must restore the original picture.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build" / "browser"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def require_chromium(pytest) -> None:
    """Skip the calling test module when Debian's chromium is missing, unless the browser tests
    are required (SKIPVIZ_REQUIRE_BROWSER=1, as in CI): then fail."""
    if shutil.which("chromium") is None:
        reason = "chromium is not installed (`make browser` installs Debian's package)"
        if os.environ.get("SKIPVIZ_REQUIRE_BROWSER") == "1":
            raise RuntimeError(reason)
        pytest.skip(reason, allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LabServer:
    """A JupyterLab started by `make lab` in its own process group; stop() ends the whole group."""

    process: subprocess.Popen
    url: str
    token: str
    log: Path

    @classmethod
    def start(cls, fast: bool = True, timeout: float = 120) -> LabServer:
        BUILD.mkdir(parents=True, exist_ok=True)
        settings = BUILD / "lab-settings" / "@jupyterlab" / "notebook-extension"
        settings.mkdir(parents=True, exist_ok=True)
        # Attach every cell to the page, so each widget is in the DOM whatever the scroll position.
        (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
        # No "get notified about news?" prompt over the page (and no request for news offline).
        news = BUILD / "lab-settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True, exist_ok=True)
        (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
        workspaces = BUILD / "lab-workspaces"
        shutil.rmtree(workspaces, ignore_errors=True)
        port, token = free_port(), secrets.token_hex(16)
        args = (f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} "
                f"--IdentityProvider.token={token} --LabApp.expose_app_in_browser=True "
                f"--LabApp.user_settings_dir={BUILD / 'lab-settings'} "
                f"--LabApp.workspaces_dir={workspaces} --ServerApp.port_retries=0")
        env = {**os.environ, "SKIPVIZ_FAST": "1" if fast else "0"}
        log = BUILD / "jupyterlab.log"
        with open(log, "w") as out:
            process = subprocess.Popen(["make", "-s", "lab", f"LAB_ARGS={args}"], cwd=ROOT, env=env,
                                       stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        server = cls(process, f"http://127.0.0.1:{port}", token, log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"`make lab` exited with {process.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{server.url}/api/status?token={token}", timeout=2):
                    return server
            except OSError:
                time.sleep(0.5)
        server.stop()
        raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s; see {log}")

    def shutdown_kernels(self) -> None:
        """End every kernel session, so that an idle notebook's kernel takes no CPU from the next."""
        def call(method: str, path: str):
            request = urllib.request.Request(f"{self.url}{path}?token={self.token}", method=method)
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"null")

        for session in call("GET", "/api/sessions"):
            call("DELETE", f"/api/sessions/{session['id']}")

    def stop(self) -> None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=15)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def launch_browser(playwright, extra_args: tuple[str, ...] = ()):
    """Debian's chromium, headless; never a browser downloaded by playwright."""
    executable = shutil.which("chromium")
    if executable is None:
        raise RuntimeError("chromium is not installed: run `make browser` (Debian package 'chromium')")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS + list(extra_args),
                                      headless=True)


def open_offline(browser, url: str, width: int = 1280, height: int = 800):
    """A new tab at `url` (a file:// page) with every non-local request blocked; returns (page,
    the blocked URLs, the console errors and uncaught exceptions), both lists filled as it runs."""
    page = browser.new_page(viewport={"width": width, "height": height})
    blocked, errors = [], []

    def only_local(route):
        if route.request.url.startswith(("file://", "data:")):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    return page, blocked, errors


@dataclass
class NotebookReport:
    name: str
    widgets: int = 0
    interactions: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    screenshots: list[str] = field(default_factory=list)
    # Per panel: a digest of the rendered picture before the first click and after each click.
    pictures: list[list[str]] = field(default_factory=list)

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms) if self.latencies_ms else float("nan")


def browser_specs(path: Path) -> list[dict | None]:
    """For each widget panel cell of the notebook, in order, its browser spec (or None)."""
    nb = json.loads(path.read_text())
    specs = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        spec = cell.get("metadata", {}).get("skipviz", {}).get("browser")
        if spec is not None:
            specs.append(spec)
    return specs


JS_NOTEBOOK = "window.jupyterapp.shell.currentWidget"

JS_RUN_ALL = """async () => {
    const panel = window.jupyterapp.shell.currentWidget;
    await panel.context.ready;
    await panel.sessionContext.ready;
    await window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs');
    return await window.jupyterapp.commands.execute('notebook:run-all-cells');
}"""

JS_OUTPUT_SUMMARY = """() => {
    const panel = window.jupyterapp.shell.currentWidget;
    const errors = [], widgetViews = [];
    panel.content.widgets.forEach((cell, i) => {
        if (cell.model.type !== 'code') return;
        for (const out of cell.model.outputs.toJSON()) {
            if (out.output_type === 'error') errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
            if (out.data && out.data['WIDGET_MIME']) widgetViews.push(i);
        }
    });
    return {errors, widgetViews, status: panel.sessionContext.session.kernel.status};
}""".replace("WIDGET_MIME", WIDGET_MIME)

# The panels' images, in the open notebook of JupyterLab (or in the page itself, outside JupyterLab).
PANEL_IMAGES = ("(window.jupyterapp ? window.jupyterapp.shell.currentWidget.node : document)"
                ".querySelectorAll('.skipviz-panel img')")

JS_ARM_LATENCY = """(index) => {
    const img = PANEL_IMAGES[index];
    const state = window.__skipviz = {t0: null, t1: null, before: img.src};
    const start = () => { if (state.t0 === null) state.t0 = performance.now(); };
    for (const type of ['pointerdown', 'click', 'change']) {
        document.addEventListener(type, start, {capture: true, once: true});
    }
    const observer = new MutationObserver(async () => {
        if (img.src === state.before) return;
        observer.disconnect();
        await img.decode();
        state.t1 = performance.now();
    });
    observer.observe(img, {attributes: true, attributeFilter: ['src']});
}""".replace("PANEL_IMAGES", PANEL_IMAGES)

JS_IMAGE_PIXELS = """async (index) => {
    const img = PANEL_IMAGES[index];
    await img.decode();
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
    canvas.getContext('2d').drawImage(img, 0, 0);
    return canvas.toDataURL();
}""".replace("PANEL_IMAGES", PANEL_IMAGES)


def _digest(data_url: str) -> str:
    return hashlib.sha256(data_url.encode()).hexdigest()[:16]


def _control(panel, label: str):
    """The element of the control labelled `label` inside one panel."""
    box = panel.locator(".widget-checkbox", has_text=label)
    if box.count():
        return "checkbox", box.locator("input[type=checkbox]").first
    button = panel.get_by_role("button", name=label, exact=True)
    if button.count():
        return "button", button.first
    select = panel.get_by_label(label, exact=True)
    if select.count() and select.first.evaluate("e => e.tagName") == "SELECT":
        return "select", select.first
    raise AssertionError(f"no checkbox, toggle button or dropdown labelled {label!r} in the panel")


def _change(kind: str, element, forward: bool) -> None:
    if kind in ("checkbox", "button"):
        element.click()
    else:  # by position: an option's value attribute need not be its label
        count = element.locator("option").count()
        i = element.evaluate("e => e.selectedIndex")
        element.select_option(index=(i + (1 if forward else -1)) % count)


def interact(page, panel, k: int, spec: dict, clicks: int, redraw_timeout_ms: int,
             report: NotebookReport, shots: Path, fail, stem: str) -> None:
    """Click the control `spec` names in panel k back and forth; record each redraw's latency and
    picture; fail unless every click redraws and clicking back restores the picture."""
    img = panel.locator("img").first
    page.wait_for_function(f"(i) => {{ const im = {PANEL_IMAGES}[i]; return im && im.complete && im.naturalWidth > 0; }}",
                           arg=k)
    panel.scroll_into_view_if_needed()
    kind, element = _control(panel, spec["control"])
    original = page.evaluate(JS_IMAGE_PIXELS, k)
    report.pictures.append([_digest(original)])
    before_shot = shots / f"{stem}-panel{k}-before.png"
    panel.screenshot(path=str(before_shot))
    report.screenshots.append(str(before_shot))
    for click in range(clicks):
        page.evaluate(JS_ARM_LATENCY, k)
        _change(kind, element, forward=click % 2 == 0)
        try:
            page.wait_for_function("() => window.__skipviz.t1 !== null", timeout=redraw_timeout_ms)
        except Exception:
            fail(f"changing {spec['control']!r} did not redraw the figure of panel {k}")
        t = page.evaluate("() => window.__skipviz")
        report.latencies_ms.append(t["t1"] - t["t0"])
        report.interactions += 1
        pixels = page.evaluate(JS_IMAGE_PIXELS, k)
        report.pictures[k].append(_digest(pixels))
        if click == 0:
            after_shot = shots / f"{stem}-panel{k}-after.png"
            img.screenshot(path=str(after_shot))
            report.screenshots.append(str(after_shot))
            if pixels == original:
                fail(f"changing {spec['control']!r} left the picture of panel {k} unchanged")
        elif click % 2 == 1 and spec.get("restores") and pixels != original:
            fail(f"changing {spec['control']!r} back did not restore the picture of panel {k}")


@contextlib.contextmanager
def without_outputs(path: Path) -> Iterator[Path]:
    """A scratch copy of the notebook with its stored outputs removed (`_browser_<name>`, deleted
    afterwards): a run clears them anyway, and drawing them first cost seconds per notebook."""
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    copy = path.with_name(f"_browser_{path.name}")
    copy.write_text(json.dumps(notebook))
    try:
        yield copy
    finally:
        copy.unlink(missing_ok=True)
        (path.parent / ".ipynb_checkpoints" / f"{copy.stem}-checkpoint.ipynb").unlink(missing_ok=True)


def check_notebook(page, server: LabServer, path: Path, clicks: int = 6,
                   run_timeout_ms: int = 180_000, redraw_timeout_ms: int = 30_000) -> NotebookReport:
    """Open, run all, check widgets, interact as a student; raise AssertionError on any failure."""
    stem = path.stem.removeprefix("_browser_")
    report = NotebookReport(stem)
    shots = BUILD / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)

    def fail(message: str) -> None:
        shot = shots / f"{stem}-failure.png"
        page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(f"{path.name}: {message} (screenshot: {shot})")

    page.goto(f"{server.url}/lab/tree/{path.name}?reset&token={server.token}")
    page.wait_for_function(f"() => window.jupyterapp && {JS_NOTEBOOK} && "
                           f"{JS_NOTEBOOK}.context && {JS_NOTEBOOK}.context.path.endsWith('{path.name}')",
                           timeout=60_000)
    page.wait_for_function(f"() => {JS_NOTEBOOK}.sessionContext.session?.kernel?.status === 'idle'",
                           timeout=60_000)
    page.set_default_timeout(run_timeout_ms)
    ok = page.evaluate(JS_RUN_ALL)
    summary = page.evaluate(JS_OUTPUT_SUMMARY)
    if summary["errors"]:
        fail("error output: " + "; ".join(summary["errors"]))
    if not ok:
        fail("run-all did not finish cleanly")
    page.set_default_timeout(30_000)
    if page.get_by_text("Error displaying widget").count():  # anywhere on the page
        fail("'Error displaying widget' on the page")
    report.widgets = len(summary["widgetViews"])
    notebook = page.locator(".jp-NotebookPanel:visible")  # the open notebook only, never a hidden tab
    views = notebook.locator(".jp-OutputArea-output:has(> .jupyter-widgets)")
    if views.count() != report.widgets:
        fail(f"{report.widgets} widget outputs in the notebook but {views.count()} on the page")
    for i in range(views.count()):
        box = views.nth(i).bounding_box()
        if box is None or box["height"] < 5:
            fail(f"widget output {i} is empty on the page")

    specs = browser_specs(path)
    panels = notebook.locator(".skipviz-panel")
    if panels.count() < len(specs):
        fail(f"metadata names {len(specs)} widget panels but {panels.count()} rendered")
    for k, spec in enumerate(specs):
        interact(page, panels.nth(k), k, spec, clicks, redraw_timeout_ms, report, shots, fail, stem)
    return report


JS_PANEL_SLIDE = """(k) => {
    // reveal.js indices (h, v) of the slide that holds the k-th widget panel.
    const section = document.querySelectorAll('.reveal .skipviz-panel')[k].closest('section');
    const parent = section.parentElement;
    if (parent.tagName === 'SECTION') {
        return [Array.from(parent.parentElement.children).indexOf(parent),
                Array.from(parent.children).indexOf(section)];
    }
    return [Array.from(parent.children).indexOf(section), 0];
}"""


def check_slideshow(browser, server: LabServer, path: Path, clicks: int = 6,
                    redraw_timeout_ms: int = 30_000) -> NotebookReport:
    """The live slideshow of jupyterlab-rise, as a lecturer uses it: the notebook is run in
    JupyterLab and saved (a scratch copy, so the stored notebook is untouched), then opened as
    RISE slides on the same kernel; on the slide of each widget panel named in the metadata, the
    named control is clicked back and forth and must redraw the figure (latencies recorded).
    Raises AssertionError on any failure; a screenshot of each widget slide goes to build/browser/."""
    copy = path.with_name(f"_slideshow_{path.name}")
    shutil.copy(path, copy)
    shots = BUILD / "screenshots"
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        check_notebook(page, server, copy, clicks=0)
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        page.wait_for_function(f"() => !{JS_NOTEBOOK}.context.model.dirty")
        report = NotebookReport(path.stem)
        rise = browser.new_page(viewport={"width": 1280, "height": 900})
        rise.set_default_timeout(60_000)

        def fail(message: str) -> None:
            shot = shots / f"{path.stem}-slideshow-failure.png"
            rise.screenshot(path=str(shot))
            raise AssertionError(f"{path.name} as live slides: {message} (screenshot: {shot})")

        rise.goto(f"{server.url}/rise/{copy.name}?token={server.token}")
        rise.wait_for_selector(".reveal .slides > section", state="attached")
        specs = browser_specs(path)
        try:
            rise.wait_for_function(f"() => document.querySelectorAll('.reveal .skipviz-panel img').length >= {len(specs)}")
        except Exception:
            fail(f"{len(specs)} widget panels expected, "
                 f"{rise.locator('.reveal .skipviz-panel').count()} rendered")
        if rise.get_by_text("Error displaying widget").count():
            fail("'Error displaying widget' in the slides")
        report.widgets = rise.locator(".reveal .jupyter-widgets").count()
        panels = rise.locator(".reveal .skipviz-panel")
        for k, spec in enumerate(specs):
            h, v = rise.evaluate(JS_PANEL_SLIDE, k)
            rise.evaluate(f"() => {{ location.hash = '#/{h}/{v}'; }}")
            try:
                rise.wait_for_function(f"(k) => {{ const im = {PANEL_IMAGES}[k]; "
                                       "return im.getBoundingClientRect().width > 200 && "
                                       "im.closest('section').classList.contains('present'); }", arg=k)
            except Exception:
                fail(f"the slide of widget panel {k} ({h}/{v}) did not come up with its figure")
            rise.wait_for_timeout(800)  # the slide transition
            shot = shots / f"{path.stem}-slideshow-panel{k}.png"
            rise.screenshot(path=str(shot))
            report.screenshots.append(str(shot))
            if clicks:
                interact(rise, panels.nth(k), k, spec, clicks, redraw_timeout_ms, report, shots, fail,
                         f"{path.stem}-slideshow")
        rise.close()
        page.close()
        server.shutdown_kernels()
        return report
    finally:
        copy.unlink(missing_ok=True)
        checkpoint = copy.parent / ".ipynb_checkpoints" / f"{copy.stem}-checkpoint.ipynb"
        checkpoint.unlink(missing_ok=True)
