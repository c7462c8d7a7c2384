"""Shared matplotlib plumbing for the figure modules: Agg figures, saving PNG + SVG, styling.

Figures are built with :class:`matplotlib.figure.Figure` on an explicit Agg canvas, never
through ``pyplot`` or ``matplotlib.use``, so building a report needs no display and leaves the
caller's matplotlib backend (a notebook's, say) untouched.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from spikebench.io import atomic_write_bytes

#: 100 dpi keeps every figure at most 1300 px wide: the report page shows it at 1:1 (the SVG
#: next to each PNG is for print).
PNG_DPI = 100
#: Colour per backend (Okabe–Ito, colour-blind safe), cycling for unknown backends.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
#: Line style per rule. Never dotted: a dotted grey line is the chance level (:data:`CHANCE`).
LINESTYLES = ("-", "--", "-.", (0, (6, 2, 1, 2, 1, 2)), (0, (10, 3)))
REFERENCE_COLOUR = "#444444"
#: Keyword arguments of every chance-level line (labelled ``chance`` in legends).
CHANCE = {"color": "#999999", "lw": 1.0, "ls": ":", "label": "chance"}
#: At most this many distinct plotted values get a tick each on a log axis.
MAX_VALUE_TICKS = 8
#: Every text of a saved figure (tick labels, legends, titles, annotations) is at least this many
#: pixels high (font size) when the figure is shown :data:`READ_WIDTH_PX` wide: a page of that
#: width shrinks wider figures, so their fonts are drawn larger (:func:`readable`).
MIN_TEXT_PX = 9.0
READ_WIDTH_PX = 800


@dataclass(frozen=True)
class FigureFile:
    """One saved figure: its name, caption and the PNG / SVG paths."""

    name: str
    caption: str
    png: Path
    svg: Path


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` × ``height`` inches on an Agg canvas, constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def min_font_points(fig: Figure, width_px: float = READ_WIDTH_PX,
                    min_px: float = MIN_TEXT_PX) -> float:
    """The smallest font size (points) whose text is ``min_px`` pixels high when ``fig``'s PNG
    (at :data:`PNG_DPI`) is shown ``width_px`` wide (never enlarged)."""
    png_width = fig.get_figwidth() * PNG_DPI
    px_per_point = PNG_DPI / 72 * min(1.0, width_px / png_width)
    return min_px / px_per_point


def readable(fig: Figure) -> None:
    """Raise every text of ``fig`` smaller than :func:`min_font_points` to that size: tick
    labels (through ``tick_params``, which the ticks are redrawn from), legend entries and
    titles, axis labels, titles and annotations."""
    from matplotlib.text import Text

    floor = min_font_points(fig)
    for ax in fig.axes:
        for ticks in (ax.xaxis.get_major_ticks(), ax.xaxis.get_minor_ticks()):
            if ticks and float(ticks[0].label1.get_fontsize()) < floor:
                ax.tick_params(axis="x", which="both", labelsize=floor)
        for ticks in (ax.yaxis.get_major_ticks(), ax.yaxis.get_minor_ticks()):
            if ticks and float(ticks[0].label1.get_fontsize()) < floor:
                ax.tick_params(axis="y", which="both", labelsize=floor)
    for text in fig.findobj(Text):
        if float(text.get_fontsize()) < floor:
            text.set_fontsize(floor)


def save(fig: Figure, folder: Path, name: str, caption: str) -> FigureFile:
    """Write ``folder/name.png`` and ``folder/name.svg``, every text :func:`readable`."""
    readable(fig)
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / f"{name}.png", folder / f"{name}.svg"
    # rendered in memory, written atomically (a full disk names the file, nothing torn)
    atomic_write_bytes(png, _rendered(fig, "png", dpi=PNG_DPI))
    fig.set_layout_engine("none")  # keep the layout just computed: the SVG reuses it
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: smaller, faster
        atomic_write_bytes(svg, _rendered(fig, "svg"))
    return FigureFile(name, caption, png, svg)


def _rendered(fig: Figure, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, **kwargs)
    return buf.getvalue()


def compact_number(value: float, _pos: object = None) -> str:
    """Tick text without exponents: 300, 2k, 1.5M, 0.05 (at most three significant digits)."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.3g}"


def log_axis(ax: Axes, which: str = "x", base: int = 10,
             values: Iterable[float] | None = None, *, exact: bool = False) -> None:
    """Log scale on ``ax``'s ``which`` axis with readable ticks: compact text such as ``2k``,
    no minor labels, and labelled ticks across the data.

    ``values`` are the plotted positions. With ``exact`` and at most :data:`MAX_VALUE_TICKS`
    distinct, well separated ones (inference steps T = 10, 20, 40, say), each gets its own
    tick. Otherwise the ticks are 1-2-5 steps of the decade, and when fewer than three of those
    fall inside ``values``' range (a narrow range) four evenly spaced (in log) values of that
    range, two digits each.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, Locator, LogLocator, NullFormatter

    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=base)
    axis = ax.xaxis if which == "x" else ax.yaxis
    vals = np.asarray([] if values is None else list(values), dtype=float)
    vals = np.unique(vals[np.isfinite(vals) & (vals > 0)])
    separated = len(vals) < 2 or bool(np.all(vals[1:] / vals[:-1] >= 1.25))
    if exact and 0 < len(vals) <= MAX_VALUE_TICKS and separated:
        locator: Locator = FixedLocator(vals.tolist())
    elif len(vals) and _decade_ticks(vals.min(), vals.max()) < 3:
        locator = FixedLocator(np.unique([float(f"{v:.2g}") for v in
                                          np.geomspace(vals.min(), vals.max(), 4)]).tolist())
    else:
        locator = LogLocator(base=10, subs=(1.0, 2.0, 5.0))
    axis.set_major_locator(locator)
    axis.set_major_formatter(FuncFormatter(compact_number))
    axis.set_minor_formatter(NullFormatter())


def _decade_ticks(low: float, high: float) -> int:
    """How many 1-2-5 ticks lie in [low, high]."""
    exps = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    return sum(low <= m * 10.0 ** e <= high for e in exps for m in (1, 2, 5))


def cell_label(backend: str, rule: str) -> str:
    """``backend / rule`` (references as ``reference / mlp``)."""
    return f"{backend} / {rule}"


def colour_map(names: list[str]) -> dict[str, str]:
    """A stable colour per name (``reference`` is dark grey)."""
    out, i = {}, 0
    for n in names:
        if n == "reference":
            out[n] = REFERENCE_COLOUR
        else:
            out[n] = PALETTE[i % len(PALETTE)]
            i += 1
    return out


def grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    """Rows and columns of a small-multiples grid for ``n`` panels."""
    cols = max(1, min(max_cols, n))
    return math.ceil(n / cols), cols


def wrap(text: str, width: int = 18) -> str:
    """Break a long tick label at ``/``, ``_`` or spaces so it fits under an axis."""
    if len(text) <= width:
        return text
    for sep, keep in ((" / ", " /"), ("_", "_"), (" ", "")):
        if sep in text:
            head, tail = text.split(sep, 1)
            return head + keep + "\n" + wrap(tail, width)
    return text
