"""Every notebook runs top to bottom in FAST mode (papermill, one test each) and keeps the
collection's conventions. nbval then compares the checked cells: see `make test`."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import papermill
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]
# The template a new notebook starts from (CONTRIBUTING.md) keeps the same conventions.
TEMPLATE = ROOT / "tools" / "template" / "notebook.ipynb"
WITH_TEMPLATE = [*NOTEBOOKS, TEMPLATE]
WITH_TEMPLATE_IDS = [*IDS, "template"]
MAX_BYTES = 2_000_000


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no NN_name.ipynb"


@pytest.mark.papermill
@pytest.mark.real_cache
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_runs_in_fast_mode(path, tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPVIZ_FAST", "1")
    out = tmp_path / path.name
    papermill.execute_notebook(str(path), str(out), parameters={"FAST": True}, kernel_name="python3",
                               cwd=str(path.parent), progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors


def test_the_template_runs_and_its_checks_pass(monkeypatch):
    """The template executes top to bottom in FAST mode: its check of the written-out block, its
    claims and its exercise check all pass, so a notebook copied from it starts green."""
    import nbclient

    monkeypatch.setenv("SKIPVIZ_FAST", "1")
    nb = nbformat.read(TEMPLATE, as_version=4)
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(TEMPLATE.parent)}}).execute()
    printed = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "")
                      for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "equals models.ResidualBlock on the same weights: True" in printed
    assert printed.count("✔") == 3 and printed.count("✅") == 2


def test_the_template_takes_homework_metadata():
    """The template's answer cells carry grade ids, so that a notebook made from it gets its
    nbgrader metadata from a points table as the others do (`make homework`)."""
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import homework

    nb = nbformat.read(TEMPLATE, as_version=4)
    graded = homework.with_metadata(nb, {"nbNN-ex1": 2, "nbNN-ex1-hidden": 1, "nbNN-ex2": 1, "nbNN-ex3": 1},
                                    "template")
    ids = [c.metadata["nbgrader"]["grade_id"] for c in graded.cells if "nbgrader" in c.metadata]
    assert ids == ["nbNN-ex1", "nbNN-ex1-test", "nbNN-ex1-hidden", "nbNN-ex2", "nbNN-ex3"]


def code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


@pytest.mark.parametrize("path", WITH_TEMPLATE, ids=WITH_TEMPLATE_IDS)
def test_conventions(path):
    nb = nbformat.read(path, as_version=4)
    first = code_cells(nb)[0]
    assert "parameters" in first.metadata.get("tags", []), "first code cell must be tagged 'parameters'"
    assert re.search(r"^FAST = fast_mode\(\)", first.source, re.M) and "from skipviz.settings import fast_mode" in first.source
    assert re.search(r"^SEED = 0$", first.source, re.M)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "Learning goals" in nb.cells[0].source and "**Before you start.**" in nb.cells[0].source
    headings = re.findall(r"^#+ (.*)$", text, re.M)
    assert "Summary" in headings and any("Exercises" in h for h in headings) and "References" in headings[-1]
    assert headings.index("Summary") < [i for i, h in enumerate(headings) if "Exercises" in h][0]
    exercises_text = text[text.index("## Exercises"):text.index("## References")]
    assert 3 <= len(re.findall(r"^\*\*\d\. ", exercises_text, re.M)) <= 5, "3 to 5 exercises"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_stored_outputs_are_a_clean_full_run(path):
    assert path.stat().st_size < MAX_BYTES
    nb = nbformat.read(path, as_version=4)
    cells = code_cells(nb)
    assert all(c.execution_count is not None for c in cells if c.source.strip()), "run `make notebooks`"
    for c in cells:
        for o in c.outputs:
            assert o.output_type != "error", c.source[:80]
        if "NBVAL_CHECK_OUTPUT" in c.source:
            assert not any(o.get("name") == "stderr" for o in c.outputs), "checked cells must not print progress"
            assert "fit(" not in c.source, "a checked cell must not train (its output would depend on FAST)"
            assert "full_only=True" not in c.source, \
                "a checked cell must not hold a FULL-only claim (FAST mode prints it as not checked)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_figure_is_explained(path):
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        shows_figure = cell.cell_type == "code" and any(
            "image/png" in o.get("data", {}) for o in cell.get("outputs", []))
        if shows_figure:
            after = nb.cells[i + 1] if i + 1 < len(nb.cells) else None
            assert after is not None and after.cell_type == "markdown", \
                f"figure in cell {i} needs a markdown cell right after it saying what to see"


@pytest.mark.parametrize("path", WITH_TEMPLATE, ids=WITH_TEMPLATE_IDS)
def test_every_widget_panel_is_checked_in_the_browser(path):
    """A notebook with a FigurePanel names, in the panel cell's metadata, the control the
    browser test clicks (tests/browser/lab.py)."""
    nb = nbformat.read(path, as_version=4)
    for cell in code_cells(nb):
        if "widgets.FigurePanel(" in cell.source:
            spec = cell.metadata.get("skipviz", {}).get("browser")
            assert spec and isinstance(spec.get("control"), str), \
                'add "skipviz": {"browser": {"control": ..., "restores": ...}} to the panel cell'


SLIDE_TYPES = {"slide", "subslide", "fragment", "skip", "notes", "-"}


@pytest.mark.parametrize("path", WITH_TEMPLATE, ids=WITH_TEMPLATE_IDS)
def test_lecture_path(path):
    """Every cell has slide metadata; 10 to 40 slides; a figure or widget is never skipped and its
    plotting code is hidden in both the live (JupyterLab's source_hidden) and the static slides
    (the hide-input tag); only code is skipped; the title, the Summary and the references are slides."""
    nb = nbformat.read(path, as_version=4)
    kinds = [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells]
    assert all(k in SLIDE_TYPES for k in kinds), "every cell needs slideshow.slide_type"
    assert 10 <= sum(k in ("slide", "subslide") for k in kinds) <= 40
    assert kinds[0] == "slide"
    for cell, kind in zip(nb.cells, kinds):
        shows = any(m in o.get("data", {}) for o in cell.get("outputs", [])
                    for m in ("image/png", "application/vnd.jupyter.widget-view+json"))
        if shows:
            assert kind not in ("skip", "notes"), cell.source[:60]
            assert "hide-input" in cell.metadata.get("tags", []) and cell.metadata["jupyter"]["source_hidden"]
        if kind == "skip":
            assert cell.cell_type == "code", cell.source[:60]
        if cell.cell_type == "markdown" and cell.source.startswith(("## Summary", "## References", "## Exercises")):
            assert kind == "slide"
        if cell.source.startswith("**What to see"):
            assert kind == "notes"


@pytest.mark.parametrize("path", WITH_TEMPLATE, ids=WITH_TEMPLATE_IDS)
def test_figures_use_the_one_palette(path):
    """Colours come from plots: Okabe-Ito for categories (plots.OKABE_ITO, plots.COLORS), greys for
    context, viridis or cividis for maps; no other hex colour, named colour or colour map."""
    from skipviz import plots

    nb = nbformat.read(path, as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    allowed = {v.lower() for v in plots.OKABE_ITO.values()} | {v.lower() for v in plots.COLORS.values()}
    for colour in re.findall(r"[\"'](#[0-9a-fA-F]{6})[\"']", code):
        grey = colour[1:3] == colour[3:5] == colour[5:7]
        assert colour.lower() in allowed or grey, f"{colour} is not in the palette"
    for name in re.findall(r"color=[\"']([a-z]+)[\"']", code):
        assert name in ("k", "black", "white", "w", "grey", "gray"), f"colour name {name!r}"
    for cmap in re.findall(r"cmap=[\"'](\w+)[\"']", code):
        assert cmap in ("viridis", "cividis"), f"colour map {cmap!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_stored_check_of_a_model_answer_passed(path):
    """The reference notebook stores the FULL run of its own solutions: every exercise check in it
    says ✅ (06's stopping rule once stored ❌ NameError, its solution missing `import math`).
    A cell tagged feedback-demo shows a wrong answer on purpose."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "exercises.check_" not in cell.source:
            continue
        if "feedback-demo" in cell.metadata.get("tags", []):
            continue
        text = " ".join(o.get("data", {}).get("text/plain", "") or o.get("text", "") for o in cell.outputs)
        assert text.startswith("✅"), f"cell {i}: {text[:120]}"
