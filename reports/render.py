"""Tables as text: one small :class:`TextTable` model rendered to Markdown, HTML and LaTeX.

LaTeX is written here (booktabs: ``\\toprule``, ``\\midrule``, ``\\bottomrule``) rather than
with ``DataFrame.to_latex``, which needs jinja2 — not a dependency of this project. Numbers are
formatted by :func:`fmt_metric` / :func:`fmt_number`; a cell marked *best* (significantly better
than every other cell, see :mod:`spikebench.reports.stats`) is bold with a ★.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

import pandas as pd

STAR = "★"


@dataclass
class TextTable:
    """Header, string rows, and the (row, column) positions set in bold."""

    name: str
    title: str
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    note: str = ""
    #: HTML only: headers that may wrap and the ``± std`` of a cell without an interval on its
    #: own line, so that a table of many numeric columns (the performance and cost tables) fits
    #: the page instead of scrolling. A cell has at most two lines: its value, then its
    #: interval or, lacking one, its ``± std``.
    compact: bool = False
    #: HTML only: header → header of the column it is shown under: that column's values (and
    #: header) become a second, smaller line of the other column's cells, so that a short label
    #: (the ``track`` under the ``rule``) costs no width of its own. Markdown and LaTeX keep
    #: the column. Headers the table lacks are ignored.
    under: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_frame(cls, name: str, title: str, frame: pd.DataFrame, note: str = ""
                   ) -> TextTable:
        """Every value of ``frame`` as text (NaN and None as empty)."""
        rows = [[_cell(v) for v in rec] for rec in frame.itertuples(index=False)]
        return cls(name, title, [str(c) for c in frame.columns], rows, note=note)


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return fmt_number(value)
    return str(value)


def fmt_number(value: float) -> str:
    """Three significant digits, thousands without exponent up to 1e6."""
    if value is None or not math.isfinite(value):
        return ""
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.2e}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def fmt_metric(mean: float, std: float, low: float, high: float) -> str:
    """``0.912 ± 0.031 [0.880, 0.941]`` (parts that are NaN are left out)."""
    if not math.isfinite(mean):
        return ""
    text = f"{mean:.3f}"
    if math.isfinite(std):
        text += f" ± {std:.3f}"
    if math.isfinite(low) and math.isfinite(high):
        text += f" [{low:.3f}, {high:.3f}]"
    return text


def fmt_cost(mean: float, std: float) -> str:
    """``12.3 ± 0.4``, ``496,647 ± 32,000``, ``2.48e+06 ± 1.6e+05`` for cost columns."""
    if not math.isfinite(mean):
        return ""
    if not math.isfinite(std):
        return fmt_number(mean)
    return f"{fmt_number(mean)} ± {_fmt_spread(std, mean)}"


def _fmt_spread(std: float, mean: float) -> str:
    """A spread to two significant digits (more would be noise), with an exponent when its
    mean has one, so that a cost cell stays short and reads in one notation."""
    if std != 0 and (abs(mean) >= 1e6 or abs(std) >= 1e6):
        return f"{std:.1e}"
    if abs(std) >= 100:
        return f"{float(f'{std:.2g}'):,.0f}"
    return f"{std:.2g}"


# -- Markdown ---------------------------------------------------------------------------------

def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(table: TextTable) -> str:
    """A GitHub-flavoured Markdown pipe table (bold cells ``**…**``)."""
    def cell(i: int, j: int, text: str) -> str:
        text = _md_escape(text)
        return f"**{text}**" if (i, j) in table.bold and text else text

    lines = ["| " + " | ".join(_md_escape(h) for h in table.header) + " |",
             "|" + "|".join("---" for _ in table.header) + "|"]
    lines += ["| " + " | ".join(cell(i, j, t) for j, t in enumerate(row)) + " |"
              for i, row in enumerate(table.rows)]
    return "\n".join(lines)


# -- HTML -------------------------------------------------------------------------------------

def to_html(table: TextTable) -> str:
    """An HTML table in a horizontally scrolling wrapper (bold cells ``<strong>``; a
    ``compact`` table has class ``compact`` and its spreads on a second line; a column named
    in ``under`` is a second line of the column it is shown under)."""
    index = {h: j for j, h in enumerate(table.header)}
    below = {index[host]: index[h] for h, host in table.under.items()
             if h in index and host in index}
    shown = [j for j in range(len(table.header)) if j not in below.values()]
    head = "".join(f"<th>{html.escape(table.header[j])}{_second_line(table.header, below, j)}"
                   "</th>" for j in shown)
    body = []
    for i, row in enumerate(table.rows):
        cells = []
        for j in shown:
            text = row[j]
            t = _html_cell(text, bold=(i, j) in table.bold, compact=table.compact)
            t += _second_line(row, below, j)
            cls = ' class="num"' if j and _numeric_looking(text) else ""
            cells.append(f"<td{cls}>{t}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    cls = ' class="compact"' if table.compact else ""
    return (f'<div class="scroll"><table id="{html.escape(table.name)}"{cls}>'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


def _second_line(texts: list[str], below: dict[int, int], j: int) -> str:
    """The text of the column shown under column ``j`` (``below``), as its second line."""
    if j not in below or not texts[below[j]]:
        return ""
    return f'<br><span class="ci">{html.escape(texts[below[j]])}</span>'


def _html_cell(text: str, *, bold: bool, compact: bool) -> str:
    """One cell's HTML: the value (``<strong>`` when bold), then on a line of its own the
    interval or, when ``compact`` and there is no interval, the ``± std``; second lines keep
    wide tables narrow."""
    main, interval = _split_interval(text)
    main, spread = _split_spread(main) if compact and not interval else (main, "")
    out = html.escape(main)
    if bold and text:
        out = f"<strong>{out}</strong>"
    return out + "".join(f'<br><span class="ci">{html.escape(extra)}</span>'
                         for extra in (spread, interval) if extra)


def _split_spread(text: str) -> tuple[str, str]:
    """``12.3 ± 0.4`` → (``12.3``, ``± 0.4``); a ★ after the spread stays with the value."""
    value, sep, spread = text.partition(" ± ")
    if not sep:
        return text, ""
    if spread.endswith(f" {STAR}"):
        return f"{value} {STAR}", "± " + spread.removesuffix(f" {STAR}")
    return value, f"± {spread}"


def _split_interval(text: str) -> tuple[str, str]:
    """``0.9 ± 0.1 [0.8, 1.0] ★`` → (``0.9 ± 0.1 ★``, ``[0.8, 1.0]``)."""
    start, end = text.find(" ["), text.find("]")
    if start < 0 or end < start:
        return text, ""
    return (text[:start] + text[end + 1:]).rstrip(), text[start + 1:end + 1]


def _numeric_looking(text: str) -> bool:
    return bool(text) and (text[0].isdigit() or text[0] in "-−.")


# -- LaTeX ------------------------------------------------------------------------------------

_TEX_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "±": r"$\pm$", STAR: r"$^\star$", "·": r"$\cdot$", "–": "--", "—": "---", "−": "-",
    "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$", "≠": r"$\neq$", "≈": r"$\approx$",
    "→": r"$\rightarrow$", "←": r"$\leftarrow$", "²": r"$^2$", "³": r"$^3$", "°": r"$^\circ$",
    "µ": r"$\mu$", "μ": r"$\mu$", "η": r"$\eta$", "α": r"$\alpha$", "β": r"$\beta$",
    "θ": r"$\theta$", "τ": r"$\tau$", "σ": r"$\sigma$", "Δ": r"$\Delta$", "…": r"\ldots{}",
    "‘": "`", "’": "'", "“": "``", "”": "''", "\u00a0": "~", "\u202f": r"\,",
}


def tex_escape(text: str) -> str:
    """Plain text as LaTeX that pdflatex compiles without a Unicode package: the specials
    escaped, ± ★ × · ≥ ≤ ² η ... as maths, dashes and quotes as TeX ligatures, and any other
    non-ASCII character as its closest ASCII spelling (accents dropped), else ``?``: the
    result is always ASCII."""
    return "".join(_TEX_SPECIAL.get(ch) or (ch if ch.isascii() else _ascii(ch)) for ch in text)


def _ascii(ch: str) -> str:
    """The ASCII letters of ``ch``'s compatibility decomposition (``é`` → ``e``), else ``?``."""
    import unicodedata

    plain = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode("ascii")
    return tex_escape(plain) if plain else "?"


