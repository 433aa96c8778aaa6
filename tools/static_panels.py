"""Kernel-free figure panels for the course site (tools/course_site.py) and the offline slides.

1. `render_all` runs each notebook once (nbclient, in FULL mode unless SKIPVIZ_FAST=1, with the
   trained models from the cache) with SKIPVIZ_PANEL_STATES set: every FigurePanel writes the
   pictures of the states it declares (skipviz.panel_states) while the notebook's own code runs,
   so they are the notebook's pictures.
2. `replace_panels` puts, in place of each panel's widget output in a notebook, a kernel-free
   panel: the opening picture, with its alternative text, and the manifest from which
   skipviz-panels.js draws controls that look like the notebook's and switch pictures. A
   combination that was not rendered is shown as unavailable, never as another state.
"""

from __future__ import annotations

import html
import json
import os
import shutil
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
ASSETS = ROOT / "tools" / "site"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def ensure_states(notebooks: list[Path], out: Path) -> None:
    """`render_all`, unless `out` already holds states rendered in this mode (FAST or FULL) after
    the last change to the notebooks and the package (the site and the slides share them)."""
    stamp = out / "rendered.json"
    mode = "FAST" if os.environ.get("SKIPVIZ_FAST", "0") == "1" else "FULL"
    newest = max(p.stat().st_mtime for p in [*notebooks, *(ROOT / "skipviz").rglob("*.py")])
    if stamp.exists() and all((out / p.stem).is_dir() for p in notebooks):
        done = json.loads(stamp.read_text(encoding="utf-8"))
        if done.get("mode") == mode and done.get("time", 0) >= newest:
            return
    render_all(notebooks, out)
    stamp.write_text(json.dumps({"mode": mode, "time": time.time()}), encoding="utf-8")


def render_all(notebooks: list[Path], out: Path, timeout: int = 3600) -> None:
    """Run every notebook from its own folder with its panels writing to out/<stem>/."""
    for path in notebooks:
        target = out / path.stem
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        nb = nbformat.read(path, as_version=4)
        before = os.environ.get("SKIPVIZ_PANEL_STATES")
        os.environ["SKIPVIZ_PANEL_STATES"] = str(target)  # the kernel inherits it
        os.environ.setdefault("SKIPVIZ_PROGRESS", "0")
        try:
            NotebookClient(nb, timeout=timeout, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
        finally:
            if before is None:
                os.environ.pop("SKIPVIZ_PANEL_STATES", None)
            else:
                os.environ["SKIPVIZ_PANEL_STATES"] = before


def panel_outputs(nb: nbformat.NotebookNode) -> list[tuple[int, int]]:
    """(cell, output) positions of the FigurePanel views in a stored notebook, in order: the
    widget views whose model carries the CSS class skipviz-panel."""
    state = nb.metadata.get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    panels = {k for k, m in state.items() if "skipviz-panel" in m.get("state", {}).get("_dom_classes", [])}
    found = []
    for i, cell in enumerate(nb.cells):
        for j, out in enumerate(cell.get("outputs", []) if cell.cell_type == "code" else []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is not None and view.get("model_id") in panels:
                found.append((i, j))
    return found


def panel_html(manifest: dict, base: str, index: int) -> str:
    """A kernel-free panel: the opening picture (shown with no script too) and its manifest."""
    alt = alt_text(manifest, manifest["states"][0])
    first = manifest["states"][0]["image"]
    data = html.escape(json.dumps(manifest), quote=True)
    return (f'<figure class="skipviz-static-panel" id="skipviz-panel-{index}" data-base="{base}/" '
            f'data-manifest="{data}">'
            f'<div class="skipviz-static-controls" role="group" aria-label="controls of interactive figure {index + 1}"></div>'
            f'<img src="{base}/{first}" alt="{html.escape(alt, quote=True)}">'
            f'<figcaption class="skipviz-static-status" aria-live="polite">Pre-rendered: '
            f'{len(manifest["states"])} states of this figure; run the notebook for every other.'
            f'</figcaption></figure>')


def alt_text(manifest: dict, state: dict) -> str:
    """A state's alternative text: the panel's own description, then what this state plots."""
    return " ".join(t for t in (manifest.get("alt"), state.get("alt")) if t) or "an interactive figure"


def replace_panels(nb: nbformat.NotebookNode, states: Path, image_base: str,
                   readings: dict[int, str] | None = None) -> int:
    """Swap each panel's widget view for its kernel-free panel; return how many. `readings`:
    {cell: the "What to see" text under it}, which starts each picture's alternative text when
    the panel gave no `alt`. Raises if the notebook's run rendered another number of panels
    than it stores."""
    places = panel_outputs(nb)
    folders = sorted(states.glob("panel-*")) if states.exists() else []
    if len(folders) != len(places):
        raise SystemExit(f"{states.name}: the notebook stores {len(places)} panels, but its run for the "
                         f"site rendered {len(folders)}; rebuild the stored outputs (make notebooks)")
    for k, ((i, j), folder) in enumerate(zip(places, folders)):
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        manifest["alt"] = manifest.get("alt") or (readings or {}).get(i)
        nb.cells[i].outputs[j] = nbformat.v4.new_output(
            "display_data", data={"text/html": panel_html(manifest, f"{image_base}/{folder.name}", k)})
    return len(places)


def copy_assets(static: Path) -> None:
    """The script and style of the kernel-free panels, into a site's _static folder."""
    for name in ("skipviz-panels.js", "skipviz-panels.css"):
        shutil.copy2(ASSETS / name, static / name)
