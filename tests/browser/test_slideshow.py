"""The slower browser checks, run by `make test-all`: the live RISE slideshow of notebook 03 with
its widget redrawing on a running kernel, and the browser checker itself (it reports what it
should, and the server it starts is stopped)."""

from __future__ import annotations

import pytest
from lab import ROOT, LabServer, check_notebook, check_slideshow, require_chromium

require_chromium(pytest)

pytest.importorskip("playwright.sync_api")  # the fixtures (conftest.py) drive it


def test_server_is_stopped_after_use():
    lab = LabServer.start(fast=True)
    lab.stop()
    assert lab.process.poll() is not None


def _scratch_notebook(name: str, cells: list[tuple[str, dict]]):
    """Write a throw-away notebook into notebooks/ (where the server can open it)."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for source, metadata in cells:
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata.update(metadata)
        nb.cells.append(cell)
    path = ROOT / "notebooks" / name
    nbformat.write(nb, path)
    return path


def test_checker_reports_error_outputs(server, page):
    path = _scratch_notebook("_check_errors.ipynb", [("1 / 0", {})])
    try:
        with pytest.raises(AssertionError, match=r"_check_errors.ipynb: error output: .*ZeroDivisionError.*screenshot"):
            check_notebook(page, server, path)
    finally:
        path.unlink()


def test_checker_reports_a_click_that_changes_nothing(server, page):
    source = ("from skipviz import widgets\n"
              "def draw(fig, skips):\n"
              "    fig.add_subplot().plot([0, 1], [0, 1])  # ignores the control\n"
              "widgets.FigurePanel(draw, {'skips': True})")
    path = _scratch_notebook("_check_unchanged.ipynb",
                             [(source, {"skipviz": {"browser": {"control": "skips", "restores": True}}})])
    try:
        with pytest.raises(AssertionError, match="did not redraw|left the picture of panel 0 unchanged"):
            check_notebook(page, server, path, clicks=2, redraw_timeout_ms=3_000)
    finally:
        path.unlink()


@pytest.mark.real_cache
def test_live_slideshow_widget_redraws(server, browser):
    """Notebook 03 as live RISE slides on a running kernel: the lesion panel's slide comes up with
    its figure, and clicking block 3 off and on redraws it and restores it."""
    path = ROOT / "notebooks" / "03_unraveled_ensembles.ipynb"
    clicks = 4
    report = check_slideshow(browser, server, path, clicks=clicks)
    (original, *after), = report.pictures
    assert len(after) == clicks and after[0] != original
    assert after[1::2] == [original] * (clicks // 2) and len(set(after[0::2])) == 1
    assert report.widgets >= 40, "every toggle button of the lesion panel is rendered"
