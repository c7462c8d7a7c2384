"""The plug-in as a user meets it: installed, it is listed by ``spikebench datasets``, passes
spikebench's data-source conformance kit, names the file and the fix for every bad input, and
a study runs on the example spec."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from spikebench.cli import main
from spikebench.datasets.sources import available_sources
from spikebench.datasets.sources.conformance import BrokenInput, check_source

HERE = Path(__file__).resolve().parents[1]
COHORT = HERE / "cohort"
OPTIONS = {"path": str(COHORT), "label": "tumour"}


def broken(tmp_path: Path, name: str, change) -> Path:
    """A copy of the cohort with one patient file rewritten by ``change(frame)``, or replaced by
    ``change`` when it is text."""
    folder = Path(shutil.copytree(COHORT, tmp_path / name))
    target = folder / "P007.csv"
    if isinstance(change, str):
        target.write_text(change)
    else:
        change(pd.read_csv(target)).to_csv(target, index=False)
    return folder


def _set(column, row, value):
    def change(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame
    return change


#: One defect each in P007.csv -> what the single DataError must say.
DEFECTS = {
    "label_not_binary": (_set("tumour", 2, 2), "label column 'tumour' must hold 0 or 1"),
    "no_label": (lambda f: f.drop(columns=["tumour"]), "no label column 'tumour'"),
    "text_feature": (_set("entropy", 0, "high"), "non-numeric feature columns ['entropy']"),
    "missing_value": (_set("hu_std", 3, None), "non-finite values in feature columns ['hu_std']"),
    "extra_column": (lambda f: f.assign(spleen_hu=1.0),
                     "feature columns differ from P001.csv: missing [], extra ['spleen_hu']"),
    "empty": ("", "not a readable CSV file"),
    "header_only": ("slice_idx,tumour,hu_mean,hu_std,entropy,area_cm2\n", "no rows"),
}


def test_registered_through_the_entry_point(capsys):
    assert "patient_csv" in available_sources()
    assert main(["datasets"]) == 0
    assert "patient_csv" in (out := capsys.readouterr().out)
    assert "path, pattern, label, patient, on_error" in out


def test_passes_the_data_source_kit(tmp_path):
    kit_cases = [BrokenInput({**OPTIONS, "path": str(broken(tmp_path, name, change))},
                             names="P007.csv", skippable=True)
                 for name, (change, _) in DEFECTS.items()]
    check_source("patient_csv", OPTIONS, broken=kit_cases)


@pytest.mark.parametrize("defect", DEFECTS)
def test_a_bad_file_is_one_error_naming_it_and_the_fix(tmp_path, defect):
    from spikebench.datasets.sources import get_source
    from spikebench.errors import DataError

    change, says = DEFECTS[defect]
    source = get_source("patient_csv")
    options = source.Options(**{**OPTIONS, "path": str(broken(tmp_path, defect, change))})
    with pytest.raises(DataError) as caught:
        source.load(options, tmp_path / "work")
    message = str(caught.value)
    assert message.startswith(str(tmp_path / defect / "P007.csv") + ": ") and says in message
    # leaving the patient out is suggested unless the spec names a column the file lacks
    assert ('on_error = "skip"' in message) == (defect != "no_label")


def test_two_files_of_one_patient_are_refused_even_when_skipping(tmp_path):
    from spikebench.datasets.sources import get_source
    from spikebench.errors import DataError

    folder = Path(shutil.copytree(COHORT, tmp_path / "cohort"))
    for path in folder.glob("*.csv"):  # a patient column: the id of each file...
        pd.read_csv(path).assign(pid=path.stem).to_csv(path, index=False)
    pd.read_csv(folder / "P008.csv").assign(pid="P007").to_csv(folder / "P008.csv", index=False)
    source = get_source("patient_csv")  # ... and P008.csv claims to be P007
    for on_error in ("fail", "skip"):
        options = source.Options(path=str(folder), label="tumour", patient="pid",
                                 on_error=on_error)
        with pytest.raises(DataError, match=r"P008\.csv: patient 'P007' is also in .*P007\.csv"):
            source.load(options, tmp_path / on_error)


def test_a_study_runs_on_the_example_spec(tmp_path):
    out = tmp_path / "run"
    assert main(["study", "run", str(HERE / "study.toml"), "--out", str(out), "--quiet"]) == 0
    results = pd.read_parquet(out / "results.parquet")
    assert set(results["status"]) == {"ok"}
    assert sorted(results["backend"] + "/" + results["rule"]) == [
        "custom/surrogate", "reference/logistic_regression"]
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["data"]["source"] == "patient_csv" and protocol["data"]["n_patients"] == 16
    assert protocol["excluded_cases"] == []


def test_a_misspelt_option_stops_the_study_before_any_work(tmp_path, capsys):
    spec = tmp_path / "study.toml"
    spec.write_text((HERE / "study.toml").read_text().replace('label = "tumour"',
                                                              'lable = "tumour"'))
    shutil.copytree(COHORT, tmp_path / "cohort")
    assert main(["study", "run", str(spec), "--out", str(tmp_path / "run")]) == 2
    assert "[data].lable: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
