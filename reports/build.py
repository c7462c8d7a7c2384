"""``build_report``: a study folder in, a report folder out (Markdown, HTML, CSV, LaTeX, figures).

Reading (``load``), numbers (``tables``,
``stats``, ``bootstrap``), text
(``render``) and each figure kind (``figure_*`` modules) are separate;
this module only wires them together and writes the files::

    OUT/report.md        tables in Markdown, figures linked
    OUT/report.html      one self-contained page (figures as base64 PNG, inline CSS)
    OUT/tables/*.csv     numeric tables      OUT/tables/*.tex   booktabs tables
    OUT/figures/*.png / *.svg
"""

from __future__ import annotations

import base64
import html
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from spikebench.harness.folder import ResultsFolder
from spikebench.io import atomic_write_text

from .bootstrap import CONFIDENCE
from .cross_track import cross_track_lines
from .figures import figure_plans
from .folder import ReportFolder
from .inference import (
    CROSS_TRACK_TABLES,
    STATISTICS_TABLES,
    Statistics,
    compute_statistics,
    methods_lines,
    significance_lines,
    statistics_text_tables,
)
from .load import ReportError, StudyTables, load_study
from .plotting import FigureFile, save
from .render import STAR, TextTable, fmt_cost, fmt_metric, to_html, to_latex, to_markdown
from .tables import (
    COST_LEGEND,
    NEUROBENCH_LEGEND,
    POOL_ADDS_NOTE,
    TEST_METRICS,
    cost_columns,
    coverage_table,
    excluded_cases,
    metric_label,
    neurobench_columns,
    protocol_items,
    splits_table,
)


@dataclass
class Report:
    """Everything the writers need, computed once."""

    tables: StudyTables
    primary: str
    main: pd.DataFrame
    coverage: pd.DataFrame
    comparisons: pd.DataFrame
    best_tests: pd.DataFrame
    marks: dict[str, tuple[str, str]]
    stats: Statistics
    text_tables: dict[str, TextTable] = field(default_factory=dict)
    figures: list[FigureFile] = field(default_factory=list)
    missing_figures: list[str] = field(default_factory=list)


def build_report(study_dir: str | Path, out: Path | None = None, *,
                 n_bootstrap: int | None = None, seed: int | None = None,
                 primary: str | None = None,
                 figures: bool = True) -> Path:
    """Write the report of a study: Markdown, HTML, LaTeX and CSV tables, figures.

    Works on partial studies (it lists what is missing). The report only ever replaces files
    an earlier report wrote (listed in ``out/.spikebench-report.json``).

    Parameters
    ----------
    study_dir : str or Path
        The results folder of the study.
    out : Path, optional
        The report folder (default: ``study_dir/report``). It receives ``report.md``,
        ``report.html``, ``tables/*.csv`` and ``*.tex``, ``figures/*.png`` and ``*.svg``.
    n_bootstrap : int, optional
        Patient-bootstrap resamples of the intervals and tests (default: the study's
        pre-specified ``[analysis].n_bootstrap``).
    seed : int, optional
        Seed of the patient resamples (default: the study's ``[analysis].bootstrap_seed``).
        The report states both.
    primary : str, optional
        The primary metric, a ``test_*`` column (default: the spec's pre-specified
        ``[analysis].primary_metric``).
    figures : bool, default True
        ``False`` skips the figures (tables and text only: a quick look at a running study).

    Returns
    -------
    Path
        ``out``.

    Raises
    ------
    ReportError
        ``results.parquet`` is missing or unreadable, ``primary`` is not a test metric, or
        ``out`` holds files an earlier report did not write or is (or lies in the data of) the
        results folder; raised before anything is written.

    Examples
    --------
    >>> from spikebench.reports import build_report
    >>> report = build_report("results/demo")  # doctest: +SKIP
    >>> sorted(p.name for p in report.iterdir())  # doctest: +SKIP
    ['.spikebench-report.json', 'figures', 'report.html', 'report.md', 'tables']
    """
    if primary is not None and primary not in TEST_METRICS:
        raise ReportError(f"primary metric {primary!r} is not one of {list(TEST_METRICS)}")
    if n_bootstrap is not None and n_bootstrap < 1:
        raise ReportError(f"n_bootstrap must be at least 1, got {n_bootstrap}")
    tables = load_study(study_dir)
    out = Path(out) if out is not None else ResultsFolder(tables.root).report_dir
    folder = ReportFolder.open(out, tables.root, _own_name)
    started = time.perf_counter()
    report = _compute(tables, primary, n_bootstrap=n_bootstrap, seed=seed)
    if figures:
        _draw_figures(report, out / "figures", folder.claim)
    _write_tables(report, out / "tables", folder.claim)
    elapsed = time.perf_counter() - started
    atomic_write_text(folder.claim(out / "report.md"),
                      _markdown(report, elapsed))
    atomic_write_text(folder.claim(out / "report.html"),
                      _html(report, elapsed))
    folder.finish()
    return out


