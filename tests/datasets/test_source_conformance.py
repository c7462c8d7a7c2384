"""The data-source conformance kit: the built-in sources pass it, and each kind of
non-conformance it is there to catch is caught (the kit's own test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spikebench.datasets.sources import SourceData
from spikebench.datasets.sources.base import DataSource, SourceOptions
from spikebench.datasets.sources.conformance import BrokenInput, check_source, source_checks
from spikebench.datasets.tables import load_feature_table

pytestmark = pytest.mark.filterwarnings("ignore:.*dropping constant feature columns")


def test_the_phantom_conforms():
    check_source("phantom", {"cases": 4, "shape": [48, 48]})


def test_an_msd_folder_conforms(phantom_root, broken_variants):
    check_source("msd", {"path": str(phantom_root)}, broken=[
        BrokenInput({"path": str(broken_variants["not_nifti"])}, names="liver_0.nii.gz",
                    skippable=True),
        BrokenInput({"path": str(broken_variants["no_dataset_json"])}, names="dataset.json"),
    ])


def _table(path: Path, label=lambda p, s: int(p % 2 == 1 and s > 4)) -> Path:
    rng = np.random.default_rng(0)
    rows = [{"patient_id": f"p{p:02d}", "slice_idx": s, "label": label(p, s),
             "f0": rng.normal(), "f1": rng.normal()} for p in range(8) for s in range(8)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_a_feature_table_conforms(tmp_path):
    bad = _table(tmp_path / "bad.csv", label=lambda p, s: 2 if s == 3 else 0)
    check_source("table", {"path": str(_table(tmp_path / "t.csv"))},
                 broken=[BrokenInput({"path": str(bad)}, names="bad.csv")])


class _Options(SourceOptions):
    path: str = ""


class _Sloppy(DataSource):
    """Everything the kit is there to catch: a missing file is a FileNotFoundError, every row
    is its own patient, the input is rewritten on every load."""

    name = "sloppy"
    Options = _Options
    path_options = ("path",)

    def load(self, options, workdir, *, progress=False):
        frame = pd.read_csv(options.path)  # FileNotFoundError for a missing file
        frame.to_csv(options.path, index=False)  # touches the input
        out = Path(workdir) / "t.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.drop(columns=["patient_id"]).to_csv(out, index=False)
        return SourceData(load_feature_table(out, group=None), {})


@pytest.mark.filterwarnings("ignore:.*treated as its own patient")
def test_the_kit_names_each_failed_check(tmp_path):
    path = str(_table(tmp_path / "t.csv"))
    with pytest.raises(AssertionError) as caught:
        check_source(_Sloppy(), {"path": path})
    report = str(caught.value)
    assert "fails 3 conformance check(s)" in report
    assert "- table: sloppy: every row is its own patient" in report
    assert "- inputs_unchanged: sloppy: loading changed its inputs" in report
    assert "- determinism:" not in report
    assert "- missing_input: sloppy: [data].path pointing at nothing raised FileNotFoundError" \
        in report
    assert "- broken_inputs" not in report
    assert [name for name, _ in source_checks(_Sloppy(), {"path": path})] == [
        "declarations", "table", "inputs_unchanged", "determinism", "missing_input",
        "broken_inputs"]


def test_an_input_that_is_accepted_or_unnamed_is_reported(tmp_path):
    good = str(_table(tmp_path / "t.csv"))
    with pytest.raises(AssertionError, match="was accepted; it must raise DataError"):
        check_source("table", {"path": good}, broken=[BrokenInput({"path": good}, "t.csv")])
    bad = str(_table(tmp_path / "bad.csv", label=lambda p, s: 2))
    with pytest.raises(AssertionError, match=r"must name 'P007\.csv'"):
        check_source("table", {"path": good}, broken=[BrokenInput({"path": bad}, "P007.csv")])
