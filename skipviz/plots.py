"""One figure style for every notebook: colours by family, log-scale layer plots, loss curves."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ._validation import check_bool, check_choice, check_int, check_positive, float_array, show
from .errors import SkipvizTypeError, SkipvizValueError

__all__ = ["COLORS", "OKABE_ITO", "STYLE", "figure_png", "layer_curve", "log_ticks", "loss_curves",
           "sequential_colors", "subplots", "use_style"]

# Okabe & Ito's eight colours, told apart with every common colour-vision deficiency. Categories
# take these; maps take viridis or cividis; greys are for references and faint context.
OKABE_ITO = {"orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73", "yellow": "#F0E442",
             "blue": "#0072B2", "vermilion": "#D55E00", "reddish purple": "#CC79A7", "black": "#000000"}
# One meaning per colour in every notebook: plain nets vermilion, residual (V1) nets blue, V2
# bluish green, pre-activation orange, convolutional reddish purple, theory grey.
COLORS = {"plain": OKABE_ITO["vermilion"], "residual": OKABE_ITO["blue"], "theory": "#555555",
          "conv": OKABE_ITO["reddish purple"], "v1": OKABE_ITO["blue"], "v2": OKABE_ITO["bluish green"],
          "preact": OKABE_ITO["orange"]}
STYLE = {
    "figure.dpi": 100, "savefig.dpi": 100, "figure.figsize": (6.4, 3.6),
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9, "legend.frameon": False,
    "font.size": 10, "lines.linewidth": 1.8,
}


def use_style() -> None:
    """Apply the skipviz style to matplotlib (call once, at the top of a notebook). In a notebook,
    every figure shown from then on carries a text description of what it plots (`describe`) as
    its image's alternative text, for screen readers, the slides and the course site."""
    mpl.rcParams.update(STYLE)
    _describe_shown_figures()


def describe(fig: Figure) -> str:
    """What `fig` plots, in words, from its own titles, axis labels, scales and legends: e.g.
    "Two panels. 1, 'tanh': gradient RMS (log scale) against layer; lines: Xavier, He. 2, ...".
    The alternative text of a figure before its "What to see" sentence."""
    if not isinstance(fig, Figure):
        raise SkipvizTypeError(f"fig must be a matplotlib Figure; got {show(fig)}")
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != "<colorbar>"]
    if not axes:
        return "An empty figure."
    words = {1: "One panel", 2: "Two panels", 3: "Three panels", 4: "Four panels"}
    parts = [(words.get(len(axes), f"{len(axes)} panels") + ".") if len(axes) > 1 else ""]
    suptitle = getattr(fig, "_suptitle", None)
    if suptitle is not None and suptitle.get_text():
        parts.insert(0, f"{suptitle.get_text()}.")
    for i, ax in enumerate(axes, 1):
        parts.append((f"{i}: " if len(axes) > 1 else "") + _describe_axes(ax))
    return " ".join(p for p in parts if p).strip()


def _describe_axes(ax) -> str:
    def label(axis, text: str) -> str:
        scale = axis.get_scale()
        already = scale in text.lower()   # a label that says "(log scale)" itself
        return text + (f" ({scale} scale)" if scale != "linear" and not already else "")

    title = ax.get_title() or ax.get_title("left") or ax.get_title("right")
    x, y = ax.get_xlabel(), ax.get_ylabel()
    # Panels that share an axis with a labelled one (sharey/sharex) take its label.
    y = y or next((a.get_ylabel() for a in ax.get_shared_y_axes().get_siblings(ax) if a.get_ylabel()), "")
    x = x or next((a.get_xlabel() for a in ax.get_shared_x_axes().get_siblings(ax) if a.get_xlabel()), "")
    what = f"'{title}': " if title else ""
    if x or y:
        what += f"{label(ax.yaxis, y) if y else 'values'} against {label(ax.xaxis, x) if x else 'position'}"
    elif ax.images:
        what += "an image"
    else:
        kinds = [name for name, items in (("lines", ax.lines), ("bars or patches", ax.patches),
                                           ("points", ax.collections)) if items]
        what += ("a diagram of " + " and ".join(kinds)) if kinds else "a diagram"
    if ax.images and (x or y):
        what += ", as a coloured map"
    legend = ax.get_legend()
    if legend is not None:
        names = [t.get_text() for t in legend.get_texts() if t.get_text()]
        if names:
            what += "; " + ("lines or markers" if len(names) > 1 else "one series") + ": " + ", ".join(names)
    return what + "."


_INSTALLED = {"done": False}


def _describe_shown_figures() -> None:
    """In IPython, give every displayed figure's PNG the metadata {'alt': describe(fig)}: nbconvert
    (the slides) and the course site read it, and it stays in the stored notebook."""
    if _INSTALLED["done"]:
        return
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    png = shell.display_formatter.formatters["image/png"]
    try:  # importing the inline backend registers its figure printer, which is wrapped below
        import matplotlib_inline.backend_inline  # noqa: F401
    except ImportError:
        return
    try:
        printer = png.lookup_by_type(Figure)
    except KeyError:
        return

    def with_alt(fig: Figure):
        data = printer(fig)
        return (data, {"alt": describe(fig)}) if data is not None else None

    png.for_type(Figure, with_alt)
    _INSTALLED["done"] = True