#: Files a report wrote before the manifest existed (recognised in such an old report folder).
_OWN_FILES = re.compile(
    r"report\.(md|html)|tables/(main|coverage|comparisons|best_cell_tests|splits|excluded_cases"
    r"|primary_analysis|equivalence|sensitivity|lesion_recall"
    r"|performance|cost|excluded)\.(csv|tex)|figures/(heatmap|optimisation_history"
    r"|parameter_importance|pareto|training_time|patient_roc_pr|confusion|inference_steps"
    r"|labels_used)\.(png|svg)")


def _own_name(rel: str) -> bool:
    return _OWN_FILES.fullmatch(rel) is not None


# -- numbers ----------------------------------------------------------------------------------

def _compute(tables: StudyTables, primary: str | None, *, n_bootstrap: int | None,
             seed: int | None) -> Report:
    """The numbers (statistics from ``inference``); ``primary`` None →
    the protocol's pre-specified primary metric."""
    if primary is None:
        from .analysis import analysis_plan

        primary = f"test_{analysis_plan(tables.protocol).primary_metric}"
    stats = compute_statistics(tables, primary, n_bootstrap=n_bootstrap, seed=seed)
    report = Report(tables, primary, stats.main, coverage_table(tables), stats.comparisons,
                    stats.best_tests, stats.marks, stats)
    report.text_tables = _text_tables(report)
    return report


def _metric_columns(primary: str) -> list[str]:
    return [primary, *(m for m in TEST_METRICS if m != primary)]


#: In HTML the main tables show a cell's track as a second line of its rule (the rows have two
#: lines anyway: value and interval or spread); Markdown and LaTeX keep the track column.
_TRACK_UNDER_RULE = {"track": "rule"}


def _text_tables(r: Report) -> dict[str, TextTable]:
    out: dict[str, TextTable] = {}
    main = r.main
    if not main.empty:
        cols = _metric_columns(r.primary)
        # the track column appears once the study has an image-track cell
        track = "track" in main.columns and bool((main["track"] == "images").any())
        keys = ["backend", "rule", *(["track"] if track else []), "repeats"]
        rows, bold = [], set()
        for i, rec in enumerate(main.to_dict("records")):
            row = [*(str(rec[k]) for k in keys[:-1]), str(rec["n_repeats"])]
            for j, col in enumerate(cols, start=len(keys)):
                text = fmt_metric(rec[f"{col}_mean"], rec[f"{col}_std"], rec[f"{col}_ci_low"],
                                  rec[f"{col}_ci_high"])
                if r.marks.get(col) == (rec["backend"], rec["rule"]) and text:
                    text += f" {STAR}"
                    bold.add((i, j))
                row.append(text)
            rows.append(row)
        # compact, the track under the rule: the table fits a 1400 px page with image cells
        out["performance"] = TextTable(
            "performance", "Test-set performance: mean ± std over runs "
            f"[{CONFIDENCE:.0%} interval carrying patients and training runs: see Methods]",
            [*keys, *(metric_label(c) for c in cols)], rows, bold, compact=True,
            under=_TRACK_UNDER_RULE)
        out["cost"] = _cost_table(main, keys)
        if neurobench_columns(main, "_mean"):
            out["neurobench"] = _neurobench_table(main, keys)
    incomplete = r.coverage[r.coverage["state"] != "complete"]
    if not incomplete.empty:
        out["coverage"] = TextTable.from_frame(
            "coverage", "Incomplete, skipped or failed cells",
            incomplete.rename(columns={"repeats_done": "done", "repeats_expected": "expected",
                                       "missing_repeats": "missing repeats"}))
    out.update(statistics_text_tables(r.stats))
    splits = splits_table(r.tables)
    if not splits.empty:
        out["splits"] = TextTable.from_frame("splits", "Patients and slices per split", splits)
    excluded = excluded_cases(r.tables)
    if not excluded.empty:
        out["excluded"] = TextTable.from_frame("excluded", "Excluded cases", excluded)
    return out


