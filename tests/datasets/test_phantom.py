"""The phantom writes the MSD Task03 layout, with the release's quirks, deterministically."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from spikebench.datasets.phantom import write_phantom
from spikebench.errors import DataError


def test_layout_matches_msd_task03(phantom_root: Path):
    meta = json.loads((phantom_root / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "liver", "2": "cancer"}
    assert meta["modality"] == {"0": "CT"}
    assert meta["numTraining"] == len(meta["training"]) == 6
    assert meta["numTest"] == len(meta["test"]) == 1
    assert isinstance(meta["name"], str)
    for k, entry in enumerate(meta["training"]):
        assert entry == {"image": f"./imagesTr/liver_{k}.nii.gz",
                         "label": f"./labelsTr/liver_{k}.nii.gz"}
        assert (phantom_root / entry["image"]).is_file()
        assert (phantom_root / entry["label"]).is_file()
    assert meta["test"] == ["./imagesTs/liver_6.nii.gz"]
    assert (phantom_root / "imagesTs" / "liver_6.nii.gz").is_file()
    assert not (phantom_root / "labelsTr" / "liver_6.nii.gz").exists()


def test_resource_fork_files_beside_every_volume(phantom_root: Path):
    volumes = sorted(phantom_root.glob("*/liver_*.nii.gz"))
    assert len(volumes) == 6 + 6 + 1
    for vol in volumes:
        fork = vol.with_name("._" + vol.name)
        assert 100 < fork.stat().st_size < 1000
        assert fork.read_bytes()[:4] == b"\x00\x05\x16\x07"  # AppleDouble, not gzip


def test_storage_quirks_scaling_float_and_flips(phantom_root: Path):
    dtypes, scaled, flips, spacings = set(), 0, 0, []
    for k in range(6):
        img = nib.load(phantom_root / "imagesTr" / f"liver_{k}.nii.gz")
        lab = nib.load(phantom_root / "labelsTr" / f"liver_{k}.nii.gz")
        dtypes.add(img.get_data_dtype().name)
        slope, inter = img.dataobj.slope, img.dataobj.inter
        scaled += (slope, inter) != (1.0, 0.0)
        np.testing.assert_array_equal(img.affine, lab.affine)
        flips += int(np.any(np.sign(np.diag(img.affine)[:3]) != [-1, -1, 1]))
        zooms = img.header.get_zooms()
        spacings.append(zooms)
        assert 0.6 <= zooms[0] == zooms[1] <= 0.9 and 0.7 <= zooms[2] <= 5.0
        hu = np.asarray(img.dataobj)
        assert hu.min() >= -1024 and np.all(hu == np.round(hu))  # integer HU after scaling
        assert set(np.unique(np.asarray(lab.dataobj))) <= {0, 1, 2}
    assert {"int16", "float32"} <= dtypes
    assert scaled >= 2 and flips >= 1
    assert len({round(s[2], 3) for s in spacings}) > 1  # slice thickness varies per case


def test_anatomy_has_air_bone_liver_and_lesions(phantom_root: Path):
    lesion_patients = 0
    for k in range(6):
        hu = np.asarray(nib.load(phantom_root / "imagesTr" / f"liver_{k}.nii.gz").dataobj)
        lab = np.asarray(nib.load(phantom_root / "labelsTr" / f"liver_{k}.nii.gz").dataobj)
        assert hu.min() <= -1000 and hu.max() > 250
        assert 30 < np.median(hu[lab == 1]) < 90
        assert 0 < (lab > 0).any(axis=(0, 1)).sum() < lab.shape[2]  # liver spans a subset
        lesion_patients += bool((lab == 2).any())
    assert lesion_patients == 3  # half of the patients


def _decoded(root: Path) -> dict[str, tuple[bytes, bytes]]:
    out = {}
    for path in sorted(root.glob("*/liver_*.nii.gz")):
        img = nib.load(path)
        out[str(path.relative_to(root))] = (img.header.binaryblock,
                                            np.asarray(img.dataobj).tobytes())
    return out


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path):
    kw = {"cases": 2, "shape": (40, 40), "slices": (6, 8), "test_cases": 1}
    a = write_phantom(tmp_path / "a", seed=5, **kw)
    b = write_phantom(tmp_path / "b", seed=5, **kw)
    c = write_phantom(tmp_path / "c", seed=6, **kw)
    assert _decoded(a) == _decoded(b)
    for path in a.glob("*/liver_*.nii.gz"):  # gzip written with mtime=0: identical files
        assert path.read_bytes() == (b / path.relative_to(a)).read_bytes()
    assert (a / "dataset.json").read_text() == (b / "dataset.json").read_text()
    assert _decoded(a) != _decoded(c)


def test_quirks_off_gives_plain_int16(tmp_path: Path):
    root = write_phantom(tmp_path / "plain", cases=4, shape=(40, 40), slices=(6, 6),
                         test_cases=0, quirks=False)
    assert not list(root.glob("*/._*"))
    for path in root.glob("imagesTr/*.nii.gz"):
        img = nib.load(path)
        assert img.get_data_dtype() == np.int16
        assert (img.dataobj.slope, img.dataobj.inter) == (1.0, 0.0)


def test_rejects_impossible_sizes(tmp_path: Path):
    with pytest.raises(DataError, match="too small"):
        write_phantom(tmp_path / "x", cases=1, shape=(8, 8))
