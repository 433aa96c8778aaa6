"""Reusable ipywidgets pieces: a panel of controls wired to a redraw, and a skip-toggle grid bound
to `model.skips`. Figures are shown as PNG images, so a redraw is one render and one message."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np
import traitlets
from matplotlib.figure import Figure

from ._validation import check_bool
from .plots import STYLE, figure_png, use_style

PANEL_MARGINS = dict(left=0.12, right=0.97, bottom=0.17, top=0.9, wspace=0.3)


def make_control(name: str, spec: Any) -> widgets.Widget:
    """Build a control from a short spec.

    A widget is used as it is; a list of options, or of (label, value) pairs -> Dropdown (first
    option selected);
    a bool -> Checkbox; (min, max, step[, value]) of ints -> IntSlider, of floats -> FloatSlider.
    Sliders redraw when released, not while dragged.
    """
    if isinstance(spec, widgets.Widget):
        return spec
    if isinstance(spec, bool):
        return widgets.Checkbox(value=spec, description=name, indent=False)
    if isinstance(spec, list) and spec:
        pairs = all(isinstance(o, tuple) and len(o) == 2 for o in spec)
        return widgets.Dropdown(options=spec, value=spec[0][1] if pairs else spec[0], description=name)
    numbers = isinstance(spec, tuple) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec)
    if numbers and len(spec) in (3, 4):
        lo, hi, step = spec[:3]
        value = spec[3] if len(spec) == 4 else lo
        if not all(math.isfinite(v) for v in spec):
            raise ValueError(f"control {name!r}: min, max, step and value must be finite; got {spec!r}")
        if not (lo < hi and step > 0 and lo <= value <= hi):
            raise ValueError(f"control {name!r}: need min < max, step > 0 and min <= value <= max; "
                             f"got (min, max, step, value) = {(lo, hi, step, value)!r}")
        if (hi - lo) / step > 10_000:
            raise ValueError(f"control {name!r}: step {step!r} gives more than 10,000 positions "
                             f"between {lo!r} and {hi!r}")
        cls = widgets.IntSlider if all(isinstance(v, int) for v in spec) else widgets.FloatSlider
        return cls(min=lo, max=hi, step=step, value=value, description=name, continuous_update=False)
    raise ValueError(f"control {name!r}: spec must be a widget, a non-empty list of options, a bool, "
                     f"or a (min, max, step[, value]) tuple; got {spec!r}")


def _frozen(value: Any) -> Any:
    """A hashable copy of a control value (lists and arrays become tuples); TypeError for any
    other kind of object, whose hash may not follow its contents (a tensor hashes by identity)."""
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return value
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    raise TypeError(f"no image cache for a control value of type {type(value).__name__}")


class FigurePanel(widgets.VBox):
    """Controls above a figure; changing any control calls `draw(fig, **values)` and shows the result.

    `draw` receives a cleared matplotlib Figure (not pyplot's, so nothing is shown twice) and the
    controls' current values by name. The figure has fixed margins that suit one or two labelled
    axes; pass figure_layout="constrained" for anything more crowded (at about twice the cost).
    `redraw()` can be called directly, e.g. from a test; `redraw_count` and `image.value` (PNG
    bytes) show that it ran and what it drew. Its root carries the CSS class `skipviz-panel`,
    by which the browser tests find it.

    `cache_images=True` promises that the picture depends on the controls' values only (not on a
    model trained further, a global changed later, ...): the panel then keeps the last
    `CACHED_IMAGES` pictures by value, and a state seen before is shown again without drawing,
    which is what makes clicking back and forth in front of a class instant.
    """

    CACHED_IMAGES = 64

    def __init__(self, draw: Callable[..., None], controls: Mapping[str, Any],
                 figsize: tuple[float, float] = (7.0, 3.6), columns: int = 2,
                 figure_layout: str | None = None, cache_images: bool = False):
        self.draw = draw
        self.cache_images = check_bool("cache_images", cache_images)
        self._images: OrderedDict[tuple, bytes] = OrderedDict()
        self.controls = {name: make_control(name, spec) for name, spec in controls.items()}
        # Fixed margins by default: constrained layout would double the time of every redraw.
        self.figure_layout = figure_layout
        self.figure = Figure(figsize=figsize, dpi=STYLE["figure.dpi"], layout=figure_layout)
        self.image = widgets.Image(format="png", layout=widgets.Layout(width=f"{figsize[0] * 100:.0f}px"))
        self.status = widgets.HTML()
        self.redraw_count = 0
        self.error: Exception | None = None  # what the last draw raised, if anything
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        grid = widgets.GridBox(list(self.controls.values()),
                               layout=widgets.Layout(grid_template_columns=f"repeat({columns}, auto)"))
        super().__init__([grid, self.image, self.status])
        self.add_class("skipviz-panel")
        self.redraw()

    @property
    def values(self) -> dict[str, Any]:
        """The controls' current values by name."""
        return {name: c.value for name, c in self.controls.items()}

    def _on_change(self, _change) -> None:
        self.redraw()

    def _state(self) -> tuple | None:
        """The controls' values as a dictionary key, or None when one cannot be a key."""
        try:
            key = tuple((name, _frozen(value)) for name, value in self.values.items())
            hash(key)
        except TypeError:
            return None
        return key

    def redraw(self) -> None:
        """Show the picture for the current values: from the image cache when `cache_images` and
        this state was drawn before, else clear the figure, call draw, and render it."""
        key = self._state() if self.cache_images else None
        if key is not None and key in self._images:
            self._images.move_to_end(key)
            self.error = None
            self.image.value = self._images[key]
            self.redraw_count += 1
            return
        self.status.value = "<i>drawing…</i>"
        self.figure.clear()
        if self.figure_layout is None:
            self.figure.subplots_adjust(**PANEL_MARGINS)  # clear() forgets them
        use_style()  # globally: an rc_context would reset the inline backend on exit
        try:
            try:
                self.draw(self.figure, **self.values)
                self.error = None
            except Exception as err:  # shown in the panel: a callback's traceback reaches no one
                self.error = err
                message = str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
                self.figure.clear()
                self.figure.text(0.5, 0.5, message, ha="center", va="center", wrap=True,
                                 color="black" if isinstance(err, ValueError) else "#D55E00")
            png = figure_png(self.figure)
            if key is not None and self.error is None:
                self._images[key] = png
                while len(self._images) > self.CACHED_IMAGES:
                    self._images.popitem(last=False)
            self.image.value = png
            self.redraw_count += 1
        finally:
            self.status.value = ""


