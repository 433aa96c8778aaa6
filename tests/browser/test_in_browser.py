"""Every notebook in a real JupyterLab (started by `make lab`) in headless Chromium: it runs in
FAST mode without errors, every widget renders, and the control named in its metadata redraws
the figure when clicked (and restores it when clicked back). Screenshots: build/browser/."""

from __future__ import annotations

import json

import pytest
from lab import (
    BUILD,
    ROOT,
    browser_specs,
    check_notebook,
    require_chromium,
    without_outputs,
)

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

require_chromium(pytest)

pytest.importorskip("playwright.sync_api")  # the fixtures (conftest.py) drive it


@pytest.mark.real_cache
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_in_jupyterlab(server, page, path):
    clicks = 6
    with without_outputs(path) as copy:
        report = check_notebook(page, server, copy, clicks=clicks)
    specs = browser_specs(path)
    assert report.widgets >= len(specs)
    assert all(0 < ms < 30_000 for ms in report.latencies_ms)
    for spec, pictures in zip(specs, report.pictures, strict=True):
        original, *after = pictures
        assert len(after) == clicks
        assert after[0] != original, "the first click must change the picture"
        if spec.get("restores"):
            # Clicking forth and back alternates between exactly two pictures: the redraw is
            # a function of the control's value, not of how often it was drawn.
            assert after[1::2] == [original] * (clicks // 2)
            assert len(set(after[0::2])) == 1
    results = BUILD / "latency.json"
    data = json.loads(results.read_text()) if results.exists() else {}
    data[path.stem] = {"latencies_ms": report.latencies_ms, "median_ms": report.median_ms,
                       "widgets": report.widgets}
    results.write_text(json.dumps(data, indent=1))
