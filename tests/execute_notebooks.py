"""Execute notebooks in place (used by `make notebooks` for the stored FULL-mode outputs).

Usage: python tests/execute_notebooks.py notebooks/01_*.ipynb ...
Runs each notebook from its own folder with kernel python3, stores widget state, drops outputs
of widgets that no longer exist (closed progress bars would show "model not found"), and prints
the wall time of each notebook.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def drop_dead_widget_outputs(nb: nbformat.NotebookNode) -> int:
    """Remove widget-view outputs whose model is not in the saved widget state; return how many."""
    state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
    alive = set(state.get("state", {}))
    dropped = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is not None and view.get("model_id") not in alive:
                dropped += 1
                continue
            kept.append(out)
        cell.outputs = kept
    return dropped


def execute(path: Path, timeout: int = 3600) -> float:
    """Execute `path` in place; return the wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    seconds = time.perf_counter() - start
    drop_dead_widget_outputs(nb)
    nbformat.write(nb, path)
    return seconds


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        p = Path(arg)
        print(f"{p.name}: executing…", flush=True)
        print(f"{p.name}: {execute(p):.1f} s, {p.stat().st_size / 1e6:.2f} MB", flush=True)