class SkipToggles(widgets.VBox):
    """One toggle button per skip connection (pressed = skip on), plus preset buttons.

    Buttons are labelled 1..n unless `labels` are given; the grid can stand for any list of
    switches (notebook 03 uses it for the blocks kept in a lesion study).

    `value` is the list of booleans; when `model` is given every change is written to
    `model.skips`. Observe `value` (as FigurePanel does) to redraw on every toggle.
    """

    value = traitlets.List(traitlets.Bool())

    def __init__(self, model: Any = None, n: int | None = None, columns: int = 10,
                 presets: Mapping[str, Callable[[int], Sequence[bool]]] | None = None,
                 description: str = "skips", labels: Sequence[str] | None = None):
        if model is None and n is None:
            raise ValueError("give a model (with .skips) or the number of skips n")
        self.model = model
        start = list(model.skips) if model is not None else [True] * n
        if n is not None and n != len(start):
            raise ValueError(f"n must equal len(model.skips) = {len(start)}; got {n}")
        if not start:
            raise ValueError("this model has no skip connections to toggle")
        labels = [str(i + 1) for i in range(len(start))] if labels is None else [str(x) for x in labels]
        if len(labels) != len(start):
            raise ValueError(f"labels must have length {len(start)}; got {len(labels)}")
        self.buttons = [widgets.ToggleButton(value=v, description=label, tooltip=f"{description} {label}",
                                             layout=widgets.Layout(width="44px"))
                        for label, v in zip(labels, start)]
        for b in self.buttons:
            b.observe(self._on_button, names="value")
        self.preset_buttons = []
        for label, make in (presets or {}).items():
            try:  # checked now: inside a click callback an error would reach no one
                mask = list(make(len(self.buttons)))
            except Exception as err:
                raise ValueError(f"preset {label!r} failed for {len(self.buttons)} switches: "
                                 f"{type(err).__name__}: {err}") from None
            if len(mask) != len(self.buttons) or not all(isinstance(v, (bool, np.bool_)) for v in mask):
                raise ValueError(f"preset {label!r} must give {len(self.buttons)} booleans; got {mask!r}")
            button = widgets.Button(description=label, layout=widgets.Layout(width="auto"))
            button.on_click(lambda _b, make=make: self.set(list(make(len(self.buttons)))))
            self.preset_buttons.append(button)
        grid = widgets.GridBox(self.buttons, layout=widgets.Layout(
            grid_template_columns=f"repeat({min(columns, len(self.buttons))}, 46px)"))
        rows = [widgets.HTML(f"<b>{description}</b> (pressed = on)"), grid]
        if self.preset_buttons:
            rows.append(widgets.HBox(self.preset_buttons))
        super().__init__(rows)
        self._syncing = False
        self.value = start
        if model is not None and hasattr(model, "on_skips_change"):
            model.on_skips_change(self._follow_model)  # a `model.skips = ...` elsewhere shows here

    def _follow_model(self, skips: list[bool]) -> None:
        if list(skips) != [b.value for b in self.buttons] and not self._writing:
            self.set(skips)

    def set(self, mask: Sequence[bool]) -> None:
        """Set every toggle at once (one update, one redraw)."""
        if isinstance(mask, (str, bytes)) or not hasattr(mask, "__len__") \
                or not all(isinstance(v, (bool, np.bool_)) for v in mask):
            raise ValueError(f"mask must be a list of {len(self.buttons)} booleans; got {mask!r}")
        mask = [bool(v) for v in mask]
        if len(mask) != len(self.buttons):
            raise ValueError(f"mask must have length {len(self.buttons)}; got {len(mask)}")
        self._syncing = True
        try:
            for b, v in zip(self.buttons, mask):
                b.value = v
        finally:
            self._syncing = False
        self.value = mask

    def _on_button(self, _change) -> None:
        if not self._syncing:
            self.value = [b.value for b in self.buttons]

    _writing = False

    @traitlets.observe("value")
    def _write_model(self, change) -> None:
        if self.model is not None and list(self.model.skips) != list(change["new"]):
            self._writing = True
            try:
                self.model.skips = list(change["new"])
            finally:
                self._writing = False
