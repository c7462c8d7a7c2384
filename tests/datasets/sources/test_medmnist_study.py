"""A user runs a study on MedMNIST: ``spikebench datasets`` lists the source with its options,
a tiny study on a generated NoduleMNIST3D-layout file runs on all three backends (a feature
rule and an image rule) under the official split and under nested CV over the pooled sets, the
report says which protocol and which grouping it assumed, and the shipped spec validates and
calibrates."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from medmnist_files import write_medmnist

from spikebench.cli import main
from spikebench.errors import SpecError
from spikebench.harness.spec import load_spec

SHIPPED = Path(__file__).parents[3] / "studies" / "medmnist-nodule3d.toml"

SPEC = """
[study]
name = "tiny-medmnist"
references = ["logistic_regression"]
eval_steps = [1.0]
[data]
source = "medmnist"
flag = "nodulemnist3d"
root = "mm"
images = true
[grid]
backends = ["custom", "snntorch", "spikingjelly"]
rules = ["surrogate", "conv_surrogate"]
[split]
scheme = "{scheme}"
repeats = 1
outer_folds = 3
refit_seeds = 1
[search]
trials = 1
[space.surrogate]
epochs = 2
hidden = 8
steps = 4
encoding = "direct"
[space.conv_surrogate]
epochs = 1
channels = 4
hidden = 8
steps = 4
encoding = "direct"
loss = "count"
"""


def test_spikebench_datasets_lists_medmnist_with_its_options(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.lstrip().startswith("medmnist"))
    assert "official split" in line
    assert "flag, size, root, download, positive, slices, images" in out


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*dropping constant feature columns")
@pytest.mark.parametrize("scheme", ["predefined", "nested-cv"])
def test_a_tiny_medmnist_study_runs_on_every_backend_and_reports(tmp_path, scheme):
    write_medmnist(tmp_path / "mm", "nodulemnist3d", samples=(24, 10, 12), positive_share=0.4)
    spec = tmp_path / "study.toml"
    spec.write_text(SPEC.format(scheme=scheme))
    out = tmp_path / "run"
    assert main(["study", "run", str(spec), "--out", str(out), "--workers", "1",
                 "--quiet"]) == 0
    results = pd.read_parquet(out / "results.parquet")
    assert (results["status"] == "ok").all(), results[["rule", "status", "reason"]]
    cells = set(zip(results["backend"], results["rule"], strict=True))
    assert cells == {(b, r) for b in ("custom", "snntorch", "spikingjelly")
                     for r in ("surrogate", "conv_surrogate")} | {
        ("reference", "logistic_regression")}
    protocol = json.loads((out / "protocol.json").read_text())
    assert protocol["scheme"] == scheme
    assert protocol["data"]["grouping"].startswith("sample = patient")
    assert protocol["data"]["official_split"] == {"train": 24, "val": 10, "test": 12}
    predictions = pd.read_parquet(out / "predictions.parquet")
    tested = set(predictions["patient_id"])
    if scheme == "predefined":  # the official test set, and only it
        assert tested == {f"test-{i:06d}" for i in range(12)}
        assert set(results["fold"]) == {0}
    else:  # every sample of the pooled official sets, once
        assert len(tested) == 24 + 10 + 12
    assert main(["report", str(out), "--out", str(tmp_path / "report"), "--quiet"]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Grouping assumption:** sample = patient" in report
    if scheme == "predefined":
        assert "predefined (the data source's own split" in report


def test_the_shipped_spec_validates_and_calibrate_prints_its_error_rates(capsys):
    spec = load_spec(SHIPPED)
    assert spec.data.source == "medmnist" and spec.split.scheme == "predefined"
    assert main(["calibrate", str(SHIPPED), "--replicates", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("310 patients, 229 lesion-free, 1 test fold(s), 5 run(s) per cell")
    for rate in ("coverage of 95 % intervals", "type-I error", "false equivalence",
                 "power at ΔAUC 0.05", "minimum detectable ΔAUC"):
        assert rate in out


def test_calibrating_a_predefined_design_needs_the_test_set_size(tmp_path):
    from spikebench.reports.calibration import calibrate

    text = SHIPPED.read_text().replace("test_patients = 310", "")
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match=r"\[calibration\]\.test_patients: required"):
        calibrate(load_spec(path), replicates=10)