def subplots(nrows: int = 1, ncols: int = 1, *, width: float = 4.2, height: float = 3.2, **kwargs):
    """plt.subplots(nrows, ncols) in the skipviz style, each panel `width` x `height` inches:
    returns (fig, axes), as matplotlib does.

    Applies the style globally (like use_style): a temporary rc_context would also restore the
    backend when it exits and stop later figures from showing inline.
    """
    nrows, ncols = check_int("nrows", nrows, maximum=100), check_int("ncols", ncols, maximum=100)
    width, height = check_positive("width", width), check_positive("height", height)
    if width * ncols > 200 or height * nrows > 200:
        raise SkipvizValueError(f"width and height must give a figure under 200 inches a side; got "
                                f"{width * ncols:g} x {height * nrows:g}")
    for name in ("figsize", "layout"):
        if name in kwargs:
            raise SkipvizValueError(f"subplots sets {name} itself (width and height are per panel, in inches); "
                                    f"got {name}={kwargs[name]!r}: give width= and height= instead")
    use_style()
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                        layout="constrained", **kwargs)


def figure_png(fig: Figure) -> bytes:
    """The figure rendered to PNG bytes (what the widgets show)."""
    if not isinstance(fig, Figure):
        raise SkipvizTypeError(f"fig must be a matplotlib Figure; got {show(fig)}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", pil_kwargs={"compress_level": 1})  # fast to encode
    return buf.getvalue()


_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def _power_of_ten(value: float, _pos: int) -> str:
    if value <= 0:
        return ""
    exponent = math.floor(math.log10(value) + 1e-9)
    mantissa = round(value / 10.0**exponent, 6)
    power = "10" + str(exponent).translate(_SUPERSCRIPT)
    return power if mantissa == 1 else f"{mantissa:g}\u00d7{power}"


def log_ticks(ax, axis: str = "y") -> None:
    """Label a log axis 10\u207b\u2075, 10\u207b\u2074, ... (and 2\u00d7, 5\u00d7 when it spans under 3
    decades), without minor ticks. Call it after plotting, so the limits are known.

    Plain-text superscripts instead of mathtext halve the time to render a log-scale figure,
    which keeps widget redraws fast.
    """
    _check_axes(ax)
    axis = check_choice("axis", axis, ("x", "y"))
    target = ax.yaxis if axis == "y" else ax.xaxis
    low, high = ax.get_ylim() if axis == "y" else ax.get_xlim()
    narrow = low > 0 and math.log10(high / low) < 3
    target.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,)))
    target.set_minor_locator(ticker.NullLocator())
    target.set_major_formatter(ticker.FuncFormatter(_power_of_ten))


def layer_curve(ax, values: Sequence[float], label: str | None = None, color: str | None = None,
                positions: Sequence[float] | None = None, **kwargs):
    """Plot one value per layer on a log y-axis; positions default to layers 1..L."""
    _check_axes(ax)
    values = _numbers("values", values)
    positions = np.arange(1, len(values) + 1) if positions is None else _numbers("positions", positions)
    if len(positions) != len(values):
        raise SkipvizValueError(f"positions must give one place per value ({len(values)}); got {len(positions)}")
    for name, text in (("label", label), ("color", color)):
        if text is not None and not isinstance(text, str):
            raise SkipvizValueError(f"{name} must be a string or None; got {show(text)}")
    if color is not None and not mpl.colors.is_color_like(color):
        raise SkipvizValueError(f"color must be a matplotlib colour such as '#0072B2'; got {color!r}")
    ax.semilogy(positions, values, label=label, color=color, **kwargs)
    log_ticks(ax)
    ax.set_xlabel("layer (from the input)")
    return ax


def loss_curves(ax, histories: Mapping[str, object], colors: Mapping[str, str] | None = None,
                metric: bool = False, **kwargs):
    """Training loss (or the test metric, metric=True) against step for each labelled History."""
    from .training import History

    _check_axes(ax)
    if not isinstance(histories, Mapping) or not histories:
        raise SkipvizValueError(f"histories must be a non-empty dict {{label: History from fit}}; got "
                                f"{show(histories)}")
    for label, h in histories.items():
        if not isinstance(h, History):
            raise SkipvizValueError(f"histories[{label!r}] must be a History (what fit returns); got {show(h)}")
    if colors is not None and not isinstance(colors, Mapping):
        raise SkipvizValueError(f"colors must be a dict {{label: colour}} or None; got {show(colors)}")
    for label, c in (colors or {}).items():
        if not (isinstance(c, str) and mpl.colors.is_color_like(c)):
            raise SkipvizValueError(f"colors[{label!r}] must be a matplotlib colour; got {show(c)}")
    metric = check_bool("metric", metric)
    for label, h in histories.items():
        ys = h.test_metric if metric else h.train_loss
        ax.plot(h.steps, ys, label=label, color=(colors or {}).get(label), **kwargs)
    ax.set_xlabel("training step")
    first = next(iter(histories.values()), None)
    name = ("test " + first.metric_name) if (metric and first is not None) else "training loss"
    ax.set_ylabel(name)
    ax.legend()
    return ax


def sequential_colors(n: int) -> list[str]:
    """n colours from light to dark (viridis without its palest end), for one line per depth."""
    n = check_int("n", n, maximum=10_000)
    cmap = mpl.colormaps["viridis"]
    return [mpl.colors.to_hex(cmap(0.85 - 0.75 * i / max(n - 1, 1))) for i in range(n)]


def _check_axes(ax: object) -> None:
    if not isinstance(ax, Axes):
        raise SkipvizTypeError(f"ax must be a matplotlib Axes (e.g. from plots.subplots()); got {show(ax)}")


def _numbers(name: str, values: object) -> np.ndarray:
    """values as a 1-D float array of at least one finite-or-nan number; a (L, 1) column too."""
    array = float_array(values)
    if array is not None and array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)
    if array is None or array.ndim != 1 or len(array) == 0 or np.isinf(array).any():
        raise SkipvizValueError(f"{name} must be a 1-D list, array or tensor of numbers; got {show(values)}")
    return array
