"""Per-case caches are keyed by a hash of the case id (no glob can reach another case), a
damaged cache file is recomputed, and one scan under two names is refused - always."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from spikebench.datasets.features import (
    cache_dir_for,
    case_cache_files,
    case_cache_prefix,
    extract_features,
)
from spikebench.datasets.msd import read_dataset_json
from spikebench.errors import DataError

AWKWARD = ["a", "a.b", "liver_[0]", "*", "a.*", "x" * 200]


def _rename_cases(root: Path, names: list[str]) -> Path:
    """Give the phantom's first training cases awkward ids (file names)."""
    meta = json.loads((root / "dataset.json").read_text())
    for entry, name in zip(meta["training"], names, strict=False):
        for key in ("image", "label"):
            old = root / entry[key]
            new = old.with_name(f"{name}.nii.gz")
            old.rename(new)
            entry[key] = f"./{new.parent.name}/{new.name}"
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def test_awkward_case_ids_never_touch_each_others_cache(phantom_copy: Path, tmp_path: Path):
    root = _rename_cases(phantom_copy, AWKWARD)
    out = tmp_path / "f.parquet"
    first = extract_features(root, out)
    assert sorted(set(pd.read_parquet(out)["patient_id"])) == sorted(AWKWARD)
    assert len(list(cache_dir_for(out).iterdir())) == len(AWKWARD)
    assert all(len(case_cache_files(out, pid)) == 1 for pid in AWKWARD)
    assert len({case_cache_prefix(pid) for pid in AWKWARD}) == len(AWKWARD)
    for changed in ("a", "*", "liver_[0]"):  # replacing one case recomputes exactly that one
        path = root / "imagesTr" / f"{changed}.nii.gz"
        data = path.read_bytes()
        path.write_bytes(data)
        os.utime(path, ns=(1, 1))
        res = extract_features(root, out)
        assert res.cached_cases == len(AWKWARD) - 1, changed
        assert all(len(case_cache_files(out, pid)) == 1 for pid in AWKWARD)
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(first.path))


@pytest.mark.parametrize("damage", [b"", b"PAR1 torn", b"\x00" * 64])
def test_zero_byte_or_corrupt_cache_is_recomputed(phantom_root: Path, tmp_path: Path,
                                                  clean_table: pd.DataFrame, damage: bytes):
    out = tmp_path / "f.parquet"
    extract_features(phantom_root, out)
    (path,) = case_cache_files(out, "liver_3")
    path.write_bytes(damage)
    res = extract_features(phantom_root, out)
    assert res.cached_cases == 5
    pd.testing.assert_frame_equal(pd.read_parquet(out), clean_table, check_exact=True)
    assert case_cache_files(out, "liver_3")[0].stat().st_size > 0


def test_cache_of_another_case_under_this_name_is_not_used(phantom_root: Path, tmp_path: Path,
                                                           clean_table: pd.DataFrame):
    out = tmp_path / "f.parquet"
    extract_features(phantom_root, out)
    (one,) = case_cache_files(out, "liver_1")
    (two,) = case_cache_files(out, "liver_2")
    shutil.copy(two, one)  # right name, wrong patient inside
    assert extract_features(phantom_root, out).cached_cases == 5
    pd.testing.assert_frame_equal(pd.read_parquet(out), clean_table, check_exact=True)


# ---------------------------------------------------------------------------- one scan twice


