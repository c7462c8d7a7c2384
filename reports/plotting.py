"""Shared matplotlib plumbing for the figure modules: Agg figures, saving PNG + SVG, styling.

Figures are built with :class:`matplotlib.figure.Figure` on an explicit Agg canvas, never
through ``pyplot`` or ``matplotlib.use``, so building a report needs no display and leaves the
caller's matplotlib backend (a notebook's, say) untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

PNG_DPI = 120
#: Colour per backend (Okabe–Ito, colour-blind safe), cycling for unknown backends.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")
LINESTYLES = ("-", "--", ":", "-.")
REFERENCE_COLOUR = "#444444"


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


def save(fig: Figure, folder: Path, name: str, caption: str) -> FigureFile:
    """Write ``folder/name.png`` and ``folder/name.svg``."""
    folder.mkdir(parents=True, exist_ok=True)
    png, svg = folder / f"{name}.png", folder / f"{name}.svg"
    fig.savefig(png, dpi=PNG_DPI)
    fig.set_layout_engine("none")  # keep the layout just computed: the SVG reuses it
    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text stays text: smaller, faster
        fig.savefig(svg)
    return FigureFile(name, caption, png, svg)


def compact_number(value: float, _pos: object = None) -> str:
    """Tick text without exponents: 300, 2k, 1.5M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def log_axis(ax: Axes, which: str = "x", base: int = 10) -> None:
    """Log scale on ``ax``'s ``which`` axis with readable, non-overlapping ticks (1-2-5 steps,
    compact text such as ``2k``, no minor labels)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    (ax.set_xscale if which == "x" else ax.set_yscale)("log", base=base)
    axis = ax.xaxis if which == "x" else ax.yaxis
    subs = (1.0, 2.0, 5.0) if base == 10 else (1.0,)
    axis.set_major_locator(LogLocator(base=base, subs=subs))
    axis.set_major_formatter(FuncFormatter(compact_number))
    axis.set_minor_formatter(NullFormatter())


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