#: ``\\textwidth`` of LaTeX's article class at 10 pt (a4paper or letterpaper), in points.
TEXT_WIDTH_PT = 345.0
#: Font size of the tables, its size in points, and the column padding (2 × ``\\tabcolsep``).
_TEX_FONT, _FONT_PT, _TABCOLSEP_PT = r"\footnotesize", 8.0, 4.0
#: Average advance of one character in Computer Modern, in em (digits are 0.5 em; a small
#: overestimate keeps the tables inside the text width).
_EM_PER_CHAR = 0.5
#: Share of the text width the estimated parts may fill.
_SAFETY = 0.94
#: Leading columns that identify a row, repeated in every part of a split table (the cell of
#: the main tables; the metric and the compared pair of the comparison tables).
_KEY_HEADERS = ("backend", "rule", "track", "repeats", "metric", "within", "patient score", "a",
                "b")


def _tex_width(text: str, scale: float = 1.0) -> float:
    """Estimated width in points of ``text`` typeset at the table font (× ``scale``)."""
    return len(text) * _EM_PER_CHAR * _FONT_PT * scale


def _lines(text: str) -> list[str]:
    """A cell's lines in LaTeX: ``backend / rule`` pairs break after the slash."""
    head, sep, tail = text.partition(" / ")
    return [head + " /", tail] if sep else [text]