def _cost_table(main: pd.DataFrame, keys: list[str]) -> TextTable:
    """The cost table: the cell's ``keys``, then each cost column (``cost_columns``: the
    pooling additions only when a row has them) as mean ± std. Headers are short and the
    caption states what is per sample and the units; ``compact`` keeps it within the page."""
    costs = cost_columns(main, "_mean")
    rows = [[*(str(rec[k]) for k in keys[:-1]), str(rec["n_repeats"]),
             *(fmt_cost(rec[f"{c}_mean"], rec[f"{c}_std"]) for c in costs)]
            for rec in main.to_dict("records")]
    over = ("refits (repeats × outer folds)" if (main["n_refits"] > main["n_repeats"]).any()
            else "repeats")
    pool = f"; {POOL_ADDS_NOTE}" if "pool_adds_per_sample" in costs else ""
    return TextTable("cost", f"Cost per test sample and training time (mean ± std over {over}). "
                     f"{COST_LEGEND}{pool}.", [*keys, *costs.values()], rows, compact=True,
                     under=_TRACK_UNDER_RULE)


def _neurobench_table(main: pd.DataFrame, keys: list[str]) -> TextTable:
    """NeuroBench's metrics of every cell under NeuroBench's names (mean ± std)."""
    columns = neurobench_columns(main, "_mean")
    rows = [[*(str(rec[k]) for k in keys[:-1]), str(rec["n_repeats"]),
             *(fmt_cost(rec[f"{c}_mean"], rec[f"{c}_std"]) for c in columns)]
            for rec in main.to_dict("records")]
    return TextTable("neurobench", f"{NEUROBENCH_LEGEND}.", [*keys, *columns.values()], rows,
                     compact=True, under=_TRACK_UNDER_RULE)


# -- figures ----------------------------------------------------------------------------------

def _draw_figures(r: Report, folder: Path, claim: Callable[[Path], Path]) -> None:
    """Draw every figure of ``figure_plans``; those without
    data are listed as not drawn."""
    for plan in figure_plans(r.tables, r.main, r.primary):
        fig = plan.make()
        if fig is None:
            r.missing_figures.append(plan.name)
            continue
        for ext in ("png", "svg"):
            claim(folder / f"{plan.name}.{ext}")
        r.figures.append(save(fig, folder, plan.name, plan.caption))


# -- tables on disk ---------------------------------------------------------------------------

