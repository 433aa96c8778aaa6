"""The states a FigurePanel offers without a kernel (skipviz.panel_states), and what it writes for
the course site: one picture per declared state, each the picture the live panel draws there."""

from __future__ import annotations

import json
from pathlib import Path

import ipywidgets
import pytest

from skipviz import models, panel_states, widgets
from skipviz.errors import SkipvizValueError

ROOT = Path(__file__).resolve().parents[1]


def draw(fig, k, kind, flag):
    ax = fig.add_subplot()
    ax.plot(range(k), label=f"{kind} {flag}")
    ax.set_xlabel("x")
    ax.set_ylabel("y")


CONTROLS = {"k": (1, 30, 1), "kind": ["a", "b", "c"], "flag": False}


def test_one_at_a_time_moves_each_control_alone_from_the_opening_state():
    panel = widgets.FigurePanel(draw, CONTROLS, states="one at a time")
    opening = {"k": 1, "kind": "a", "flag": False}
    assert panel.states[0] == opening
    moved = [{k: v for k, v in s.items() if opening[k] != v} for s in panel.states[1:]]
    assert all(len(m) == 1 for m in moved)
    # 11 slider positions with both ends, 3 options, 2 truth values: 1 + 10 + 2 + 1 states.
    assert len(panel.states) == 14 and {"k": 30} in moved and {"kind": "c"} in moved


def test_grid_is_every_combination():
    panel = widgets.FigurePanel(draw, {"k": (1, 3, 1), "kind": ["a", "b"], "flag": True}, states="grid")
    assert len(panel.states) == 3 * 2 * 2


def test_a_list_declares_the_states_the_text_discusses():
    panel = widgets.FigurePanel(draw, CONTROLS, states=[{"k": 30}, {"kind": "b", "flag": True}])
    assert panel.states == [{"k": 1, "kind": "a", "flag": False}, {"k": 30, "kind": "a", "flag": False},
                            {"k": 1, "kind": "b", "flag": True}]


@pytest.mark.parametrize("states, words", [
    ("all", "states must be 'one at a time', 'grid'"),
    ([{"depth": 3}], "names no control"),
    ([{"k": 17}], "not a value the kernel-free control offers"),
    ("grid", "at most 100"),
])
def test_bad_declarations_are_refused(states, words):
    controls = dict(CONTROLS, more=(0, 10, 1)) if states == "grid" else CONTROLS
    with pytest.raises(SkipvizValueError, match=words):
        widgets.FigurePanel(draw, controls, states=states)


def test_skip_toggles_offer_the_opening_mask_all_on_all_off_and_each_switch_flipped():
    net = models.ResidualMLP(2, 3, width=4, depth=3)
    net.skips = [True, False, True]
    values = panel_states.control_values(widgets.SkipToggles(net))
    assert values[0] == [True, False, True] and [True] * 3 in values and [False] * 3 in values
    assert [False, False, True] in values and len(values) == 5  # flipping the middle one is all on


def test_the_site_build_gets_one_picture_per_state_the_same_as_the_live_panel(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPVIZ_PANEL_STATES", str(tmp_path))
    monkeypatch.setitem(panel_states._MADE, "count", 0)
    panel = widgets.FigurePanel(draw, CONTROLS, states=[{"k": 30}], alt="a line of k points")
    folder = tmp_path / "panel-00"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["alt"] == "a line of k points" and len(manifest["states"]) == 2
    assert [c["kind"] for c in manifest["controls"]] == ["slider", "dropdown", "checkbox"]
    panel.controls["k"].value = 30
    later = manifest["states"][1]
    assert manifest["controls"][0]["values"][later["values"][0]] == 30
    assert (folder / later["image"]).read_bytes() == panel.image.value


def test_without_a_site_build_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.delenv("SKIPVIZ_PANEL_STATES", raising=False)
    monkeypatch.chdir(tmp_path)
    widgets.FigurePanel(draw, CONTROLS, states="one at a time")
    assert list(tmp_path.iterdir()) == []


def test_a_widget_without_a_value_list_offers_its_value_only():
    text = ipywidgets.Text(value="hello")
    assert panel_states.control_values(text) == ["hello"]


def panel_calls(source: str) -> list[str]:
    """The text of every FigurePanel(...) call in a cell's source, parentheses balanced."""
    calls = []
    start = source.find("FigurePanel(")
    while start >= 0:
        depth, i = 0, start + len("FigurePanel")
        while True:
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            i += 1
            if depth == 0:
                break
        calls.append(source[start:i])
        start = source.find("FigurePanel(", i)
    return calls


def test_every_panel_in_the_notebooks_declares_its_kernel_free_states():
    import nbformat

    found = 0
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            for call in panel_calls(cell.source) if cell.cell_type == "code" else []:
                found += 1
                assert "states=" in call, f"{path.name}: a FigurePanel without states=: {call[:80]}"
    assert found >= 8


def test_the_repository_address_is_one_setting():
    """The README's Binder badge is made from pyproject's [project.urls] Repository, as the site's
    links are (tools/course_site.py reads it)."""
    import re
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    import course_site

    s = course_site.settings()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    badges = re.findall(r"https://mybinder\.org/v2/gh/[^)\s]+", readme)
    assert badges and all(b.startswith(s["binder"]) for b in badges), (badges, s["binder"])


def test_a_toggle_grid_takes_any_mask_the_text_discusses(tmp_path, monkeypatch):
    monkeypatch.setenv("SKIPVIZ_PANEL_STATES", str(tmp_path))
    monkeypatch.setitem(panel_states._MADE, "count", 0)
    net = models.ResidualMLP(2, 3, width=4, depth=6)
    toggles = widgets.SkipToggles(net)

    def draw_skips(fig, skips):
        fig.add_subplot().bar(range(len(skips)), skips)

    mask = [True, False, True, False, True, True]  # not a preset, not one switch flipped
    panel = widgets.FigurePanel(draw_skips, {"skips": toggles}, states=["one at a time", {"skips": mask}])
    assert {"skips": mask} in panel.states
    manifest = json.loads((tmp_path / "panel-00" / "manifest.json").read_text())
    assert mask in manifest["controls"][0]["values"]
    with pytest.raises(SkipvizValueError, match="not a value"):
        widgets.FigurePanel(draw_skips, {"skips": toggles}, states=[{"skips": [True, False]}])
