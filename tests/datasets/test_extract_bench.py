"""benchmark_extraction reports read vs extract time on a generated folder."""

from __future__ import annotations

from pathlib import Path

from spikebench.datasets.extract_bench import benchmark_extraction


def test_benchmark_reports_the_figures(phantom_root: Path):
    res = benchmark_extraction(phantom_root, workers=1)
    assert {"read_seconds", "extract_seconds", "ratio", "workers", "n_cases", "voxels",
            "peak_rss_mb"} <= set(res)
    assert res["n_cases"] == 6 and res["workers"] == 1
    assert res["read_seconds"] > 0 and res["extract_seconds"] > 0 and res["peak_rss_mb"] > 0
