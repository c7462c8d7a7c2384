"""Hostile NIfTI files: a header can neither make the reader allocate what it claims, nor
smuggle NaN/inf into the features, nor crash it with anything but one DataError.

Volumes are built byte by byte (``broken_inputs.nifti_bytes``) so every field can be wrong.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import textwrap
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from broken_inputs import nifti_bytes, small_case, write_msd_folder, write_volume_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikebench.datasets.features import extract_case, extract_features
from spikebench.datasets.msd import DEFAULT_LIMITS, Case, Volume, VolumeLimits
from spikebench.errors import DataError


def _read_all(path: Path, limits: VolumeLimits = DEFAULT_LIMITS) -> Volume:
    with Volume(path, limits) as vol:
        for _ in vol.chunks(chunk=3):
            pass
    return vol


def _gzip_stream(parts, total_zeros: int) -> bytes:
    """gzip of ``parts`` followed by ``total_zeros`` zero bytes, compressed in a stream (a
    bomb built without ever holding the inflated bytes)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [comp.compress(p) for p in parts]
    block = b"\x00" * (1 << 20)
    for _ in range(total_zeros >> 20):
        out.append(comp.compress(block))
    out.append(comp.flush())
    return b"".join(out)


# ---------------------------------------------------------------------------- bounded memory


_MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys
    from spikebench.datasets.msd import Volume
    from spikebench.errors import DataError
    import nibabel, numpy  # loaded before the limit: only the reading is bounded
    vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1])
    limit = vm * 1024 + 400 * 2**20  # what is mapped now + 400 MB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    for path in sys.argv[1:]:
        try:
            with Volume(path) as vol:
                for _ in vol.chunks():
                    pass
            print("read", path)
        except DataError as exc:
            print("DataError", str(exc).replace("\\n", " "))
