"""``bench --study SPEC --throughput``: trials per minute with 1 and 2 worker processes, on the
journal file or on the storage a study would use (a PostgreSQL database)."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from spec_text import tiny_spec

from spikebench.harness.bench.throughput import format_throughput, study_throughput

pytestmark = pytest.mark.slow


def _spec(tmp_path: Path, table: Path, **search) -> Path:
    path = tmp_path / "tp.toml"
    path.write_text(tiny_spec(table, search={"trials": 2, **search}))
    return path


def _check(result: dict, trials: int) -> None:
    assert set(result["per_workers"]) == {1, 2}
    for row in result["per_workers"].values():
        assert row["trials"] >= trials and row["trials_per_minute"] > 0
        assert row["span_s"] > 0 and row["wall_s"] >= row["span_s"]
    assert result["per_workers"][1]["speedup"] == 1.0
    assert "trials/min" in format_throughput(result)


def test_throughput_on_the_journal(tmp_path, feature_table):
    result = study_throughput(_spec(tmp_path, feature_table), trials=2)
    _check(result, 2)
    assert result["storage"] == "journal"


@pytest.mark.postgres
def test_throughput_on_postgresql_leaves_no_study_behind(tmp_path, feature_table,
                                                         postgres_url, monkeypatch):
    monkeypatch.setenv("SPIKEBENCH_STORAGE", postgres_url)
    result = study_throughput(_spec(tmp_path, feature_table), trials=2)
    _check(result, 2)
    assert result["storage"].startswith("postgresql") and "sb-s3cret" not in result["storage"]
    assert optuna.get_all_study_summaries(optuna.storages.RDBStorage(postgres_url)) == []
