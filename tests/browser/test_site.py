"""The course site (`make site`, built here from FAST runs) in headless Chromium with every
non-local request blocked: every page loads without a console error, its math is typeset, every
figure has alternative text, every kernel-free panel switches pictures when a control is clicked
and when one is operated from the keyboard, and Reset brings the first picture back; axe-core
finds no serious or critical accessibility violation on any page. In `make test-all`.
Screenshots of each notebook's first panel: build/browser/site/."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from lab import BUILD, ROOT, open_offline, require_chromium

require_chromium(pytest)
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("myst_nb")
sys.path.insert(0, str(ROOT / "tools"))
import course_site  # noqa: E402
import slides  # noqa: E402

OUT = ROOT / "build" / "site"
SHOTS = BUILD / "site"
AXE = slides.MODULES / "axe-core" / "axe.min.js"


@pytest.fixture(scope="module")
def site():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SKIPVIZ_FAST", "1")
        course_site.build(OUT)
    return OUT


PAGES = ["index", *(p.stem for p in course_site.notebooks()), "presenting", "homework", "package", "benchmarks", "contributing",
         "publishing"]


def open_page(browser, path: Path):
    page, blocked, errors = open_offline(browser, path.as_uri(), 1200, 900)
    page.wait_for_load_state("load")
    return page, blocked, errors


@pytest.mark.parametrize("name", PAGES)
def test_every_page_works_offline_and_is_accessible(site, file_browser, name):
    page, blocked, errors = open_page(file_browser, site / f"{name}.html")
    if page.evaluate("() => document.querySelectorAll('.math').length"):
        page.wait_for_function("() => document.querySelectorAll('.MathJax_CHTML, .mjx-chtml').length > 0",
                               timeout=30_000)
    visible_h1 = page.evaluate("() => Array.from(document.querySelectorAll('h1')).filter(h => h.offsetParent).length")
    assert visible_h1 == 1, "one title per page"
    images = page.evaluate("""() => Array.from(document.querySelectorAll('article img')).map(
        i => [i.getAttribute('src'), i.getAttribute('alt') || ''])""")
    for src, alt in images:
        assert alt.strip() and Path(src).name not in alt, f"{src} has no alternative text"
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']}))
        .violations.filter(v => ['serious', 'critical'].includes(v.impact))
        .map(v => v.id + ': ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(' | '))""")
    assert not violations, violations
    assert not errors, errors
    assert not blocked, f"the page asked the network for {blocked}"
    page.close()


def current_image(page, panel):
    return page.evaluate("p => p.querySelector('img').getAttribute('src')", panel)


@pytest.mark.parametrize("name", [p.stem for p in course_site.notebooks()])
def test_every_kernel_free_panel_switches_by_mouse_and_keyboard(site, file_browser, name):
    page, _, errors = open_page(file_browser, site / f"{name}.html")
    panels = page.query_selector_all(".skipviz-static-panel")
    assert panels, "the notebook's panel is on its page"
    for k, panel in enumerate(panels):
        panel.scroll_into_view_if_needed()
        first = current_image(page, panel)
        control = panel.query_selector(".skipviz-static-controls button:not(.skipviz-reset), "
                                       ".skipviz-static-controls select, .skipviz-static-controls input")
        tag = control.evaluate("c => c.tagName + (c.type ? ':' + c.type : '')")
        if tag.startswith("SELECT"):
            control.select_option(index=1)
        elif tag == "INPUT:range":  # the mouse at the slider's far end (its middle may be the opening value)
            box = control.bounding_box()
            page.mouse.click(box["x"] + box["width"] - 2, box["y"] + box["height"] / 2)
        else:
            control.click()
        assert current_image(page, panel) != first or "skipviz-unavailable" in panel.get_attribute("class")
        assert panel.query_selector(".skipviz-static-status").inner_text()
        panel.query_selector(".skipviz-reset").click()
        assert current_image(page, panel) == first and "skipviz-unavailable" not in panel.get_attribute("class")
        # The keyboard alone: focus the control and operate it as a reader would.
        control.focus()
        page.keyboard.press("ArrowDown" if tag.startswith("SELECT") else
                            "ArrowRight" if tag == "INPUT:range" else "Space")
        assert current_image(page, panel) != first or "skipviz-unavailable" in panel.get_attribute("class")
        panel.query_selector(".skipviz-reset").focus()
        page.keyboard.press("Enter")
        assert current_image(page, panel) == first
        page.wait_for_function("p => p.querySelector('img').complete", arg=panel, timeout=10_000)
        natural = page.evaluate("p => p.querySelector('img').naturalWidth", panel)
        assert natural > 0, "the picture loads"
        if k == 0:
            SHOTS.mkdir(parents=True, exist_ok=True)
            panel.screenshot(path=str(SHOTS / f"{name}-panel.png"))
    assert not errors, errors
    page.close()


def test_every_declared_state_was_rendered(site):
    """Each panel's manifest lists the states it declared (FigurePanel(states=...)), and each has
    its picture; at most 100 per panel, and the whole site stays under 100 MB."""
    import json

    states = ROOT / "build" / "site-states"
    folders = sorted(states.glob("*/panel-*"))
    assert len(folders) >= 8
    for folder in folders:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        images = [s["image"] for s in manifest["states"]]
        assert 2 <= len(images) <= 100 and len(set(images)) == len(images)
        assert all((folder / i).stat().st_size > 1000 for i in images), folder
        assert sorted(p.name for p in folder.glob("state-*.png")) == sorted(images)
        assert all(s["alt"] for s in manifest["states"]), "every state says what it plots"
    assert course_site.size_mb(site) < 100


def test_on_a_phone_the_page_fits_and_the_menu_opens(site, file_browser):
    """390 px wide: no page is wider than the screen, and the article header's ☰ button opens the
    site navigation (the theme binds only the hidden header's button; skipviz-site.js forwards)."""
    for name in PAGES:
        page, _, errors = open_offline(file_browser, (site / f"{name}.html").as_uri(), 390, 844)
        page.wait_for_load_state("load")
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 391, f"{name}: the page is {width} px wide on a 390 px screen"
        if name == "01_vanishing_gradients":
            page.locator(".header-article-item .primary-toggle").first.click()
            page.wait_for_function("() => document.querySelector('#pst-primary-sidebar-modal').open", timeout=5_000)
            assert page.locator("#pst-primary-sidebar-modal a[href='index.html']").count()
        assert not errors, (name, errors)
        page.close()


def test_the_menu_of_pre_rendered_states_shows_each_state(site, file_browser):
    """A panel whose states are not every combination lists them by name; picking one shows its
    picture (03's reading turns off several blocks at once)."""
    import json

    page, _, errors = open_page(file_browser, site / "03_unraveled_ensembles.html")
    panel = page.query_selector(".skipviz-static-panel")
    manifest = json.loads(panel.get_attribute("data-manifest"))
    menu = panel.query_selector(".skipviz-states select")
    assert menu is not None
    options = menu.evaluate("m => Array.from(m.options).map(o => o.textContent)")
    assert len(options) == len(manifest["states"]) + 1   # and "(not pre-rendered)"
    for v in (len(manifest["states"]) - 1, 1):
        menu.select_option(value=str(v))
        assert current_image(page, panel).endswith(manifest["states"][v]["image"])
        assert "skipviz-unavailable" not in panel.get_attribute("class")
    assert not errors, errors
    page.close()
