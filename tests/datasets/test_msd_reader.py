"""Reading dataset.json and volumes: every quirk handled, every bad input one DataError."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikebench.datasets.msd import Case, Volume, iter_case_slices, read_dataset_json
from spikebench.errors import DataError


def test_cases_from_dataset_json(phantom_root: Path):
    cases = read_dataset_json(phantom_root)
    assert [c.patient_id for c in cases] == [f"liver_{k}" for k in range(7)]
    assert all(c.label is not None for c in cases[:6]) and cases[6].label is None
    assert cases[0].image == phantom_root / "imagesTr" / "liver_0.nii.gz"
    assert not any(c.image.name.startswith("._") for c in cases)


def test_volume_chunks_equal_nibabel_scaled_data(phantom_root: Path):
    for k in range(4):  # int16, int16 + intercept, float32, int16 + slope
        path = phantom_root / "imagesTr" / f"liver_{k}.nii.gz"
        expected = nib.load(path).get_fdata(dtype=np.float32)
        with Volume(path) as vol:
            got = np.concatenate([c.astype(np.float32) for _, c in vol.chunks(chunk=3)], axis=2)
        np.testing.assert_array_equal(got, expected)


def test_slices_follow_voxel_axis_2_for_image_and_label(phantom_root: Path):
    case = read_dataset_json(phantom_root)[2]  # flipped along axis 0
    lab = np.asarray(nib.load(case.label).dataobj)
    seen = [(k, lab_slice) for k, _, lab_slice, _ in iter_case_slices(case, chunk=4)]
    assert [k for k, _ in seen] == list(range(lab.shape[2]))
    for k, lab_slice in seen:
        np.testing.assert_array_equal(lab_slice, lab[:, :, k])


def _write_meta(root: Path, meta: object) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset.json").write_text(json.dumps(meta))


GOOD = {"labels": {"0": "background", "1": "liver", "2": "cancer"},
        "training": [{"image": "./imagesTr/liver_0.nii.gz",
                      "label": "./labelsTr/liver_0.nii.gz"}],
        "test": []}


@pytest.mark.parametrize(("change", "fragment"), [
    (lambda m: m.pop("training"), "missing key 'training'"),
    (lambda m: m.pop("labels"), "missing key 'labels'"),
    (lambda m: m.update(labels=["background"]), "'labels' must be an object"),
    (lambda m: m.update(labels={"0": "background"}), "'labels' lacks ['1', '2']"),
    (lambda m: m.update(training="imagesTr"), "'training' must be a list"),
    (lambda m: m.update(test={"a": 1}), "'test' must be a list"),
    (lambda m: m["training"][0].pop("label"), "training[0] has no 'label'"),
    (lambda m: m["training"][0].update(image=3), "training[0].image: expected a relative"),
    (lambda m: m["training"][0].update(image="./imagesTr/liver_0.txt"), "not a .nii.gz"),
    (lambda m: m["training"][0].update(image="/etc/passwd.nii.gz"), "absolute path"),
    (lambda m: m["training"][0].update(image="../../x/liver_0.nii.gz"), "outside the data root"),
    (lambda m: m["training"][0].update(image="./imagesTr/._liver_0.nii.gz"), "resource-fork"),
    (lambda m: m["training"].append(dict(m["training"][0])), "listed twice"),
])
def test_dataset_json_errors(tmp_path: Path, change, fragment):
    meta = json.loads(json.dumps(GOOD))
    change(meta)
    _write_meta(tmp_path / "root", meta)
    with pytest.raises(DataError) as err:
        read_dataset_json(tmp_path / "root")
    assert fragment in str(err.value)
    assert "dataset.json" in str(err.value)


def test_missing_and_invalid_dataset_json(tmp_path: Path):
    (tmp_path / "root").mkdir()
    with pytest.raises(DataError, match=r"dataset\.json: missing"):
        read_dataset_json(tmp_path / "root")
    (tmp_path / "root" / "dataset.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(DataError, match="not valid JSON"):
        read_dataset_json(tmp_path / "root")
    (tmp_path / "root" / "dataset.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="top level must be a JSON object"):
        read_dataset_json(tmp_path / "root")
    with pytest.raises(DataError, match="not a directory"):
        read_dataset_json(tmp_path / "nowhere")


def test_symlink_leaving_root_is_refused_inside_is_fine(tmp_path: Path):
    root = tmp_path / "root"
    (root / "imagesTr").mkdir(parents=True)
    (tmp_path / "secret.nii.gz").write_bytes(b"x")
    (root / "imagesTr" / "in.nii.gz").write_bytes(b"x")
    os.symlink(tmp_path / "secret.nii.gz", root / "imagesTr" / "liver_0.nii.gz")
    os.symlink(root / "imagesTr" / "in.nii.gz", root / "imagesTr" / "liver_1.nii.gz")
    meta = json.loads(json.dumps(GOOD))
    meta["training"][0]["label"] = "./imagesTr/liver_1.nii.gz"
    _write_meta(root, meta)
    with pytest.raises(DataError, match="points outside the data root"):
        read_dataset_json(root)
    meta["training"][0]["image"] = "./imagesTr/liver_1.nii.gz"
    _write_meta(root, meta)
    assert read_dataset_json(root)[0].patient_id == "liver_1"


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
_paths = st.sampled_from(["./imagesTr/liver_0.nii.gz", "../liver_0.nii.gz", "/abs/liver.nii.gz",
                          "imagesTr/._liver_0.nii.gz", "", ".", "liver.nii", "a/../../b.nii.gz",
                          "C:\\x.nii.gz", "x\x00.nii.gz", "~/liver.nii.gz"]) | st.text(max_size=20)
_entries = st.fixed_dictionaries({"image": _paths | _json, "label": _paths | _json}) | _json
_meta = st.fixed_dictionaries(
    {},
    optional={"labels": st.just(GOOD["labels"]) | _json,
              "training": st.lists(_entries, max_size=4) | _json,
              "test": st.lists(_paths | _json, max_size=3) | _json,
              "numTraining": _json},
) | _json


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(meta=_meta, raw=st.none() | st.binary(max_size=40))
def test_fuzzed_dataset_json_only_raises_data_error(tmp_path: Path, meta, raw):
    root = tmp_path / "fuzz"
    root.mkdir(exist_ok=True)
    (root / "dataset.json").write_bytes(raw if raw is not None else json.dumps(meta).encode())
    try:
        cases = read_dataset_json(root)
    except DataError:
        return
    for case in cases:
        assert isinstance(case, Case)
        assert case.image.resolve().is_relative_to(root.resolve())


_hostile_text = st.sampled_from([
    "1" * 5000,  # more digits than Python converts to int
    "1e999999", "-1e999999", "[" * 5000 + "]" * 5000, '{"a": ' * 3000 + "1" + "}" * 3000,
    '"\\ud800"', "NaN", "Infinity",
])
_hostile_paths = st.sampled_from([
    "./imagesTr/" + "x" * 300 + ".nii.gz", "./" + "a/" * 400 + "liver.nii.gz",
    "./imagesTr/../../../../etc/liver.nii.gz", "./imagesTr/liver\n0.nii.gz",
    "\\\\server\\share\\liver.nii.gz", "./imagesTr/liver_0.nii.gz/..", "imagesTr//liver.nii",
    "./imagesTr/\udcff.nii.gz",
]) | _paths


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(meta=_meta, paths=st.lists(st.tuples(_hostile_paths, _hostile_paths), max_size=3),
       big=st.sampled_from([10**400, -(2**70), 1e308, float("inf"), 2**63]),
       raw=st.none() | _hostile_text, key=st.sampled_from(["training", "test", "labels",
                                                           "numTraining"]))
def test_fuzzed_hostile_dataset_json_only_data_error_in_bounded_memory(tmp_path: Path, meta,
                                                                       paths, big, raw, key):
    import tracemalloc

    root = tmp_path / "fuzz2"
    root.mkdir(exist_ok=True)
    if raw is not None:
        blob = raw.encode("utf-8", "surrogatepass")
    else:
        doc = dict(GOOD) if not isinstance(meta, dict) else {**GOOD, **meta}
        doc["training"] = [{"image": a, "label": b} for a, b in paths] or doc.get("training")
        doc[key] = big if key != "training" else doc["training"]
        blob = json.dumps(doc, allow_nan=True, ensure_ascii=False).encode("utf-8",
                                                                          "surrogatepass")
    (root / "dataset.json").write_bytes(blob)
    tracemalloc.start()
    try:
        try:
            cases = read_dataset_json(root)
        except DataError as exc:
            assert "dataset.json" in str(exc) or str(root) in str(exc)
            cases = []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 * 2**20
    for case in cases:
        assert case.image.resolve().is_relative_to(root.resolve())


def test_oversized_dataset_json_is_refused_unread(tmp_path: Path):
    from spikebench.datasets.msd import MAX_DATASET_JSON_BYTES

    root = tmp_path / "root"
    root.mkdir()
    with open(root / "dataset.json", "wb") as fh:
        fh.truncate(MAX_DATASET_JSON_BYTES + 1)  # sparse: no disk used
    with pytest.raises(DataError, match="more than the"):
        read_dataset_json(root)
