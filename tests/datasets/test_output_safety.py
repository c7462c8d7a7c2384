"""Nothing spikebench did not create is overwritten: extract outputs never alias inputs, a
phantom never lands in someone else's MSD folder, two phantom writers never collide, and an
unwritable output is one DataError."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from spikebench.datasets.features import extract_features, manifest_path_for
from spikebench.datasets.msd import Volume, read_dataset_json
from spikebench.datasets.phantom import MARKER, write_phantom
from spikebench.errors import DataError

TINY = {"cases": 2, "shape": (32, 32), "slices": (4, 5), "test_cases": 1, "seed": 7}


# ---------------------------------------------------------------------------- extract --out


@pytest.mark.parametrize("target", [
    "dataset.json", "imagesTr/liver_0.nii.gz", "labelsTr/liver_1.nii.gz",
    "imagesTr/features.parquet", "labelsTr/new/features.parquet", "imagesTs/f.parquet",
])
def test_output_aliasing_an_input_is_refused(phantom_copy: Path, target: str):
    before = {p: p.read_bytes() for p in phantom_copy.rglob("*") if p.is_file()}
    with pytest.raises(DataError) as err:
        extract_features(phantom_copy, phantom_copy / target)
    message = str(err.value)
    assert str(phantom_copy / target) in message or target.split("/")[0] in message
    assert ("would overwrite the input" in message or "inside the input folder" in message)
    after = {p: p.read_bytes() for p in phantom_copy.rglob("*") if p.is_file()}
    assert after == before  # nothing written, nothing removed


def test_output_through_a_symlink_to_an_input_is_refused(phantom_copy: Path, tmp_path: Path):
    link = tmp_path / "out.parquet"
    link.symlink_to(phantom_copy / "dataset.json")
    with pytest.raises(DataError, match=r"would overwrite the input .*dataset\.json"):
        extract_features(phantom_copy, link)


def test_output_beside_the_inputs_is_fine_and_reruns_overwrite_our_own(phantom_root: Path,
                                                                         tmp_path: Path):
    out = tmp_path / "features.parquet"
    extract_features(phantom_root, out)
    extract_features(phantom_root, out, min_lesion_voxels=3)  # ours: overwritten
    assert pd.read_parquet(out).attrs["spikebench"]["min_lesion_voxels"] == 3


def test_existing_file_we_did_not_write_is_never_overwritten(phantom_root: Path, tmp_path: Path):
    notes = tmp_path / "notes.parquet"
    notes.write_text("my notes, not a table\n")
    theirs = tmp_path / "theirs.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(theirs)
    for path in (notes, theirs):
        before = path.read_bytes()
        with pytest.raises(DataError, match=r"spikebench did not write.*not a feature table"):
            extract_features(phantom_root, path)
        assert path.read_bytes() == before
    other = tmp_path / "f.parquet"
    manifest_path_for(other).write_text('{"mine": true}')
    with pytest.raises(DataError, match=r"spikebench did not write.*not an extraction manifest"):
        extract_features(phantom_root, other)


def test_output_that_is_a_directory_or_unwritable_is_one_data_error(phantom_root: Path,
                                                                    tmp_path: Path,
                                                                    monkeypatch):
    folder = tmp_path / "out_dir"
    folder.mkdir()
    with pytest.raises(DataError, match="is a directory"):
        extract_features(phantom_root, folder)
    with pytest.raises(DataError, match="cannot"):
        extract_features(phantom_root, tmp_path / ("x" * 300 + ".parquet"))

    import spikebench.datasets.features as features

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    import pyarrow.parquet as pq

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:  # the fix named is the one for a full disk
        patch.setattr(pq, "write_table", disk_full)
        with pytest.raises(DataError, match=r"f\.parquet.*disk is full") as info:
            extract_features(phantom_root, tmp_path / "full" / "f.parquet")
        assert "writable file system" not in str(info.value)

    monkeypatch.setattr(features, "write_parquet", read_only)
    for on_error in ("fail", "skip"):  # an output problem is never a per-case skip
        with pytest.raises(DataError, match=r"Read-only file system.*writable file system"):
            extract_features(phantom_root, tmp_path / on_error / "f.parquet", on_error=on_error)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="needs root + mount")
def test_read_only_mount_is_one_data_error(phantom_root: Path, tmp_path: Path):
    ro = tmp_path / "ro"
    ro.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount here (no CAP_SYS_ADMIN)")
    try:
        with pytest.raises(DataError, match="cannot write"):
            extract_features(phantom_root, ro / "f.parquet")
    finally:
        subprocess.run(["umount", str(ro)], check=False)


# ---------------------------------------------------------------------------- phantom folders


def test_phantom_refuses_an_msd_folder_it_did_not_write(phantom_root: Path, tmp_path: Path):
    foreign = Path(shutil.copytree(phantom_root, tmp_path / "Task03_Liver"))
    (foreign / MARKER).unlink()
    before = (foreign / "dataset.json").read_bytes()
    with pytest.raises(DataError, match="spikebench did not write"):
        write_phantom(foreign, **TINY)
    assert (foreign / "dataset.json").read_bytes() == before


def test_phantom_same_parameters_reuse_other_parameters_name_the_change(tmp_path: Path):
    root = write_phantom(tmp_path / "p", **TINY)
    marker = json.loads((root / MARKER).read_text())
    assert marker["complete"] and marker["spikebench_phantom"]["seed"] == 7
    stamp = (root / "imagesTr" / "liver_0.nii.gz").stat().st_mtime_ns
    assert write_phantom(root, **TINY) == root  # reused, not rewritten
    assert (root / "imagesTr" / "liver_0.nii.gz").stat().st_mtime_ns == stamp
    with pytest.raises(DataError, match=r"seed: 7 there, 8 asked.*pick a new folder"):
        write_phantom(root, **{**TINY, "seed": 8})
    with pytest.raises(DataError, match=r"shape: \[32, 32\] there, \[40, 40\] asked"):
        write_phantom(root, **{**TINY, "shape": (40, 40)})


def test_interrupted_phantom_is_completed_on_rerun(tmp_path: Path):
    root = write_phantom(tmp_path / "p", **TINY)
    (root / "dataset.json").unlink()
    (root / "imagesTr" / "liver_1.nii.gz").unlink()
    record = json.loads((root / MARKER).read_text())
    (root / MARKER).write_text(json.dumps({**record, "complete": False}))
    write_phantom(root, **TINY)
    assert len(read_dataset_json(root)) == 3


_WRITER = textwrap.dedent("""
    import os, sys, time
    from spikebench.datasets.phantom import write_phantom
    while not os.path.exists(sys.argv[2]):  # start together, once both are imported
        time.sleep(0.002)
    write_phantom(sys.argv[1], cases=4, shape=(48, 48), slices=(8, 10), test_cases=1, seed=4)
    print("ok")
""")


def test_two_processes_writing_one_phantom_both_succeed(tmp_path: Path):
    root, go = tmp_path / "shared", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(root), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    time.sleep(1.0)
    go.touch()
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    assert all(out.strip() == "ok" for out, _ in results)
    cases = read_dataset_json(root)
    assert len(cases) == 5
    for case in cases:
        for path in (case.image, case.label):
            if path is not None:
                with Volume(path) as vol:
                    for _ in vol.chunks():
                        pass
    assert not [p for p in root.rglob("*") if p.name.endswith(".tmp")]