""")


def test_huge_header_and_gzip_bomb_are_refused_under_a_memory_limit(tmp_path: Path):
    """32767×32767×100 int16 claims 200 GB; a 3 MB gzip inflating to 8192×8192×16 voxels
    claims 2 GB; a small header followed by 200 MB of zeros inflates past its declared size.
    Under RLIMIT_AS (+400 MB) each gives one DataError, never MemoryError."""
    huge = write_volume_bytes(tmp_path / "huge.nii.gz", nifti_bytes(
        np.zeros((2, 2, 2), np.int16), dim=[3, 32767, 32767, 100, 1, 1, 1, 1]))
    header = nifti_bytes(np.zeros((1, 1, 1), np.int16), dim=[3, 8192, 8192, 16, 1, 1, 1, 1])
    bomb = tmp_path / "bomb.nii.gz"
    bomb.write_bytes(_gzip_stream([header], 8 << 20))
    image, _ = small_case()
    tail = tmp_path / "tail.nii.gz"
    tail.write_bytes(_gzip_stream([nifti_bytes(image)], 200 << 20))
    assert tail.stat().st_size < 1 << 20
    proc = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(huge), str(bomb),
                           str(tail)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("DataError") for line in lines), lines
    assert "huge.nii.gz" in lines[0] and "max_slice_voxels" in lines[0]
    assert "bomb.nii.gz" in lines[1] and "67108864 voxels per slice" in lines[1]
    assert "tail.nii.gz" in lines[2] and "past the" in lines[2]


def test_limits_are_parameters_of_extract_features(phantom_root: Path, tmp_path: Path):
    with pytest.raises(DataError, match=r"48×48 = 2304 voxels per slice.*max_slice_voxels"):
        extract_features(phantom_root, tmp_path / "a.parquet", max_slice_voxels=2000)
    with pytest.raises(DataError, match="max_volume_voxels"):
        extract_features(phantom_root, tmp_path / "b.parquet", max_volume_voxels=10_000)
    res = extract_features(phantom_root, tmp_path / "c.parquet", on_error="skip",
                           max_volume_voxels=2304 * 13)  # only the 10-13-slice cases fit
    assert 0 < res.n_cases < 6 and res.skipped
    assert all("max_volume_voxels" in reason for _, reason in res.skipped)
    assert res.parameters["max_volume_voxels"] == 2304 * 13
    with pytest.raises(DataError, match="max_slice_voxels"):
        extract_features(phantom_root, tmp_path / "d.parquet", max_slice_voxels=0)


# ---------------------------------------------------------------------------- header defects


def _case(tmp_path: Path, image: bytes, label: bytes | None = None) -> Case:
    _img, lab = small_case()
    label = label if label is not None else nifti_bytes(lab)
    root = write_msd_folder(tmp_path / "root", {"p": (image, label)})
    return Case("p", root / "imagesTr" / "p.nii.gz", root / "labelsTr" / "p.nii.gz")


IMAGE, LABEL = small_case()


@pytest.mark.parametrize(("fields", "fragment"), [
    ({"datatype": 0}, "unknown (code 0)"),
    ({"datatype": 1}, "binary (code 1)"),
    ({"datatype": 1536}, "float128"),
    ({"datatype": 2048}, "complex256"),
    ({"datatype": 128, "bitpix": 24}, "RGB colour"),
    ({"datatype": 2304, "bitpix": 32}, "RGBA colour"),
    ({"vox_offset": 0}, "vox_offset 0.0 is invalid"),
    ({"vox_offset": 100}, "vox_offset 100.0 is invalid"),
    ({"vox_offset": float("nan")}, "vox_offset nan is invalid"),
    ({"dim": [4, 12, 10, 4, 2, 1, 1, 1]}, "not a 3-D volume"),
    ({"dim": [3, 12, 0, 4, 1, 1, 1, 1]}, "must all be >= 1"),
    ({"dim": [3, -12, 10, 4, 1, 1, 1, 1]}, "must all be >= 1"),
    ({"magic": b"ni1"}, "separate .img"),
    ({"scl_slope": 2.0, "scl_inter": float("inf")}, "scl_inter inf is not finite"),
    ({"qform_code": 0, "sform_code": 0, "pixdim": [1, 0, 0.8, 2, 1, 1, 1, 1]}, "spacing"),
    ({"qform_code": 0, "sform_code": 0, "pixdim": [1, np.inf, 0.8, 2, 1, 1, 1, 1]},
     "spacing"),
    ({"qform_code": 0, "sform_code": 0, "pixdim": [1, np.nan, 0.8, 2, 1, 1, 1, 1]},
     "spacing"),
    ({"sform_code": 1, "srow_x": [np.nan, 0, 0, 0]}, "NaN/inf"),
    ({"sform_code": 1, "srow_x": [0, 0, 0, 0]}, "spacing"),
])
def test_bad_headers_give_one_data_error_naming_file_and_fix(tmp_path: Path, fields, fragment):
    path = write_volume_bytes(tmp_path / "bad.nii.gz", nifti_bytes(IMAGE, **fields))
    with pytest.raises(DataError) as err:
        _read_all(path)
    message = str(err.value)
    assert fragment in message and "bad.nii.gz" in message and "\n" not in message
    assert any(word in message for word in ("re-export", "fix", "convert", "export"))


@pytest.mark.parametrize("which", ["image", "label"])
def test_rgb_volumes_are_skipped_per_case(tmp_path: Path, which: str):
    good = small_case(1)
    rgb = nifti_bytes(IMAGE, datatype=128, bitpix=24)
    bad = (rgb, nifti_bytes(LABEL)) if which == "image" else (nifti_bytes(IMAGE), rgb)
    root = write_msd_folder(tmp_path / "root", {
        "bad": bad, "good": (nifti_bytes(good[0]), nifti_bytes(good[1]))})
    res = extract_features(root, tmp_path / "f.parquet", on_error="skip")
    assert [pid for pid, _ in res.skipped] == ["bad"] and "RGB" in res.skipped[0][1]
    with pytest.raises(DataError, match="RGB"):
        extract_features(root, tmp_path / "g.parquet")


def test_extreme_scale_slope_is_an_error_not_inf_features(tmp_path: Path):
    case = _case(tmp_path, nifti_bytes(IMAGE, scl_slope=1e38))
    _pid, status, message, _ = extract_case(case, tmp_path / "c.parquet")
    assert status == "error" and "non-finite HU" in message and "scl_slope" in message


def test_float_values_that_overflow_float32_features_are_an_error(tmp_path: Path):
    huge = (IMAGE.astype(np.float32) * np.float32(1e29))  # finite, but x² overflows float32
    case = _case(tmp_path, nifti_bytes(huge))
    _pid, status, message, _ = extract_case(case, tmp_path / "c.parquet")
    assert status == "error" and "non-finite features" in message and "p.nii.gz" in message
    assert not (tmp_path / "c.parquet").exists()


def test_truncated_header_and_data_and_crc(tmp_path: Path):
    raw = nifti_bytes(IMAGE)
    for name, blob, fragment in [
        ("short.nii.gz", gzip.compress(raw[:200]), "shorter than a NIfTI header"),
        ("cut.nii.gz", gzip.compress(raw[:-7]), "truncated"),
        ("crc.nii.gz", gzip.compress(raw)[:-8] + b"\x00" * 8, "truncated or corrupt"),
        ("plain.nii", raw[:-7], "truncated"),
    ]:
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(DataError, match=fragment):
            _read_all(tmp_path / name)


def test_a_file_name_longer_than_the_file_system_allows_is_a_per_case_error(tmp_path: Path):
    root = write_msd_folder(tmp_path / "root", {
        "good": (nifti_bytes(IMAGE), nifti_bytes(LABEL)),
        "other": tuple(nifti_bytes(a) for a in small_case(2))})
    import json

    meta = json.loads((root / "dataset.json").read_text())
    meta["training"][1]["image"] = "./imagesTr/" + "x" * 300 + ".nii.gz"
    (root / "dataset.json").write_text(json.dumps(meta))
    res = extract_features(root, tmp_path / "f.parquet", on_error="skip")
    assert len(res.skipped) == 1 and "cannot access" in res.skipped[0][1]
    with pytest.raises(DataError, match="rename the file"):
        extract_features(root, tmp_path / "g.parquet")


# ---------------------------------------------------------------------------- fuzz


_FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=32)
_MUTATIONS = st.fixed_dictionaries({}, optional={
    "dim": st.lists(st.integers(-5, 32767), min_size=8, max_size=8),
    "datatype": st.sampled_from([0, 1, 2, 4, 8, 16, 32, 64, 128, 255, 256, 512, 768, 1024,
                                 1280, 1536, 1792, 2048, 2304, 7, -4]),
    "bitpix": st.integers(-8, 256),
    "intent_code": st.integers(-3, 2000),
    "vox_offset": _FLOATS | st.sampled_from([0.0, 348.0, 352.0, 356.0, 2.0**31]),
    "scl_slope": _FLOATS | st.sampled_from([0.0, 1e38, -1e-38]),
    "scl_inter": _FLOATS,
    "pixdim": st.lists(_FLOATS, min_size=8, max_size=8),
    "qform_code": st.integers(-3, 5),
    "sform_code": st.integers(-3, 5),
    "quatern_b": _FLOATS, "quatern_c": _FLOATS, "quatern_d": _FLOATS,
    "srow_x": st.lists(_FLOATS, min_size=4, max_size=4),
    "sizeof_hdr": st.sampled_from([348, 540, 0, 1 << 24]),
    "magic": st.sampled_from([b"n+1", b"ni1", b"n+2", b""]),
})

_PEAK_BOUND = 96 * 2**20  # bytes traced by tracemalloc while reading one fuzzed volume


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(fields=_MUTATIONS, cut=st.none() | st.integers(0, 1200),
       gz=st.booleans(), tail=st.sampled_from([0, 100, 1 << 17]),
       ext=st.none() | st.binary(min_size=8, max_size=48))
def test_fuzzed_headers_only_raise_data_error_in_bounded_memory(tmp_path: Path, fields, cut,
                                                                gz, tail, ext):
    raw = nifti_bytes(IMAGE, tail=b"\x00" * tail, **fields)
    if ext is not None:  # an extension block (flag 1 + hostile esize/ecode/content)
        raw = raw[:348] + b"\x01\x00\x00\x00" + ext + raw[352:]
    if cut is not None:
        raw = raw[:cut]
    folder = tmp_path / f"fz{os.getpid()}"
    image = write_volume_bytes(folder / "imagesTr" / "p.nii.gz", raw, compress=gz) if gz \
        else write_volume_bytes(folder / "imagesTr" / "p.nii", raw, compress=False)
    label = write_volume_bytes(folder / "labelsTr" / "p.nii.gz", nifti_bytes(LABEL))
    tracemalloc.start()
    try:
        _pid, status, message, _ = extract_case(Case("p", image, label), folder / "c.parquet")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < _PEAK_BOUND, peak
    if status == "error":
        assert "p.nii" in message and "\n" not in message
    else:
        import pandas as pd

        frame = pd.read_parquet(message)
        assert np.isfinite(frame.drop(columns=["patient_id", "image_sha256"]).to_numpy()).all()
