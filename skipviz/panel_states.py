"""The states a FigurePanel offers without a kernel (on the course site and in the offline slides):
which combinations of control values, and their pictures, rendered when the site is built.

A panel declares its states with `FigurePanel(..., states=...)`:
- "one at a time": the panel as it opens, and each control moved alone to each of its values
  (the others at their opening values) — what a reader who changes one thing sees;
- "grid": every combination of every control's values;
- a list of {name: value} dicts, each a state (names left out keep their opening values), for
  the combinations the text discusses; the list may also hold "one at a time", adding those.
A control's values are a Checkbox's two, a Dropdown's options, a slider's positions (at most 11,
evenly spaced, with both ends and the opening value), and a SkipToggles' opening mask, all on,
all off, its presets' masks and each switch flipped alone. At most MAX_STATES states per panel.

With the environment variable SKIPVIZ_PANEL_STATES set to a folder (tools/static_panels.py sets
it when it runs a notebook for the site), every panel writes panel-NN/ there as it is made: one
PNG per state and manifest.json, which the page's script reads; each state's alternative text is
the panel's `alt` (what the figure shows in general) and `plots.describe` of its own figure.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np

from ._validation import show
from .errors import SkipvizTypeError, SkipvizValueError
from .plots import describe

__all__ = ["MAX_STATES", "MODES", "control_values", "declared_states"]

MAX_STATES = 100
MODES = ("one at a time", "grid")
SLIDER_POSITIONS = 11
_MADE = {"count": 0}  # panels made in this process, numbering their folders in notebook order


def control_values(control: widgets.Widget) -> list[Any]:
    """The values the kernel-free version of `control` can take, its opening value first."""
    if not isinstance(control, widgets.Widget) or not hasattr(control, "value"):
        raise SkipvizTypeError(f"control must be an ipywidgets control with a value; got {show(control)}")
    value = _plain(control.value)
    if isinstance(control, widgets.Checkbox):
        values = [value, not value]
    elif hasattr(control, "buttons") and isinstance(value, list):  # a SkipToggles
        n = len(value)
        presets = [list(m) for m in getattr(control, "preset_masks", {}).values()]
        values = [value, [True] * n, [False] * n] + presets + [
            [v if j != i else not v for j, v in enumerate(value)] for i in range(n)]
    elif isinstance(control, (widgets.IntSlider, widgets.FloatSlider)):
        count = int(round((control.max - control.min) / control.step)) + 1
        picks = np.unique(np.round(np.linspace(0, count - 1, min(count, SLIDER_POSITIONS))).astype(int))
        values = [value] + [_plain(control.min + int(i) * control.step) for i in picks]
        if isinstance(control, widgets.IntSlider):
            values = [int(v) for v in values]
        else:
            values = [round(float(v), 12) for v in values]
    elif hasattr(control, "options"):
        values = [value] + [_plain(o[1] if isinstance(o, tuple) else o) for o in control.options]
    else:
        values = [value]
    unique: list[Any] = []
    for v in values:
        if v not in unique:
            unique.append(v)
    return unique


def declared_states(controls: dict[str, widgets.Widget], states: Any) -> list[dict[str, Any]]:
    """The states a declaration gives, the panel's opening state first; SkipvizValueError for a
    declaration that is not one, a value a control cannot take, or more than MAX_STATES."""
    if not isinstance(controls, dict) or not controls:
        raise SkipvizValueError(f"controls must be a non-empty dict {{name: control}}; got {show(controls)}")
    options = {}
    for name, c in controls.items():
        try:
            options[name] = control_values(c)
        except SkipvizTypeError:
            raise SkipvizTypeError(f"controls[{name!r}] must be an ipywidgets control with a value; "
                                   f"got {show(c)}") from None
    opening = {name: values[0] for name, values in options.items()}
    one_at_a_time = [dict(opening)] + [dict(opening, **{name: v}) for name, values in options.items()
                                       for v in values[1:]]
    if isinstance(states, str) and states == "one at a time":
        found = one_at_a_time
    elif isinstance(states, str) and states == "grid":
        names = list(options)
        found = [dict(zip(names, combo)) for combo in itertools.product(*(options[n] for n in names))]
    elif isinstance(states, (list, tuple)) and states and all(
            isinstance(s, dict) or s == "one at a time" for s in states):
        found = [dict(opening)]
        for i, state in enumerate(states):
            if state == "one at a time":
                found += one_at_a_time
                continue
            unknown = set(state) - set(options)
            if unknown:
                raise SkipvizValueError(f"states[{i}] names no control {sorted(unknown)}; the controls are "
                                        f"{sorted(options)}")
            for name, v in state.items():
                if _is_mask_for(controls[name], v):
                    continue  # a SkipToggles takes any mask of its length, not only its presets
                if _plain(v) not in options[name]:
                    raise SkipvizValueError(f"states[{i}]: {name}={show(v)} is not a value the kernel-free "
                                            f"control offers ({options[name][:12]})")
            found.append(dict(opening, **{k: _plain(v) for k, v in state.items()}))
    else:
        raise SkipvizValueError(f"states must be 'one at a time', 'grid' or a non-empty list of "
                                f"{{control: value}} dicts (and 'one at a time'); got {show(states)}")
    unique: list[dict[str, Any]] = []
    for state in found:
        if state not in unique:
            unique.append(state)
    if len(unique) > MAX_STATES:
        raise SkipvizValueError(f"states gives {len(unique)} states; a kernel-free panel offers at most "
                                f"{MAX_STATES}: declare fewer (a list of the states the text discusses)")
    return unique


def folder() -> Path | None:
    """Where this process's panels write their states, or None (the usual case: no site build)."""
    target = os.environ.get("SKIPVIZ_PANEL_STATES")
    return Path(target) if target else None


