"""A reader of the report's cost table sees every column, and the pooling additions apart.

Steps: a study with image-track cells (whose average-pooling front-end writes
``pool_adds_per_sample``) and conv-size operation counts is reported. Invariants: at a 1400 px
browser width the cost table fits the page with no horizontal scroll; the pooling additions
are shown, in a column not labelled as synaptic operations, only when some row has them.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from spikebench.reports import build_report
from spikebench.reports.render import fmt_cost


@pytest.fixture(scope="module")
def pooled_report(image_report) -> Path:
    """The report of a 3 × 3 study (two image rules, one with pooling additions)."""
    return image_report


@pytest.fixture(scope="module")
def unpooled_report(tmp_path_factory, make_image_study) -> Path:
    """The same study written before the pooling additions were counted (no such column)."""
    study = make_image_study(tmp_path_factory.mktemp("unpooled"), pool_adds=False)
    return build_report(study, n_bootstrap=20, figures=False)


def _cost_markdown(report: Path) -> list[list[str]]:
    """The cost table of ``report.md`` as rows of cells (header first)."""
    md = (report / "report.md").read_text()
    block = md.split("**Cost per test sample")[1].split("\n\n")[1]
    return [[c.strip() for c in line.strip("|").split(" | ")]
            for i, line in enumerate(block.splitlines()) if i != 1]


def _cost_html(report: Path) -> tuple[str, str]:
    """The cost table of ``report.html`` and the page before it (whose last heading is its
    caption)."""
    before, table = (report / "report.html").read_text().split('<table id="cost"', 1)
    return table.split("</table>")[0], before.rsplit("<h3>", 1)[1]


def test_pool_adds_are_shown_apart_from_synaptic_operations(pooled_report, image_pool_adds):
    header, *rows = _cost_markdown(pooled_report)
    column = header.index("pool adds")
    by_rule = {(r[0], r[1]): r[column] for r in rows}
    assert by_rule[("custom", "image_tempotron")].startswith(f"{image_pool_adds:,}")
    assert by_rule[("custom", "surrogate")] == by_rule[("custom", "conv_surrogate")] == ""
    assert by_rule[("reference", "mlp")] == ""
    main = pd.read_csv(pooled_report / "tables" / "main.csv")
    tempotron = main[main["rule"] == "image_tempotron"]
    assert (tempotron["pool_adds_per_sample_mean"] == image_pool_adds).all()
    # the synaptic operations are the harness's, untouched by the pooling additions
    assert not (tempotron["synops_per_sample_mean"] == image_pool_adds).any()
    cost, caption = _cost_html(pooled_report)
    assert "<th>pool adds</th>" in cost and f"{image_pool_adds:,}" in cost
    assert "pool adds" in caption and "not synaptic" in caption


def test_a_study_without_pool_adds_has_no_pool_column(unpooled_report):
    header, *_ = _cost_markdown(unpooled_report)
    assert not any("pool" in h for h in header)
    assert all(h for h in header)  # no column without a label
    main = pd.read_csv(unpooled_report / "tables" / "main.csv")
    assert not any(c.startswith("pool_adds") for c in main.columns)
    cost, caption = _cost_html(unpooled_report)
    assert "pool" not in cost and "pool" not in caption


@pytest.mark.parametrize(("mean", "std", "text"), [
    (0.314, 0.0089, "0.314 ± 0.0089"), (496_647.0, 32_147.0, "496,647 ± 32,000"),
    (2.48e6, 160_737.0, "2.48e+06 ± 1.6e+05"), (12_096.0, 0.0, "12,096 ± 0"),
    (3.0, float("nan"), "3"), (float("nan"), 1.0, "")])
def test_a_cost_spread_has_two_significant_digits_in_its_means_notation(mean, std, text):
    assert fmt_cost(mean, std) == text


# The cost table's fit at 1400 px is checked with every other table in
# test_report_layout.py::test_no_table_is_wider_than_its_container_at_1400_px_in_chromium.
