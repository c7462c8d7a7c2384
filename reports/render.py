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
    """``12.3 ± 0.4`` for cost columns."""
    if not math.isfinite(mean):
        return ""
    if not math.isfinite(std):
        return fmt_number(mean)
    return f"{fmt_number(mean)} ± {std:.2g}" if abs(std) < 100 else (
        f"{fmt_number(mean)} ± {fmt_number(std)}")


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
    """An HTML table in a horizontally scrolling wrapper (bold cells ``<strong>``)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.header)
    body = []
    for i, row in enumerate(table.rows):
        cells = []
        for j, text in enumerate(row):
            main, interval = _split_interval(text)
            t = html.escape(main)
            if (i, j) in table.bold and text:
                t = f"<strong>{t}</strong>"
            if interval:  # the interval on its own line keeps wide tables narrow
                t += f'<br><span class="ci">{html.escape(interval)}</span>'

            cls = ' class="num"' if j and _numeric_looking(text) else ""
            cells.append(f"<td{cls}>{t}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table id="{html.escape(table.name)}">'
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>")


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
    "±": r"$\pm$", STAR: r"$^\star$", "·": r"$\cdot$", "–": "--", "−": "-", "×": r"$\times$",
}


def tex_escape(text: str) -> str:
    """Escape LaTeX specials (and map ± ★ × · to maths) in plain text."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: TextTable) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), bold cells ``\\textbf``."""
    spec = "l" * min(2, len(table.header)) + "r" * max(0, len(table.header) - 2)

    def cell(i: int, j: int, text: str) -> str:
        t = tex_escape(text)
        return rf"\textbf{{{t}}}" if (i, j) in table.bold and text else t

    lines = [f"% {tex_escape(table.title)}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(tex_escape(h) for h in table.header) + r" \\", r"\midrule"]
    lines += [" & ".join(cell(i, j, t) for j, t in enumerate(row)) + r" \\"
              for i, row in enumerate(table.rows)]
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)
