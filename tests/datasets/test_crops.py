"""A user asks the phantom for images: one cached crop per feature-table row, read lazily."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from spikebench.datasets.crops import CropSettings, ImageRows, crop_slice
from spikebench.datasets.sources import get_source
from spikebench.errors import DataError

OPTIONS = {"cases": 4, "shape": [48, 48], "images": True, "crop": 16, "crop_spacing_mm": 2.0}


@pytest.fixture(scope="module")
def delivered(tmp_path_factory):
    work = tmp_path_factory.mktemp("crops")
    source = get_source("phantom")
    with pytest.warns(UserWarning):  # constant feature columns dropped on a tiny phantom
        data = source.load(source.Options.model_validate(OPTIONS), work)
    return work, data


def test_one_crop_per_table_row_in_table_order(delivered):
    work, data = delivered
    rows = data.images
    assert rows.shape == (len(data.table.y), 1, 16, 16)
    assert list(rows.groups) == list(np.asarray(data.table.groups).astype(str))
    batch = rows[np.array([3, 0, 7])]
    assert batch.shape == (3, 1, 16, 16) and batch.dtype == np.float32
    assert batch.min() >= 0.0 and batch.max() <= 1.0
    np.testing.assert_array_equal(batch[1], rows[0:1][0])
    assert data.info["images"]["size"] == 16
    files = sorted((work / "images").iterdir())
    assert len(files) == 2 * OPTIONS["cases"]  # crops + slice indices per case


def test_cache_is_reused_and_a_torn_file_recomputed(delivered, tmp_path):
    work, data = delivered
    source = get_source("phantom")
    options = source.Options.model_validate(OPTIONS)
    crop_files = sorted(p for p in (work / "images").iterdir()
                        if not p.name.endswith(".slices.npy"))
    before = {p: p.stat().st_mtime_ns for p in crop_files}
    with pytest.warns(UserWarning):
        again = source.load(options, work)
    assert {p: p.stat().st_mtime_ns for p in crop_files} == before  # nothing recomputed
    crop_files[0].write_bytes(b"")  # a torn file counts as missing
    with pytest.warns(UserWarning):
        fixed = source.load(options, work)
    np.testing.assert_array_equal(np.asarray(fixed.images), np.asarray(data.images))
    np.testing.assert_array_equal(np.asarray(again.images), np.asarray(data.images))


def test_lazy_rows_views_standardise_and_pickle(delivered):
    _, data = delivered
    view = data.images.rows(np.arange(5, 12))
    mean, std = view.pixel_stats()
    full = np.asarray(view)
    assert mean == pytest.approx(full.mean(), rel=1e-5)
    scaled = view.standardised(mean, std)
    np.testing.assert_allclose(scaled[:], (full - mean) / std, rtol=1e-5, atol=1e-5)
    back = pickle.loads(pickle.dumps(scaled))
    assert back._open == {}  # the memory maps are reopened, not pickled
    np.testing.assert_array_equal(back[:], scaled[:])


def test_crop_geometry_centres_the_roi_and_windows_hu():
    hu = np.full((40, 40), -1000.0, dtype=np.float32)
    roi = np.zeros((40, 40), bool)
    roi[10:20, 20:30] = True
    hu[roi] = 250.0
    crop = crop_slice(hu, roi, (1.0, 1.0), lambda a: a, CropSettings(size=10, spacing_mm=1.0))
    assert crop.dtype == np.uint8 and crop.shape == (10, 10)
    assert crop[2:8, 2:8].min() == 255 and crop.max() == 255
    with pytest.raises(DataError):
        CropSettings(size=4)


def test_in_memory_rows_and_misaligned_tables():
    rows = ImageRows.from_array(np.zeros((3, 8, 8), np.uint8), ["a", "a", "b"])
    assert rows.shape == (3, 1, 8, 8) and rows[1].shape == (1, 8, 8)
    from spikebench.datasets.crops import CaseCrops, image_rows

    crops = {"a": CaseCrops("a", Path("nowhere.npy"), np.array([2, 3]))}
    with pytest.raises(DataError, match="slice 5"):
        image_rows(crops, np.array(["a"]), np.array([5]), 8)
    with pytest.raises(DataError, match="no image crops"):
        image_rows(crops, np.array(["b"]), np.array([2]), 8)


def test_a_worker_pool_crops_the_same_as_one_process(phantom_root, tmp_path):
    """``workers = 2`` (the data source's setting, shared with feature extraction) gives the
    same crops, files and case order as one process; a case without liver fails the call with
    the label file named, from the pool as from one process."""
    from spikebench.datasets.crops import extract_crops
    from spikebench.datasets.msd import training_cases

    cases = training_cases(phantom_root)
    settings = CropSettings(size=16, spacing_mm=2.0)
    one = extract_crops(cases, tmp_path / "one", settings, workers=1)
    two = extract_crops(cases, tmp_path / "two", settings, workers=2)
    assert list(two) == list(one) == [c.patient_id for c in cases]
    for pid in one:
        np.testing.assert_array_equal(two[pid].slices, one[pid].slices)
        np.testing.assert_array_equal(np.load(two[pid].path), np.load(one[pid].path))
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir())

    empty = phantom_copy_without_liver(phantom_root, tmp_path / "bad", cases[1])
    for workers in (1, 2):
        with pytest.raises(DataError, match=re.escape(cases[1].label.name) + ": no liver"):
            extract_crops(training_cases(empty), tmp_path / f"bad{workers}", settings,
                          workers=workers)


def phantom_copy_without_liver(root: Path, dest: Path, case) -> Path:
    """A copy of ``root`` where ``case``'s label volume is all background."""
    import shutil

    import nibabel as nib

    copy = Path(shutil.copytree(root, dest))
    label_path = copy / case.label.relative_to(root)
    label = nib.load(label_path)
    nib.save(nib.Nifti1Image(np.zeros(label.shape, dtype=np.uint8), label.affine, label.header),
             label_path)
    return copy


def test_features_and_crops_come_from_one_read_of_each_case(tmp_path, monkeypatch):
    """A fresh image study reads each volume once: the crops are cut in the feature pass
    (the same crops the crop pass alone makes), and a rerun on the cache reads nothing."""
    from spikebench.datasets import msd
    from spikebench.datasets.crops import case_crops

    reads: list[str] = []
    chunks = msd._iter_case_chunks

    def counted(case, *args, **kwargs):
        reads.append(case.patient_id)
        return chunks(case, *args, **kwargs)

    monkeypatch.setattr(msd, "_iter_case_chunks", counted)
    source = get_source("phantom")
    options = source.Options.model_validate(OPTIONS)
    work = tmp_path / "work"
    with pytest.warns(UserWarning):
        data = source.load(options, work)
    cases = msd.training_cases(Path(data.info["path"]))
    assert sorted(reads) == sorted(c.patient_id for c in cases)  # one read per case
    settings = CropSettings(size=OPTIONS["crop"], spacing_mm=OPTIONS["crop_spacing_mm"])
    alone, _ = case_crops(cases[0], settings)
    rows = data.images
    mine = np.asarray(rows.rows(np.flatnonzero(rows.groups == cases[0].patient_id)))
    np.testing.assert_array_equal(np.rint(mine[:, 0] * 255).astype(np.uint8), alone)
    reads.clear()
    with pytest.warns(UserWarning):
        source.load(options, work)
    assert reads == []  # features and crops both cached
