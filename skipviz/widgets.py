"""Reusable ipywidgets pieces: a panel of controls wired to a redraw, and a skip-toggle grid bound
to `model.skips`. Figures are shown as PNG images, so a redraw is one render and one message."""

from __future__ import annotations

import asyncio
import math
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import traitlets
from matplotlib.figure import Figure

from . import panel_states
from ._validation import _is_number, _scalar, check_bool, check_int, show
from .errors import SkipvizError, SkipvizTypeError, SkipvizValueError
from .plots import STYLE, figure_png, use_style

__all__ = ["FigurePanel", "SkipToggles", "make_control"]

PANEL_MARGINS = dict(left=0.12, right=0.97, bottom=0.17, top=0.9, wspace=0.3)


def make_control(name: str, spec: Any) -> widgets.Widget:
    """Build a control from a short spec.

    A widget is used as it is; a list of options, or of (label, value) pairs -> Dropdown (first
    option selected);
    a bool -> Checkbox; (min, max, step[, value]) of ints -> IntSlider, of floats -> FloatSlider.
    Sliders redraw when released, not while dragged.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise SkipvizValueError(f"name must be a Python identifier (it becomes draw's keyword argument); "
                                f"got {show(name)}")
    if isinstance(spec, widgets.Widget):
        if not hasattr(spec, "value"):
            raise SkipvizValueError(f"spec: control {name!r} is a {type(spec).__name__}, which has no value")
        return spec
    if isinstance(spec, (bool, np.bool_)):
        return widgets.Checkbox(value=bool(spec), description=name, indent=False)
    if isinstance(spec, list) and spec:
        pairs = all(isinstance(o, tuple) and len(o) == 2 and isinstance(o[0], str) for o in spec)
        plain = all(isinstance(o, (str, int, float, np.generic)) and not isinstance(o, bool) for o in spec)
        if not (pairs or plain):
            raise SkipvizValueError(f"spec: the options of control {name!r} must be strings or numbers, or "
                                    f"(label, value) pairs; got {show(spec)}")
        return widgets.Dropdown(options=spec, value=spec[0][1] if pairs else spec[0], description=name)
    if isinstance(spec, tuple) and len(spec) in (3, 4) and all(_is_number(v) for v in spec):
        spec = tuple(np.asarray(_scalar(v)).item() for v in spec)  # numpy and 0-d tensors as Python numbers
        lo, hi, step = spec[:3]
        value = spec[3] if len(spec) == 4 else lo
        if not all(math.isfinite(v) for v in spec):
            raise SkipvizValueError(f"spec: control {name!r}: min, max, step and value must be finite; got {spec!r}")
        if not (lo < hi and 0 < step <= hi - lo and lo <= value <= hi):
            raise SkipvizValueError(f"spec: control {name!r} needs min < max, 0 < step <= max - min and "
                                    f"min <= value <= max; got (min, max, step, value) = {(lo, hi, step, value)!r}")
        if (hi - lo) / step > 10_000:
            raise SkipvizValueError(f"spec: control {name!r}: step {step!r} gives more than 10,000 positions "
                                    f"between {lo!r} and {hi!r}")
        cls = widgets.IntSlider if all(isinstance(v, int) for v in spec) else widgets.FloatSlider
        return cls(min=lo, max=hi, step=step, value=value, description=name, continuous_update=False)
    raise SkipvizValueError(f"spec: control {name!r} must be a widget, a non-empty list of options, a bool, "
                            f"or a (min, max, step[, value]) tuple of numbers; got {show(spec)}")


def _frozen(value: Any) -> Any:
    """A hashable copy of a control value (lists and arrays become tuples); TypeError for any
    other kind of object, whose hash may not follow its contents (a tensor hashes by identity)."""
    if value is None or isinstance(value, (bool, int, float, str, np.generic)):
        return value
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    raise SkipvizTypeError(f"no image cache for a control value of type {type(value).__name__}")


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

    `states` declares what the panel offers without a kernel, on the course site and in the
    offline slides ('one at a time', 'grid', or a list of {control: value} dicts; see
    skipviz.panel_states), and `alt` describes the figure for a reader who cannot see it (the
    kernel-free page shows it as the image's alternative text).
    """

    CACHED_IMAGES = 64

    def __init__(self, draw: Callable[..., None], controls: Mapping[str, Any],
                 figsize: tuple[float, float] = (7.0, 3.6), columns: int = 2,
                 figure_layout: str | None = None, cache_images: bool = False,
                 states: str | Sequence[Mapping[str, Any]] | None = None, alt: str | None = None):
        if not callable(draw) or isinstance(draw, type):
            raise SkipvizTypeError(f"draw must be a function draw(fig, **values); got {show(draw)}")
        if not isinstance(controls, Mapping):
            raise SkipvizValueError(f"controls must be a dict {{name: spec}} (see make_control); got {show(controls)}")
        if not (isinstance(figsize, (tuple, list)) and len(figsize) == 2
                and all(_is_number(v) and 0 < _scalar(v) <= 50 for v in figsize)):
            raise SkipvizValueError(f"figsize must be (width, height) in inches, each in (0, 50]; got {show(figsize)}")
        figsize = (float(_scalar(figsize[0])), float(_scalar(figsize[1])))
        columns = check_int("columns", columns, maximum=50)
        if figure_layout is not None and not (isinstance(figure_layout, str) and figure_layout in (
                "constrained", "tight", "compressed")):
            raise SkipvizValueError(f"figure_layout must be None, 'constrained', 'tight' or 'compressed'; "
                                    f"got {show(figure_layout)}")
        self.draw = draw
        self.cache_images = check_bool("cache_images", cache_images)
        self._images: OrderedDict[tuple, bytes] = OrderedDict()
        self.controls = {}
        for name, spec in controls.items():
            try:
                self.controls[name] = make_control(name, spec)
            except SkipvizError as err:
                raise type(err)(f"controls[{name!r}]: {err}") from None
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
        if alt is not None and not (isinstance(alt, str) and alt.strip()):
            raise SkipvizValueError(f"alt must be a non-empty description of the figure or None; got {show(alt)}")
        self.alt = alt
        # The kernel-free states (skipviz.panel_states): checked now, rendered only for the site.
        self.states = None if states is None else panel_states.declared_states(self.controls, states)
        self.redraw()
        if panel_states.folder() is not None:
            panel_states.write(self, self.states or [dict(self.values)], self._picture_of)

    def _picture_of(self, values: Mapping[str, Any]) -> bytes:
        """The PNG of draw(fig, **values) on the cleared figure; an exception in draw is shown in
        the picture (and kept in `error`), since a callback's traceback reaches no one."""
        self.figure.clear()
        if self.figure_layout is None:
            self.figure.subplots_adjust(**PANEL_MARGINS)  # clear() forgets them
        use_style()  # globally: an rc_context would reset the inline backend on exit
        try:
            opened = set(plt.get_fignums())
            self.draw(self.figure, **values)
            self.error = None
            self._adopt_pyplot_figure(opened)
        except Exception as err:
            self.error = err
            message = str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
            self.figure.clear()
            self.figure.text(0.5, 0.5, message, ha="center", va="center", wrap=True,
                             color="black" if isinstance(err, ValueError) else "#D55E00")
        return figure_png(self.figure)

    def _adopt_pyplot_figure(self, opened: set[int]) -> None:
        """draw made its own figure (plt.subplots()) and left the panel's empty: show that one
        instead, and close it so that it is not also shown under the cell."""
        new = [n for n in plt.get_fignums() if n not in opened]
        if new and not self.figure.axes:
            made = plt.figure(new[-1])
            self.figure = made
            for n in new:
                if n != new[-1]:
                    plt.close(n)
            plt.close(made)  # closed in pyplot; the Figure object still renders

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
        try:
            png = self._picture_of(self.values)
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
    `model.skips`, and a change of `model.skips` made in code shows within `POLL_SECONDS` in a
    kernel (or at once with `refresh()`). Observe `value` (as FigurePanel does) to redraw on
    every toggle.
    """

    value = traitlets.List(traitlets.Bool())

    def __init__(self, model: Any = None, n: int | None = None, columns: int = 10,
                 presets: Mapping[str, Callable[[int], Sequence[bool]]] | None = None,
                 description: str = "skips", labels: Sequence[str] | None = None):
        if model is None and n is None:
            raise SkipvizValueError("model and n are both None: give a model (with .skips) or the number "
                                    "of switches n")
        if model is not None and (isinstance(model, type) or not hasattr(model, "skips")):
            hint = " (give the model itself, not model.skips)" if isinstance(model, Sequence) else ""
            raise SkipvizValueError(f"model must be a skipviz model with .skips{hint}; got {show(model)}")
        if n is not None:
            n = check_int("n", n, maximum=1000)
        columns = check_int("columns", columns, maximum=100)
        if not isinstance(description, str):
            raise SkipvizValueError(f"description must be a string; got {show(description)}")
        self.model = model
        self.description = description  # the group's name, also on the kernel-free page
        start = list(model.skips) if model is not None else [True] * n
        if n is not None and n != len(start):
            raise SkipvizValueError(f"n must equal len(model.skips) = {len(start)}; got {n}")
        if not start:
            raise SkipvizValueError("model has no skip connections to toggle")
        if labels is not None and (isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence)):
            raise SkipvizValueError(f"labels must be a list of {len(start)} labels; got {show(labels)}")
        labels = [str(i + 1) for i in range(len(start))] if labels is None else [str(x) for x in labels]
        if len(labels) != len(start):
            raise SkipvizValueError(f"labels must have length {len(start)}; got {len(labels)}")
        if presets is not None and not isinstance(presets, Mapping):
            raise SkipvizValueError(f"presets must be a dict {{label: function of n}}; got {show(presets)}")
        self.buttons = [widgets.ToggleButton(value=v, description=label, tooltip=f"{description} {label}",
                                             layout=widgets.Layout(width="44px"))
                        for label, v in zip(labels, start)]
        for b in self.buttons:
            b.observe(self._on_button, names="value")
        self.preset_buttons = []
        self.preset_masks: dict[str, list[bool]] = {}  # what each preset sets, for the kernel-free page
        for label, make in (presets or {}).items():
            try:  # checked now: inside a click callback an error would reach no one
                mask = list(make(len(self.buttons)))
            except Exception as err:
                raise SkipvizValueError(f"presets[{label!r}] failed for {len(self.buttons)} switches: "
                                 f"{type(err).__name__}: {err}") from None
            if len(mask) != len(self.buttons) or not all(isinstance(v, (bool, np.bool_)) for v in mask):
                raise SkipvizValueError(f"presets[{label!r}] must give {len(self.buttons)} booleans; got {mask!r}")
            self.preset_masks[label] = [bool(v) for v in mask]
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
        if model is not None:
            self._poll_model()

    # How often a toggle grid with a model looks for a `model.skips = ...` made elsewhere. The
    # model knows nothing of widgets, so the grid polls it, on the kernel's event loop.
    POLL_SECONDS = 0.5

    def refresh(self) -> None:
        """Show the model's current skips (after a `model.skips = ...` made in code)."""
        if self.model is not None and list(self.model.skips) != [b.value for b in self.buttons]:
            self.set(list(self.model.skips))

    def _open(self) -> bool:
        return self.comm is not None  # closed widgets stop polling

    def _poll_model(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script, a test): `refresh()` when needed
            return
        me = weakref.ref(self)

        def poll() -> None:
            toggles = me()
            if toggles is not None and toggles._open():
                toggles.refresh()
                loop.call_later(SkipToggles.POLL_SECONDS, poll)

        loop.call_later(self.POLL_SECONDS, poll)

    def set(self, mask: Sequence[bool]) -> None:
        """Set every toggle at once (one update, one redraw)."""
        if isinstance(mask, (str, bytes)) or not hasattr(mask, "__len__") \
                or not all(isinstance(v, (bool, np.bool_)) for v in mask):
            raise SkipvizValueError(f"mask must be a list of {len(self.buttons)} booleans; got {mask!r}")
        mask = [bool(v) for v in mask]
        if len(mask) != len(self.buttons):
            raise SkipvizValueError(f"mask must have length {len(self.buttons)}; got {len(mask)}")
        self._syncing = True
        try:
            for b, v in zip(self.buttons, mask):
                b.value = v
        finally:
            self._syncing = False
        self.value = mask

    @traitlets.validate("value")
    def _check_value(self, proposal) -> list[bool]:
        # Refused before anything changes, so the buttons, `value` and the model always agree.
        mask = proposal["value"]
        if len(mask) != len(getattr(self, "buttons", mask)):
            raise SkipvizValueError(f"value must have length {len(self.buttons)}; got {len(mask)}")
        return mask

    def _on_button(self, _change) -> None:
        if not self._syncing:
            self.value = [b.value for b in self.buttons]

    @traitlets.observe("value")
    def _write_model(self, change) -> None:
        if self.model is not None and list(self.model.skips) != list(change["new"]):
            self.model.skips = list(change["new"])
