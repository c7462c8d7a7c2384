"""lesion_mm2: tumour area per slice in mm², a meta column (never a feature) that can set the
label threshold in physical units and mark ambiguous slices."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from spikebench.datasets.features import META_COLUMNS, extract_features
from spikebench.datasets.slice_features import FEATURE_NAMES
from spikebench.datasets.tables import load_feature_table
from spikebench.errors import DataError


def _areas(root: Path) -> pd.Series:
    """Tumour area of every liver slice, computed independently with nibabel."""
    out = {}
    for path in sorted(root.glob("labelsTr/liver_*.nii.gz")):
        img = nib.load(path)
        lab = np.asarray(img.dataobj)
        sx, sy = (float(v) for v in np.sqrt((img.affine[:3, :2] ** 2).sum(axis=0)))
        for k in range(lab.shape[2]):
            if (lab[:, :, k] > 0).any():
                out[(path.name.removesuffix(".nii.gz"), k)] = (lab[:, :, k] == 2).sum() * sx * sy
    return pd.Series(out)


def test_lesion_area_column_matches_the_labels(phantom_root: Path, clean_table: pd.DataFrame):
    assert "lesion_mm2" in META_COLUMNS and "lesion_mm2" not in FEATURE_NAMES
    got = clean_table.set_index(["patient_id", "slice_idx"])["lesion_mm2"]
    expected = _areas(phantom_root)
    np.testing.assert_allclose(got.to_numpy(), expected.loc[got.index].to_numpy(), rtol=1e-12)
    assert ((got > 0) == (clean_table.set_index(["patient_id", "slice_idx"])["label"] == 1)).all()


def test_extracted_table_keeps_lesion_area_out_of_x(clean_table: pd.DataFrame, tmp_path: Path):
    path = tmp_path / "f.parquet"
    clean_table.to_parquet(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        table = load_feature_table(path)
    assert "lesion_mm2" not in table.feature_names
    np.testing.assert_array_equal(table.lesion_mm2, clean_table["lesion_mm2"].to_numpy())


def test_min_lesion_mm2_and_ambiguous_margin(phantom_root: Path, tmp_path: Path,
                                             clean_table: pd.DataFrame):
    area = clean_table["lesion_mm2"]
    threshold = float(np.median(area[area > 0]))
    out = tmp_path / "f.parquet"
    res = extract_features(phantom_root, out, min_lesion_mm2=threshold)
    assert res.cached_cases == 0
    table = pd.read_parquet(out)
    assert (table["label"] == (table["lesion_mm2"] >= threshold)).all()
    assert 0 < res.n_positive < int(clean_table["label"].sum())

    margin = threshold / 2
    again = extract_features(phantom_root, out, min_lesion_mm2=threshold,
                             ambiguous_margin_mm2=margin)
    assert again.cached_cases == 6  # thresholds never invalidate the cache
    kept = pd.read_parquet(out)
    ambiguous = (area > 0) & (area < threshold) & (area > threshold - margin)
    assert again.n_ambiguous_dropped == int(ambiguous.sum()) > 0
    assert len(kept) == len(clean_table) - again.n_ambiguous_dropped
    small = kept[(kept["lesion_mm2"] > 0) & (kept["label"] == 0)]
    assert (small["lesion_mm2"] <= threshold - margin).all()

    manifest = json.loads(again.manifest.read_text())
    attrs = kept.attrs["spikebench"]
    for record in (manifest, attrs, again.parameters):
        assert record["min_lesion_mm2"] == threshold
        assert record["ambiguous_margin_mm2"] == margin
    assert manifest["n_ambiguous_dropped"] == again.n_ambiguous_dropped
    with warnings.catch_warnings():  # a tiny phantom may have an all-zero HU band column
        warnings.simplefilter("ignore", UserWarning)
        assert load_feature_table(out).meta["min_lesion_mm2"] == threshold


@pytest.mark.parametrize("kwargs", [
    {"min_lesion_mm2": 0.0}, {"min_lesion_mm2": -3.0}, {"min_lesion_mm2": float("nan")},
    {"min_lesion_mm2": float("inf")}, {"min_lesion_mm2": "10"},
    {"ambiguous_margin_mm2": 5.0}, {"min_lesion_mm2": 10.0, "ambiguous_margin_mm2": 0.0},
])
def test_bad_area_parameters(phantom_root: Path, tmp_path: Path, kwargs):
    with pytest.raises(DataError, match="mm"):
        extract_features(phantom_root, tmp_path / "f.parquet", **kwargs)
