"""The states a FigurePanel offers without a kernel (skipviz.panel_states), and what it writes for
the course site: one picture per declared state, each the picture the live panel draws there."""

from __future__ import annotations

import json

import ipywidgets
import pytest

from skipviz import models, panel_states, widgets
from skipviz.errors import SkipvizValueError


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