def _write_tables(r: Report, folder: Path, claim: Callable[[Path], Path]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    numeric = {"main": r.main, "coverage": r.coverage, "comparisons": r.comparisons,
               "best_cell_tests": r.best_tests, "splits": splits_table(r.tables),
               "excluded_cases": excluded_cases(r.tables), **r.stats.frames()}
    for name, frame in numeric.items():
        if not frame.empty:
            atomic_write_text(claim(folder / f"{name}.csv"), frame.to_csv(index=False))
    for name, table in r.text_tables.items():
        atomic_write_text(claim(folder / f"{name}.tex"), to_latex(table))


# -- text -------------------------------------------------------------------------------------

def _study_name(r: Report) -> str:
    name = r.tables.protocol.get("study")
    if not name and "study" in r.tables.results and r.tables.results["study"].notna().any():
        name = r.tables.results["study"].dropna().iloc[0]
    return str(name or r.tables.root.name)


def _status_lines(r: Report) -> list[str]:
    cov = r.coverage
    lines = []
    incomplete = cov[cov["state"] != "complete"]
    if cov.empty:
        lines.append("No result rows yet.")
    elif incomplete.empty:
        lines.append(f"All {len(cov)} cells are complete.")
    else:
        lines.append(f"{len(incomplete)} of {len(cov)} cells are incomplete, skipped or failed "
                     "(table below); means and tests use the repeats that exist.")
    from spikebench.reports.caveats import caveat_lines

    lines += caveat_lines(r.tables.results, r.tables.protocol)
    return lines + [f"Note: {n}" for n in r.tables.notes]


def _significance_lines(r: Report) -> list[str]:
    return significance_lines(r.stats, STAR)


def _methods_lines(r: Report) -> list[str]:
    return [*methods_lines(r.stats),
            "**Parameter importance.** Per parameter, the share of the objective's variance "
            "explained by that parameter alone (correlation ratio η² over its categories or ≤ 5 "
            "quantile bins), normalised per cell; main effects only."]


def _statistics_markdown(r: Report) -> list[str]:
    """The primary-analysis, equivalence, sensitivity, comparison and lesion tables."""
    out = []
    for t in (r.text_tables[n] for n in STATISTICS_TABLES if n in r.text_tables):
        out += [f"**{t.title}**", "", to_markdown(t), ""]
    return out


def _statistics_html(r: Report) -> list[str]:
    return [part for t in (r.text_tables[n] for n in STATISTICS_TABLES if n in r.text_tables)
            for part in (f"<h3>{html.escape(t.title)}</h3>", to_html(t))]


def _cross_track_markdown(r: Report) -> list[str]:
    """The features-vs-images section; nothing unless both tracks have cells."""
    ct = r.stats.cross_track
    if ct is None:
        return []
    out = ["## Features vs images", "", *(f"- {line}" for line in cross_track_lines(ct)), ""]
    for t in (r.text_tables[n] for n in CROSS_TRACK_TABLES if n in r.text_tables):
        out += [f"**{t.title}**", "", to_markdown(t), ""]
    return out


def _cross_track_html(r: Report, para: Callable[[list[str]], str]) -> list[str]:
    ct = r.stats.cross_track
    if ct is None:
        return []
    return ['<h2 id="tracks">Features vs images</h2>', para(cross_track_lines(ct)),
            *(part for t in (r.text_tables[n] for n in CROSS_TRACK_TABLES if n in r.text_tables)
              for part in (f"<h3>{html.escape(t.title)}</h3>", to_html(t)))]


def _markdown(r: Report, elapsed: float) -> str:
    out = [f"# spikebench report: {_study_name(r)}", ""]
    out += [f"Primary metric: **test {metric_label(r.primary)}**. Built in {elapsed:.1f} s.", ""]
    out += ["## Status", "", *(f"- {line}" for line in _status_lines(r)), ""]
    if "coverage" in r.text_tables:
        out += [to_markdown(r.text_tables["coverage"]), ""]
    out += ["## Main table", ""]
    for name in ("performance", "cost", "neurobench"):
        if name in r.text_tables:
            t = r.text_tables[name]
            out += [f"**{t.title}**", "", to_markdown(t), ""]
    if "performance" not in r.text_tables:
        out += ["No finished cell yet.", ""]
    out += ["## Which differences are real", "", *(f"- {line}" for line in
                                                   _significance_lines(r)), ""]
    out += _statistics_markdown(r)
    out += _cross_track_markdown(r)
    out += ["## Figures", ""]
    for f in r.figures:
        out += [f"![{f.caption}](figures/{f.png.name})", "", f"*{f.caption}* "
                f"([SVG](figures/{f.svg.name}))", ""]
    if r.missing_figures:
        out += [f"Not drawn (no data): {', '.join(r.missing_figures)}.", ""]
    out += ["## Protocol", ""]
    out += [f"- **{k}**: {v}" for k, v in protocol_items(r.tables)] or ["- (no protocol.json)"]
    out += [""]
    for name in ("splits", "excluded"):
        if name in r.text_tables:
            out += [f"**{r.text_tables[name].title}**", "", to_markdown(r.text_tables[name]), ""]
    out += ["## Methods", "", *(f"- {line}" for line in _methods_lines(r)), ""]
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:2em auto;
max-width:1300px;padding:0 1.5em;color:#222;line-height:1.45}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
.scroll{overflow-x:auto;margin:.6em 0 1.2em;border:1px solid #e4e4e4}
table{border-collapse:collapse;font-size:.86em;white-space:nowrap}
table.compact th{white-space:normal;vertical-align:bottom}
#coverage td,#excluded td{white-space:normal}
th,td{padding:.35em .55em;border-bottom:1px solid #eee;text-align:left}
thead th{background:#f4f6f8;border-bottom:2px solid #bbb;position:sticky;top:0}
td.num{font-variant-numeric:tabular-nums}
tbody tr:nth-child(even){background:#fafafa}
figure{margin:1.2em 0}
figure img{max-width:100%;height:auto;border:1px solid #eee;box-sizing:border-box}
figcaption{color:#555;font-size:.9em}.ci{color:#666;font-size:.85em}.note{color:#8a5300}
dl.protocol{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;font-size:.9em}
dl.protocol dt{font-weight:600}dl.protocol dd{margin:0;word-break:break-all}
nav a{margin-right:1em}
"""


def _html(r: Report, elapsed: float) -> str:
    def para(lines: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{_inline(line)}</li>" for line in lines) + "</ul>"

    title = f"spikebench report: {_study_name(r)}"
    tracks = ('<a href="#tracks">Features vs images</a>'
              if r.stats.cross_track is not None else "")
    parts = [f"<h1>{html.escape(title)}</h1>",
             '<nav><a href="#status">Status</a><a href="#main">Main table</a>'
             f'<a href="#tests">Significance</a>{tracks}<a href="#figures">Figures</a>'
             '<a href="#protocol">Protocol</a><a href="#methods">Methods</a></nav>',
             f"<p>Primary metric: <strong>test {html.escape(metric_label(r.primary))}</strong>. "
             f"Built in {elapsed:.1f} s.</p>",
             '<h2 id="status">Status</h2>', para(_status_lines(r))]
    if "coverage" in r.text_tables:
        parts.append(to_html(r.text_tables["coverage"]))
    parts.append('<h2 id="main">Main table</h2>')
    for name in ("performance", "cost", "neurobench"):
        if name in r.text_tables:
            t = r.text_tables[name]
            parts += [f"<h3>{html.escape(t.title)}</h3>", to_html(t)]
    if "performance" not in r.text_tables:
        parts.append("<p>No finished cell yet.</p>")
    parts += ['<h2 id="tests">Which differences are real</h2>', para(_significance_lines(r))]
    parts += _statistics_html(r)
    parts += _cross_track_html(r, para)
    parts.append('<h2 id="figures">Figures</h2>')
    for f in r.figures:
        data = base64.b64encode(f.png.read_bytes()).decode("ascii")
        parts.append(f'<figure id="fig-{f.name}"><img alt="{html.escape(f.caption)}" '
                     f'src="data:image/png;base64,{data}">'
                     f"<figcaption>{html.escape(f.caption)}</figcaption></figure>")
    if r.missing_figures:
        parts.append(f"<p>Not drawn (no data): {html.escape(', '.join(r.missing_figures))}.</p>")
    parts.append('<h2 id="protocol">Protocol</h2>')
    items = protocol_items(r.tables)
    if items:
        parts.append('<dl class="protocol">' + "".join(
            f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in items) + "</dl>")
    else:
        parts.append("<p>No protocol.json.</p>")
    for name in ("splits", "excluded"):
        if name in r.text_tables:
            parts += [f"<h3>{html.escape(r.text_tables[name].title)}</h3>",
                      to_html(r.text_tables[name])]
    parts += ['<h2 id="methods">Methods</h2>', para(_methods_lines(r))]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")


def _inline(text: str) -> str:
    """Markdown ``**bold**`` and ``code`` in one line of text → HTML (text escaped)."""
    out = html.escape(text)
    pieces = out.split("**")
    out = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(pieces))
    pieces = out.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(pieces))
