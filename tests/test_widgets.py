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


def test_image_cache_shows_a_state_seen_before_without_drawing():
    calls = []

    def draw(fig, slope, show):
        calls.append((slope, show))
        draw_line(fig, slope, "red", show)

    panel = widgets.FigurePanel(draw, {"slope": (1, 5, 1), "show": True}, cache_images=True)
    first = bytes(panel.image.value)
    panel.controls["show"].value = False
    hidden = bytes(panel.image.value)
    for _ in range(3):
        panel.controls["show"].value = True
        assert bytes(panel.image.value) == first
        panel.controls["show"].value = False
        assert bytes(panel.image.value) == hidden
    assert calls == [(1, True), (1, False)]          # drawn once per state
    assert panel.redraw_count == 8 and panel.status.value == ""
    panel.controls["slope"].value = 3                 # a new state is drawn
    panel.controls["show"].value = True
    assert calls[-2:] == [(3, False), (3, True)] and bytes(panel.image.value) != first


def test_without_the_image_cache_every_change_draws():
    """The default: a draw may read state outside the controls, so nothing is reused."""
    outside = {"slope": 1}
    calls = []

    def draw(fig, show):
        calls.append(show)
        draw_line(fig, outside["slope"], "red", show)

    panel = widgets.FigurePanel(draw, {"show": True})
    first = bytes(panel.image.value)
    outside["slope"] = 4
    panel.controls["show"].value = False
    panel.controls["show"].value = True
    assert calls == [True, False, True] and bytes(panel.image.value) != first


def test_image_cache_is_bounded_and_keeps_no_errors():
    def draw(fig, n):
        if n == 3:
            raise ValueError("no picture for 3")
        fig.add_subplot().plot([0, n])

    panel = widgets.FigurePanel(draw, {"n": (0, 200, 1)}, cache_images=True)
    panel.CACHED_IMAGES = 6  # the bound, smaller here than the class's 64 to keep the test quick
    panel.controls["n"].value = 3
    assert isinstance(panel.error, ValueError) and len(panel._images) == 1
    for n in range(4, 4 + panel.CACHED_IMAGES + 5):
        panel.controls["n"].value = n
    assert len(panel._images) == panel.CACHED_IMAGES


def test_image_cache_skips_values_that_are_not_plain_data():
    """A tensor hashes by identity, not by contents: such a state is always drawn."""
    import torch

    weights = torch.zeros(3)
    control = ipywidgets.ValueWidget(value=None)
    calls = []

    def draw(fig, w):
        calls.append(None if w is None else w.tolist())
        fig.add_subplot().plot([0, 1])

    widgets.FigurePanel(draw, {"w": control}, cache_images=True)
    control.value = weights
    control.value = None
    weights += 1
    control.value = weights
    assert calls == [None, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]  # None came from the cache
    with pytest.raises(ValueError, match="cache_images"):
        widgets.FigurePanel(draw, {"w": control}, cache_images="yes")


def test_dropdown_with_labelled_values():
    control = widgets.make_control("scale", [("1", 1.0), ("1/√depth", "sqrt")])
    assert control.value == 1.0
    control.label = "1/√depth"
    assert control.value == "sqrt"


def test_bad_control_spec():
    with pytest.raises(ValueError, match="must be a widget"):
        widgets.make_control("x", {"a": 1})
    with pytest.raises(ValueError, match="must be a widget"):
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
