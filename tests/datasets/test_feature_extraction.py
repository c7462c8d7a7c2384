"""extract_features: one row per liver slice, labels from the tumour count, no leakage,
cached per case, identical with one or two workers."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from spikebench.datasets.features import (
    META_COLUMNS,
    cache_dir_for,
    case_cache_files,
    extract_features,
    natural_key,
)
from spikebench.datasets.slice_features import FEATURE_NAMES, slice_features


def _independent_counts(root: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(root.glob("labelsTr/liver_*.nii.gz")):
        lab = np.asarray(nib.load(path).dataobj)
        pid = path.name.removesuffix(".nii.gz")
        for k in range(lab.shape[2]):
            liver = int((lab[:, :, k] > 0).sum())
            if liver:
                rows.append((pid, k, int((lab[:, :, k] == 2).sum())))
    return pd.DataFrame(rows, columns=["patient_id", "slice_idx", "tumour"])


def test_rows_and_labels_match_label_volumes(phantom_root: Path, clean_table: pd.DataFrame):
    expected = _independent_counts(phantom_root)
    expected = expected.sort_values(["patient_id", "slice_idx"],
                                     key=lambda s: s.map(natural_key) if s.name == "patient_id"
                                     else s).reset_index(drop=True)
    assert list(clean_table.columns) == [*META_COLUMNS, *FEATURE_NAMES]
    assert clean_table["patient_id"].tolist() == expected["patient_id"].tolist()
    assert clean_table["slice_idx"].tolist() == expected["slice_idx"].tolist()
    assert clean_table["label"].tolist() == (expected["tumour"] >= 1).astype(int).tolist()
    assert clean_table["label"].dtype == np.int64 and clean_table["slice_idx"].dtype == np.int64
    assert 0 < clean_table["label"].sum() < len(clean_table)
    features = clean_table[list(FEATURE_NAMES)].to_numpy()
    assert features.dtype == np.float64 and np.isfinite(features).all()
    assert "liver_6" not in set(clean_table["patient_id"])  # test images are not extracted


def test_min_lesion_voxels_reuses_cache(phantom_root: Path, tmp_path: Path):
    out = tmp_path / "f.parquet"
    first = extract_features(phantom_root, out)
    res = extract_features(phantom_root, out, min_lesion_voxels=25)
    assert res.cached_cases == first.n_cases == 6
    table = pd.read_parquet(out)
    expected = _independent_counts(phantom_root)
    expected = expected.set_index(["patient_id", "slice_idx"])["tumour"]
    got = table.set_index(["patient_id", "slice_idx"])["label"]
    assert (got == (expected.loc[got.index] >= 25).astype(int)).all()
    assert got.sum() < first.n_positive


def test_relabelling_tumour_as_liver_leaves_features_bit_identical(
        phantom_copy: Path, clean_table: pd.DataFrame, tmp_path: Path):
    for path in phantom_copy.glob("labelsTr/liver_*.nii.gz"):
        img = nib.load(path)
        lab = np.asarray(img.dataobj)
        lab[lab == 2] = 1
        nib.save(nib.Nifti1Image(lab.astype(np.uint8), img.affine, img.header), path)
    table = pd.read_parquet(extract_features(phantom_copy, tmp_path / "f.parquet").path)
    assert table["label"].sum() == 0 and clean_table["label"].sum() > 0
    assert (table["lesion_mm2"] == 0).all() and (clean_table["lesion_mm2"] > 0).any()
    truth = ["label", "lesion_mm2"]  # ground truth columns: the only ones allowed to change
    pd.testing.assert_frame_equal(table.drop(columns=truth), clean_table.drop(columns=truth),
                                  check_exact=True)


def test_features_invariant_to_mirroring_the_slice():
    rng = np.random.default_rng(0)
    hu = rng.normal(60, 15, (40, 50)).astype(np.float32)
    roi = np.zeros((40, 50), bool)
    roi[8:30, 5:41] = True
    roi[8:14, 5:12] = False
    base = slice_features(hu, roi, (0.7, 0.8))
    np.testing.assert_allclose(slice_features(hu[::-1], roi[::-1], (0.7, 0.8)), base,
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(slice_features(hu[:, ::-1], roi[:, ::-1], (0.7, 0.8)), base,
                               rtol=1e-9, atol=1e-9)


def test_single_voxel_roi_gives_finite_features():
    hu = np.full((10, 10), 50.0, np.float32)
    roi = np.zeros((10, 10), bool)
    roi[4, 4] = True
    f = slice_features(hu, roi, (0.8, 0.8))
    assert f.shape == (len(FEATURE_NAMES),) and np.isfinite(f).all()


def test_rerun_uses_cache_and_recomputes_a_changed_case(phantom_copy: Path, tmp_path: Path):
    out = tmp_path / "f.parquet"
    first = extract_features(phantom_copy, out)
    assert first.cached_cases == 0 and first.n_cases == 6
    again = extract_features(phantom_copy, out)
    assert again.cached_cases == 6
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(first.path))
    path = phantom_copy / "imagesTr" / "liver_1.nii.gz"
    img = nib.load(path)
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj) + 10, img.affine), path)
    third = extract_features(phantom_copy, out)
    assert third.cached_cases == 5
    assert len(case_cache_files(out, "liver_1")) == 1  # stale entry gone


def test_two_workers_give_the_same_table(phantom_root: Path, clean_table, tmp_path: Path):
    res = extract_features(phantom_root, tmp_path / "f.parquet", workers=2)
    pd.testing.assert_frame_equal(pd.read_parquet(res.path), clean_table, check_exact=True)


def test_rejects_bad_parameters(phantom_root: Path, tmp_path: Path):
    from spikebench.errors import DataError

    for kw in ({"on_error": "ignore"}, {"workers": 0}, {"min_lesion_voxels": 0}):
        with pytest.raises(DataError):
            extract_features(phantom_root, tmp_path / "f.parquet", **kw)


def test_output_written_atomically_without_leftovers(phantom_root: Path, tmp_path: Path):
    out = tmp_path / "sub" / "f.parquet"
    extract_features(phantom_root, out)
    leftovers = [p for p in out.parent.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    shutil.rmtree(cache_dir_for(out))
    assert pd.read_parquet(out).shape[0] > 0
