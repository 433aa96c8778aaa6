"""The static slides (`make slides`) in headless Chromium with every non-local request blocked:
reveal.js starts, the deck has one slide per `slide`/`subslide` cell, the first figure slide
shows a rendered image, the speaker notes are in the page, and nothing failed to load.
The live slideshow (jupyterlab-rise in `make lab`) is checked in test_in_browser.py.
Screenshots of each deck's first figure slide: build/browser/slides/."""

from __future__ import annotations

import sys

import nbformat
import pytest
from lab import BUILD, ROOT, open_offline, require_chromium

require_chromium(pytest)

sync_api = pytest.importorskip("playwright.sync_api")
sys.path.insert(0, str(ROOT / "tools"))
import slides  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
OUT = ROOT / "build" / "slides"
SHOTS = BUILD / "slides"


@pytest.fixture(scope="module")
def decks():
    assert slides.main(["--out", str(OUT)]) == 0
    return OUT


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_static_slides_work_offline(decks, file_browser, path):
    nb = nbformat.read(path, as_version=4)
    kinds = [c.metadata["slideshow"]["slide_type"] for c in nb.cells]
    expected = sum(k in ("slide", "subslide") for k in kinds)
    readings = sum(k == "notes" and c.source.startswith("**What to see") for c, k in zip(nb.cells, kinds))
    page, blocked, errors = open_offline(file_browser, (decks / f"{path.stem}.slides.html").as_uri())
    page.wait_for_selector(".reveal.ready", state="attached", timeout=30_000)
    page.evaluate("() => new Promise(done => require(['lib/reveal.js/dist/reveal.js'], R => { window.Reveal = R; done(); }))")
    assert page.evaluate("() => Reveal.getTotalSlides()") == expected
    in_notes = page.evaluate("() => Array.from(document.querySelectorAll('aside.notes')).map(a => a.textContent).join(' ')")
    assert readings >= 3 and in_notes.count("What to see") == readings, "every figure's reading is a speaker note"
    index = page.evaluate("""() => Reveal.getSlides().findIndex(s => s.querySelector('img'))""")
    assert index >= 0
    page.evaluate(f"() => {{ const i = Reveal.getIndices(Reveal.getSlides()[{index}]); Reveal.slide(i.h, i.v); }}")
    page.wait_for_timeout(500)  # the slide transition
    natural, width, height = page.evaluate("""() => { const im = Reveal.getCurrentSlide().querySelector('img');
        const r = im.getBoundingClientRect(); return [im.naturalWidth, r.width, r.height]; }""")
    assert natural > 0 and width > 300 and height > 150, "the first figure is drawn, and large"
    assert "def " not in page.evaluate("() => Reveal.getCurrentSlide().innerText"), "plotting code is hidden"
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{path.stem}-first-figure.png"))
    # The widget panel is kernel-free: on its slide, a control switches its picture, Reset restores it.
    panel = page.evaluate("""() => Reveal.getSlides().findIndex(s => s.querySelector('.skipviz-static-panel'))""")
    assert panel >= 0, "the panel is on a slide"
    page.evaluate(f"() => {{ const i = Reveal.getIndices(Reveal.getSlides()[{panel}]); Reveal.slide(i.h, i.v); }}")
    page.wait_for_timeout(500)
    image = "() => Reveal.getCurrentSlide().querySelector('.skipviz-static-panel img').getAttribute('src')"
    first = page.evaluate(image)
    page.evaluate("""() => { const p = Reveal.getCurrentSlide().querySelector('.skipviz-static-panel');
        const c = p.querySelector('select, .skipviz-toggles button, input[type=checkbox]');
        if (c.tagName === 'SELECT') { c.selectedIndex = 1; c.dispatchEvent(new Event('change')); } else { c.click(); } }""")
    assert page.evaluate(image) != first, "a control switches the panel's picture"
    page.evaluate("() => Reveal.getCurrentSlide().querySelector('.skipviz-reset').click()")
    assert page.evaluate(image) == first
    assert not blocked, f"the slides asked the network for {blocked}"
    assert not errors, errors
    page.close()