def _add_entry(root: Path, image: str, label: str) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    meta["training"].append({"image": image, "label": label})
    (root / "dataset.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("how", ["symlink", "hardlink"])
def test_linked_volume_under_a_second_name_is_refused(phantom_copy: Path, tmp_path: Path,
                                                      how: str):
    for sub in ("imagesTr", "labelsTr"):
        src, dst = phantom_copy / sub / "liver_0.nii.gz", phantom_copy / sub / "twin.nii.gz"
        dst.symlink_to(src) if how == "symlink" else os.link(src, dst)
    _add_entry(phantom_copy, "./imagesTr/twin.nii.gz", "./labelsTr/twin.nii.gz")
    for on_error in ("fail", "skip"):
        with pytest.raises(DataError) as err:
            extract_features(phantom_copy, tmp_path / on_error / "f.parquet", on_error=on_error)
        message = str(err.value)
        assert "'liver_0'" in message and "'twin'" in message and "never skippable" in message


def test_copied_volume_under_a_second_name_is_refused_even_with_skip(phantom_copy: Path,
                                                                     tmp_path: Path):
    for sub in ("imagesTr", "labelsTr"):
        shutil.copy(phantom_copy / sub / "liver_2.nii.gz", phantom_copy / sub / "copy.nii.gz")
    _add_entry(phantom_copy, "./imagesTr/copy.nii.gz", "./labelsTr/copy.nii.gz")
    assert len(read_dataset_json(phantom_copy)) == 8  # different files: found by content
    for on_error in ("fail", "skip"):
        out = tmp_path / on_error / "f.parquet"
        with pytest.raises(DataError) as err:
            extract_features(phantom_copy, out, on_error=on_error)
        message = str(err.value)
        assert "'liver_2'" in message and "'copy'" in message
        assert "same image voxels" in message and "never skipped" in message
        assert not out.exists()


def test_recompressed_copy_is_still_the_same_scan(phantom_copy: Path, tmp_path: Path):
    import gzip

    for sub in ("imagesTr", "labelsTr"):
        data = gzip.decompress((phantom_copy / sub / "liver_4.nii.gz").read_bytes())
        (phantom_copy / sub / "again.nii.gz").write_bytes(gzip.compress(data, compresslevel=9))
    _add_entry(phantom_copy, "./imagesTr/again.nii.gz", "./labelsTr/again.nii.gz")
    with pytest.raises(DataError, match="same image voxels"):
        extract_features(phantom_copy, tmp_path / "f.parquet")


def test_content_hashes_are_recorded(phantom_root: Path, tmp_path: Path):
    res = extract_features(phantom_root, tmp_path / "f.parquet")
    manifest = json.loads(res.manifest.read_text())
    assert sorted(manifest["image_sha256"]) == [f"liver_{k}" for k in range(6)]
    assert len(set(manifest["image_sha256"].values())) == 6


@pytest.mark.parametrize(("storage", "change_voxel"), [("float32", False),
                                                       ("int16_slope", False),
                                                       ("float32", True), ("int16", True)])
def test_the_same_scan_saved_otherwise_is_refused(phantom_copy: Path, tmp_path: Path,
                                                  storage: str, change_voxel: bool):
    """Issue 26, item 7: the same scan saved with another data type or scaling (same HU
    values, other bytes), or with one voxel changed, passed the duplicate check (a hash of
    the stored bytes), so one patient could sit in train and test. Now it is refused, on
    ``fail`` and ``skip`` alike, naming both patients."""
    import nibabel as nib
    import numpy as np

    from spikebench.datasets.phantom import _write_volume

    image = nib.load(str(phantom_copy / "imagesTr" / "liver_3.nii.gz"))
    hu = np.asarray(image.get_fdata(), dtype=np.float32)
    if change_voxel:
        label = np.asarray(nib.load(str(phantom_copy / "labelsTr" / "liver_3.nii.gz")).dataobj)
        liver = np.argwhere(label > 0)
        hu[tuple(liver[len(liver) // 2])] += 300.0
    _write_volume(phantom_copy / "imagesTr" / "resaved.nii.gz", hu, image.affine, storage)
    shutil.copy(phantom_copy / "labelsTr" / "liver_3.nii.gz",
                phantom_copy / "labelsTr" / "resaved.nii.gz")
    _add_entry(phantom_copy, "./imagesTr/resaved.nii.gz", "./labelsTr/resaved.nii.gz")
    for on_error in ("fail", "skip"):
        out = tmp_path / on_error / "f.parquet"
        with pytest.raises(DataError) as err:
            extract_features(phantom_copy, out, on_error=on_error)
        message = str(err.value)
        assert "'liver_3'" in message and "'resaved'" in message, message
        assert "same scan" in message and "never skipped" in message
        assert not out.exists()


def test_different_patients_are_never_taken_for_one_scan(phantom_root: Path, tmp_path: Path):
    """The value check has no false alarm on distinct patients (the phantom's six)."""
    assert extract_features(phantom_root, tmp_path / "f.parquet").n_cases == 6