def write(panel: Any, states: list[dict[str, Any]], render) -> Path:
    """Render every state with render(values) -> PNG bytes and write panel-NN/ (NN: this panel's
    place among the panels made in this process) with manifest.json. Returns the folder."""
    out = folder() / f"panel-{_MADE['count']:02d}"
    _MADE["count"] += 1
    out.mkdir(parents=True, exist_ok=True)
    controls = [_describe(name, c, [s[name] for s in states]) for name, c in panel.controls.items()]
    records = []
    for i, state in enumerate(states):
        image = f"state-{i:03d}.png"
        (out / image).write_bytes(render(state))
        records.append({"values": [controls[j]["values"].index(_plain(state[c["name"]]))
                                   for j, c in enumerate(controls)], "image": image,
                        # what this state's figure plots: its own titles, labels and legends
                        "alt": describe(panel.figure)})
    manifest = {"controls": controls, "states": records, "alt": panel.alt}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return out


def _is_mask_for(control: widgets.Widget, value: Any) -> bool:
    """Whether `value` is a list of truth values, one per switch of a SkipToggles `control`."""
    return (hasattr(control, "buttons") and isinstance(value, (list, tuple))
            and len(value) == len(control.buttons) and all(isinstance(v, (bool, np.bool_)) for v in value))


def _describe(name: str, control: widgets.Widget, used: list[Any]) -> dict[str, Any]:
    """What the page's script needs to draw a control that looks like the notebook's; `used` are
    the values the declared states give it (a SkipToggles' masks may go beyond its presets)."""
    values = control_values(control)
    if hasattr(control, "buttons"):
        values += [v for v in map(_plain, used) if v not in values]
    if isinstance(control, widgets.Checkbox):
        kind = "checkbox"
    elif hasattr(control, "buttons"):
        kind = "toggles"
    elif isinstance(control, (widgets.IntSlider, widgets.FloatSlider)):
        kind = "slider"
        values = sorted(values)
    else:
        kind = "dropdown"
    described = {"name": name, "kind": kind, "values": values,
                 "labels": [_label(control, v) for v in values],
                 "description": getattr(control, "description", "") or name}
    if kind == "toggles":
        described["switches"] = [b.description for b in control.buttons]
        described["presets"] = dict(getattr(control, "preset_masks", {}))
    return described


def _label(control: widgets.Widget, value: Any) -> str:
    for option in getattr(control, "options", ()):
        if isinstance(option, tuple) and _plain(option[1]) == value:
            return str(option[0])
    if isinstance(value, list):
        return "".join("1" if v else "0" for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def _plain(value: Any) -> Any:
    """A control value as JSON can hold it: numpy scalars as Python numbers, tuples as lists."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
