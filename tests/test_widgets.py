import ipywidgets
import pytest

from skipviz import models, widgets


def draw_line(fig, slope, color, show):
    ax = fig.add_subplot()
    if show:
        ax.plot([0, 1], [0, slope], color=color)


def test_panel_redraws_on_control_change():
    panel = widgets.FigurePanel(draw_line, {"slope": (1, 5, 1), "color": ["red", "blue"], "show": True})
    assert isinstance(panel.controls["slope"], ipywidgets.IntSlider)
    assert isinstance(panel.controls["color"], ipywidgets.Dropdown)
    assert isinstance(panel.controls["show"], ipywidgets.Checkbox)
    first, count = bytes(panel.image.value), panel.redraw_count
    assert first.startswith(b"\x89PNG") and count == 1
    panel.controls["slope"].value = 4
    assert panel.redraw_count == count + 1 and bytes(panel.image.value) != first
    second = bytes(panel.image.value)
    panel.controls["color"].value = "blue"
    assert bytes(panel.image.value) != second
    assert panel.values == {"slope": 4, "color": "blue", "show": True}


def test_panel_shows_value_errors_instead_of_raising():
    def draw(fig, n):
        if n > 2:
            raise ValueError("n too large for this demo")
        fig.add_subplot().plot([0, n])

    panel = widgets.FigurePanel(draw, {"n": (1, 4, 1)})
    panel.controls["n"].value = 3
    assert panel.redraw_count == 2 and bytes(panel.image.value).startswith(b"\x89PNG")


def test_dropdown_with_labelled_values():
    control = widgets.make_control("scale", [("1", 1.0), ("1/√depth", "sqrt")])
    assert control.value == 1.0
    control.label = "1/√depth"
    assert control.value == "sqrt"


def test_bad_control_spec():
    with pytest.raises(ValueError, match="spec must be"):
        widgets.make_control("x", {"a": 1})
    with pytest.raises(ValueError, match="spec must be"):
        widgets.make_control("x", [])


def test_skip_toggles_bound_to_model_and_panel():
    net = models.ResidualMLP(3, 2, width=8, depth=5)
    toggles = widgets.SkipToggles(net, presets={"none": lambda n: [False] * n})
    seen = []

    def draw(fig, skips):
        seen.append(list(skips))
        fig.add_subplot().bar(range(len(skips)), [int(s) for s in skips])

    panel = widgets.FigurePanel(draw, {"skips": toggles})
    before = bytes(panel.image.value)
    toggles.buttons[2].value = False
    assert net.skips == [True, True, False, True, True]
    assert seen[-1] == net.skips and bytes(panel.image.value) != before
    toggles.preset_buttons[0].click()
    assert net.skips == [False] * 5 and seen[-1] == [False] * 5
    assert [b.value for b in toggles.buttons] == [False] * 5


def test_skip_toggles_validation():
    with pytest.raises(ValueError, match="no skip connections"):
        widgets.SkipToggles(models.PlainMLP(3, 2))
    with pytest.raises(ValueError, match="model"):
        widgets.SkipToggles()
    toggles = widgets.SkipToggles(n=3)
    with pytest.raises(ValueError, match="length 3"):
        toggles.set([True])
