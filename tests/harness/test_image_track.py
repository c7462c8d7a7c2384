"""A user runs the image track beside the feature track on the phantom: paired patients and
splits, every image rule conforms, unservable image cells are skipped with the reason, and the
report shows a track column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spikebench.harness.rules.conformance import check_rule, held_out_image_problem

IMAGE_RULES = {
    "cnn": {"epochs": 2, "channels": 4, "hidden": 8},
    "cnn_mil": {"epochs": 2, "channels": 4, "hidden": 8, "attention": 4},
    "conv_surrogate": {"epochs": 2, "channels": 4, "hidden": 8, "steps": 4,
                       "encoding": "direct", "loss": "count"},
}

SPEC = """
[study]
name = "tiny-images"
references = ["logistic_regression", "cnn", "cnn_mil"]
eval_steps = [1.0]
[data]
source = "phantom"
cases = 8
shape = [48, 48]
images = {images}
crop = 16
crop_spacing_mm = 2.0
[grid]
backends = ["custom"]
rules = ["conv_surrogate"]
[split]
scheme = "holdout"
repeats = 1
[search]
trials = 1
[space.conv_surrogate]
epochs = 2
channels = 4
hidden = 8
steps = 4
encoding = "direct"
loss = "count"
"""


@pytest.mark.parametrize("name", sorted(IMAGE_RULES))
@pytest.mark.slow
def test_image_rules_conform(name):
    backends = ["custom"] if name == "conv_surrogate" else None
    assert check_rule(name, params=IMAGE_RULES[name], backends=backends)


def test_image_problem_keeps_patients_apart_and_rows_lazy():
    train, val, test = held_out_image_problem(0)
    assert not set(train.groups) & set(val.groups) and not set(val.groups) & set(test.groups)
    assert train.X.shape[1:] == (1, 16, 16) and list(train.X.groups) == list(train.groups)
    assert abs(float(np.asarray(train.X).mean())) < 1e-4  # standardised on train pixels


def test_make_view_pairs_images_with_the_feature_rows(tmp_path):
    from spikebench.harness.data import make_view
    from spikebench.harness.spec import load_spec

    spec_path = tmp_path / "s.toml"
    spec_path.write_text(SPEC.format(images="true"))
    spec = load_spec(spec_path)
    from spikebench.harness.data import load_study_data

    with pytest.warns(UserWarning):
        data = load_study_data(spec, tmp_path / "data")
    ids = sorted(set(data.groups))
    feats = make_view(data, ids[:4], ids[4:6], ids[6:])
    images = make_view(data, ids[:4], ids[4:6], ids[6:], inputs="images")
    for a, b in ((feats.train, images.train), (feats.test, images.test)):
        assert list(a.groups) == list(b.groups) and list(a.y) == list(b.y)
        assert len(b.X) == len(a.X) and b.X.shape[1:] == (1, 16, 16)
    assert type(images.train.X).__name__ == "ImageRows"  # lazy, not an in-RAM array
    np.testing.assert_array_equal(feats.test_slice_idx, images.test_slice_idx)


def test_image_cells_without_images_are_skipped_with_the_reason(tmp_path):
    from spikebench.harness.plan import plan_cells
    from spikebench.harness.spec import load_spec

    spec_path = tmp_path / "s.toml"
    spec_path.write_text(SPEC.format(images="false"))
    plans = plan_cells(load_spec(spec_path), [], device="cpu")
    reasons = {p.rule: p.skip_reason for p in plans}
    assert "images = true" in reasons["conv_surrogate"] and "images = true" in reasons["cnn"]
    assert reasons["logistic_regression"] == ""
    assert {p.rule: p.track for p in plans}["cnn_mil"] == "images"


@pytest.mark.slow
def test_tiny_image_study_runs_end_to_end_with_a_track_column(tmp_path):
    from spikebench.cli import main

    spec_path = tmp_path / "tiny-images.toml"
    spec_path.write_text(SPEC.format(images="true"))
    out = tmp_path / "run"
    assert main(["study", "run", str(spec_path), "--out", str(out), "--quiet"]) == 0
    results = pd.read_parquet(out / "results.parquet")
    ok = results[results["status"] == "ok"]
    assert set(ok["rule"]) == {"conv_surrogate", "logistic_regression", "cnn", "cnn_mil"}
    tracks = dict(zip(ok["rule"], ok["track"], strict=False))
    assert tracks["logistic_regression"] == "features" and tracks["cnn_mil"] == "images"
    assert ok.groupby("rule")["n_test_patients"].first().nunique() == 1  # same test patients
    preds = pd.read_parquet(out / "predictions.parquet")
    mil = preds[preds["rule"] == "cnn_mil"]
    assert (mil.groupby("patient_id")["prob"].nunique() == 1).all()  # one score per patient
    report = tmp_path / "report"
    assert main(["report", str(out), "--out", str(report)]) == 0
    text = (report / "report.md").read_text()
    assert "| backend | rule | track | repeats |" in text
    assert "| reference | cnn_mil | images |" in text
    assert "| reference | logistic_regression | features |" in text


def test_study_spec_ships_and_validates():
    from spikebench.harness.spec import load_spec

    spec = load_spec(Path(__file__).parents[2] / "studies" / "msd-liver-images.toml")
    assert "cnn_mil" in spec.study.references and "conv_surrogate" in spec.grid.rules


def _toml(tables: dict) -> str:
    import json

    lines = []
    for name, values in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


@pytest.mark.slow
def test_the_shipped_image_study_runs_end_to_end_on_a_phantom(tmp_path):
    """``studies/msd-liver-images.toml`` as shipped — its grid, references, nested CV and
    analysis — with only the data swapped for a small phantom, the budgets shrunk and one
    backend: every cell runs, both tracks are in the results, and the report pairs them."""
    import tomllib

    from spikebench.cli import main

    shipped = Path(__file__).parents[2] / "studies" / "msd-liver-images.toml"
    tables = tomllib.loads(shipped.read_text())
    tables["data"] = {"source": "phantom", "cases": 12, "shape": [48, 48], "images": True,
                      "crop": 16, "crop_spacing_mm": 2.0}
    tables["grid"]["backends"] = ["custom"]
    tables["split"]["outer_folds"] = 3
    tables["search"] = {**tables["search"], "trials": 1}
    space = tables.pop("space", {})
    small = {"surrogate": {"epochs": 2},
             "conv_surrogate": {**IMAGE_RULES["conv_surrogate"]},
             "image_tempotron": {"epochs": 2},
             "conv_active": {"filters": 6, "working_size": 8, "kernel": 3, "stride": 2,
                             "steps": 8, "readout_epochs": 10},
             "conv_snn_mil": {"epochs": 2, "channels": 4, "hidden": 8, "steps": 4}}
    assert set(small) == set(tables["grid"]["rules"]), "a rule was added to the shipped grid"
    for rule, values in small.items():
        tables[f"space.{rule}"] = {**space.get(rule, {}), **values}
    spec_path = tmp_path / "images.toml"
    spec_path.write_text(_toml(tables))
    out = tmp_path / "run"
    assert main(["study", "run", str(spec_path), "--out", str(out), "--workers", "1",
                 "--quiet"]) == 0
    results = pd.read_parquet(out / "results.parquet")
    assert (results["status"] == "ok").all(), results[["rule", "status", "reason"]]
    cells = set(zip(results["backend"], results["rule"], strict=True))
    expected = ({("custom", r) for r in tables["grid"]["rules"]}
                | {("reference", r) for r in tables["study"]["references"]})
    assert cells == expected
    assert set(results.groupby("rule")["fold"].nunique()) == {3}  # every outer fold
    tracks = dict(zip(results["rule"], results["track"], strict=False))
    assert tracks["surrogate"] == "features" and tracks["conv_snn_mil"] == "images"
    assert main(["report", str(out), "--out", str(tmp_path / "report"), "--quiet"]) == 0
    assert "## Features vs images" in (tmp_path / "report" / "report.md").read_text()
