"""A reader of the HTML report sees every table whole, without scrolling sideways.

Steps: a study with image-track cells (the widest main tables: a track per cell, conv-size
operation counts, the pooling additions) is reported and the page is laid out in Chromium at a
1400 px browser width. Invariants: no table with an ``id`` is wider than its container; the
performance table keeps every label: each cell's track is the second line of its rule, each
metric's interval the second line of its value; Markdown and LaTeX keep the track column.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spikebench.reports.render import TextTable, to_html


def _table_html(report: Path, name: str) -> str:
    page = (report / "report.html").read_text()
    return page.split(f'<table id="{name}"', 1)[1].split("</table>")[0]


def _cells(row_html: str) -> list[str]:
    return re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row_html)


def test_the_performance_table_shows_the_track_under_the_rule(image_report):
    table = _table_html(image_report, "performance")
    head, *rows = re.findall(r"<tr>(.*?)</tr>", table)
    assert _cells(head)[:3] == ["backend", 'rule<br><span class="ci">track</span>', "repeats"]
    by_cell = {tuple(re.sub(r"<[^>]+>", "|", c) for c in _cells(r)[:2]): _cells(r) for r in rows}
    image = by_cell[("custom", "conv_surrogate||images|")]
    assert ("custom", "surrogate||features|") in by_cell
    assert ("reference", "logistic_regression||features|") in by_cell
    # a metric cell: mean ± std, then the interval on a second line; never a third line
    value = image[3]
    assert re.fullmatch(r'[\d.]+ ± [\d.]+(<br><span class="ci">\[[\d.]+, [\d.]+\]</span>)',
                        value), value
    assert 'class="compact"' in table.split(">", 1)[0]


def test_markdown_and_latex_keep_the_track_column(image_report):
    md = (image_report / "report.md").read_text()
    assert "| backend | rule | track | repeats |" in md
    assert "| custom | conv_surrogate | images | 3 |" in md
    tex = (image_report / "tables" / "performance.tex").read_text()
    assert "track" in tex and "conv\\_surrogate" in tex and "images" in tex
    assert "<br>" not in md + tex


def test_a_column_shown_under_another_is_its_second_line_in_html_only():
    table = TextTable("t", "T", ["rule", "track", "score"],
                      [["conv_surrogate", "images", "0.9 ± 0.1 [0.8, 1.0]"],
                       ["mlp", "", "0.5 ± 0.2"]], compact=True,
                      under={"track": "rule", "absent": "rule"})
    html = to_html(table)
    assert "<th>rule<br><span class=\"ci\">track</span></th><th>score</th>" in html
    assert "conv_surrogate<br><span class=\"ci\">images</span></td>" in html
    assert "<td>mlp</td>" in html  # an empty track adds no line
    # compact: the interval is the second line; lacking one, the ± std is
    assert '0.9 ± 0.1<br><span class="ci">[0.8, 1.0]</span>' in html
    assert '0.5<br><span class="ci">± 0.2</span>' in html


@pytest.mark.slow
def test_no_table_is_wider_than_its_container_at_1400_px_in_chromium(image_report):
    from spikebench.reports.browser import find_browser, measure_layout

    if find_browser() is None:
        pytest.skip("no chromium installed")
    layout = measure_layout(image_report / "report.html", width=1400)
    assert layout["scroll"] <= layout["page"]  # no horizontal scroll bar on the page
    ids = {t["id"] for t in layout["tables"]}
    page = (image_report / "report.html").read_text()
    assert ids == set(re.findall(r'<table id="([^"]+)"', page))  # every table was measured
    assert {"performance", "cost", "comparisons", "cross_track"} <= ids
    too_wide = [t for t in layout["tables"]
                if t["scroll"] > t["container"] or t["width"] > t["container"]
                or t["right"] > layout["page"]]
    assert not too_wide, too_wide