def _column_widths(table: TextTable) -> list[float]:
    widths = [_tex_width(h) for h in table.header]
    for i, row in enumerate(table.rows):
        for j, text in enumerate(row):
            main, interval = _split_interval(text)
            bold = 1.1 if (i, j) in table.bold else 1.0  # bold figures are about 10 % wider
            widths[j] = max(widths[j], *(_tex_width(t, bold) for t in _lines(main)),
                            _tex_width(interval, 0.8))
    return [w + 2 * _TABCOLSEP_PT for w in widths]


def _key_columns(table: TextTable, widths: list[float], width: float) -> list[int]:
    """The identifying columns to repeat in every part: the longest run ending the leading
    :data:`_KEY_HEADERS` columns that takes at most 55 % of ``width`` (at least one)."""
    n = 0
    while n < len(table.header) - 1 and table.header[n] in _KEY_HEADERS:
        n += 1
    for start in range(n):
        if sum(widths[start:n]) <= 0.55 * width:
            return list(range(start, n))
    return [max(n - 1, 0)]


def latex_parts(table: TextTable, width: float = TEXT_WIDTH_PT) -> list[list[int]]:
    """Column indices of each part of ``table`` when split to fit ``width`` points: the key
    columns (:data:`_KEY_HEADERS` at the start; else the first column) start every part, the
    other columns are packed in order. A table that fits is one part."""
    widths = _column_widths(table)
    width *= _SAFETY  # the estimate is within a few per cent of TeX's widths
    keys = _key_columns(table, widths, width)
    parts: list[list[int]] = []
    current, used = list(keys), sum(widths[k] for k in keys)
    for j in (j for j in range(len(table.header)) if j not in keys):
        if len(current) > len(keys) and used + widths[j] > width:
            parts.append(current)
            current, used = list(keys), sum(widths[k] for k in keys)
        current.append(j)
        used += widths[j]
    parts.append(current)
    return parts


def latex_width(table: TextTable, columns: list[int]) -> float:
    """Estimated width in points of the part of ``table`` holding ``columns``."""
    widths = _column_widths(table)
    return sum(widths[j] for j in columns)


def to_latex(table: TextTable, width: float = TEXT_WIDTH_PT) -> str:
    """The table as booktabs ``table`` floats that fit ``width`` points (``\\textwidth`` of
    a 10 pt article): a table too wide is split into parts that repeat the key columns, each
    with its own ``\\caption`` and ``\\label`` (``tab:NAME``, or ``tab:NAME-1``, ...). An
    interval ``[lo, hi]`` goes on a second, smaller line under its value; bold cells are
    ``\\textbf``. Needs ``\\usepackage{booktabs}`` (and ``graphicx`` only when a single
    column is wider than the page, the last resort that scales the part down)."""
    parts = latex_parts(table, width)
    out = [f"% {tex_escape(table.title)}",
           "% Needs \\usepackage{booktabs}; \\input{} it into a 10 pt article or wider page."]
    for k, columns in enumerate(parts, start=1):
        suffix = f" (part {k} of {len(parts)})" if len(parts) > 1 else ""
        label = f"tab:{table.name}" + (f"-{k}" if len(parts) > 1 else "")
        body = _tabular(table, columns)
        if latex_width(table, columns) > width:  # last resort: one column wider than the page
            body = r"\resizebox{\textwidth}{!}{%" + "\n" + body + "}"
        out += [r"\begin{table}[htbp]", r"\centering", _TEX_FONT,
                rf"\setlength{{\tabcolsep}}{{{_TABCOLSEP_PT:g}pt}}",
                rf"\caption{{{tex_escape(table.title + suffix)}}}", rf"\label{{{label}}}",
                body, r"\end{table}", ""]
    return "\n".join(out)


def _tabular(table: TextTable, columns: list[int]) -> str:
    spec = "".join("l" if j < 2 and not _numeric_column(table, j) else "r" for j in columns)
    lines = [rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(tex_escape(table.header[j]) for j in columns) + r" \\", r"\midrule"]
    for i, row in enumerate(table.rows):
        mains, intervals = [], []
        for j in columns:
            main, interval = _split_interval(row[j])
            broken = [tex_escape(t) for t in _lines(main)]
            t = broken[0] if len(broken) == 1 else (
                r"\begin{tabular}[t]{@{}l@{}}" + r"\\".join(broken) + r"\end{tabular}")
            mains.append(rf"\textbf{{{t}}}" if (i, j) in table.bold and main else t)
            intervals.append(rf"{{\scriptsize {tex_escape(interval)}}}" if interval else "")
        lines.append(" & ".join(mains) + r" \\")
        if any(intervals):
            lines.append(" & ".join(intervals) + r" \\")
            if i < len(table.rows) - 1:
                lines.append(r"\addlinespace[2pt]")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def _numeric_column(table: TextTable, j: int) -> bool:
    cells = [row[j] for row in table.rows if row[j]]
    return bool(cells) and all(_numeric_looking(c) for c in cells)
