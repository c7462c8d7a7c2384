"""Broken copies of a good MSD folder, one defect each (issue 9), for tests and demos.

:func:`write_broken_variants` copies a good folder (e.g. a phantom) once per defect and breaks
exactly one thing in the copy. Per-case defects break the *first* training case only, so with
``on_error="skip"`` the other cases must still be extracted with identical features. The
``mixed`` variant breaks several cases in different ways at once.

Each variant's expected outcome is in :data:`EXPECTED`: whether the defect is global (the
whole extraction must refuse, even with ``on_error="skip"``) and a fragment the single
:class:`~spikebench.errors.DataError` message must contain.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np

# name -> (global?, message fragment)
EXPECTED: dict[str, tuple[bool, str]] = {
    "no_dataset_json": (True, "dataset.json: missing"),
    "not_json": (True, "not valid JSON"),
    "missing_training": (True, "missing key 'training'"),
    "missing_labels": (True, "missing key 'labels'"),
    "training_not_list": (True, "'training' must be a list"),
    "entry_not_object": (True, "training[0] must be an object"),
    "path_dotdot": (True, "points outside the data root"),
    "path_absolute": (True, "absolute path"),
    "symlink_outside": (True, "points outside the data root"),
    "resource_fork_listed": (True, "macOS resource-fork file"),
    "missing_file": (False, "listed in dataset.json but missing"),
    "truncated_gzip": (False, "truncated"),
    "not_nifti": (False, "not a NIfTI-1 file"),
    "not_gzip": (False, "not a gzip file"),
    "shape_mismatch": (False, "differs from image"),
    "affine_mismatch": (False, "image and label must share the affine"),
    "bad_label_values": (False, "outside {0, 1, 2}"),
    "empty_liver": (False, "no liver voxels"),
    "nan_voxels": (False, "NaN/inf voxels"),
}


def write_broken_variants(root_good: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Copy ``root_good`` into ``out_dir/<variant>`` once per defect of :data:`EXPECTED`
    (plus ``mixed``) and break each copy; returns ``{variant: folder}``."""
    root_good, out_dir = Path(root_good), Path(out_dir)
    meta = json.loads((root_good / "dataset.json").read_text())
    first = meta["training"][0]
    out: dict[str, Path] = {}
    for name in [*EXPECTED, "mixed"]:
        dest = out_dir / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(root_good, dest, symlinks=True)
        _BREAKERS[name](dest, json.loads(json.dumps(meta)), first)
        out[name] = dest
    return out


def _save_json(root: Path, meta: object) -> None:
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))


def _nifti(path: Path):
    import nibabel as nib

    return nib.load(path)


def _save(img, path: Path) -> None:
    import nibabel as nib

    nib.save(img, path)


def _rewrite_label(root: Path, entry: dict, change) -> None:
    import nibabel as nib

    path = root / entry["label"]
    img = _nifti(path)
    data = np.asarray(img.dataobj).astype(np.int16)
    _save(nib.Nifti1Image(change(data), img.affine), path)


def _no_dataset_json(root, meta, first):
    (root / "dataset.json").unlink()


def _not_json(root, meta, first):
    (root / "dataset.json").write_text('{"name": "Liver", "training": [')


def _missing(key):
    def breaker(root, meta, first):
        del meta[key]
        _save_json(root, meta)
    return breaker


def _training_not_list(root, meta, first):
    meta["training"] = {"image": first["image"], "label": first["label"]}
    _save_json(root, meta)


def _entry_not_object(root, meta, first):
    meta["training"][0] = first["image"]
    _save_json(root, meta)


def _path_dotdot(root, meta, first):
    meta["training"][0]["image"] = "../outside/liver_0.nii.gz"
    _save_json(root, meta)


def _path_absolute(root, meta, first):
    meta["training"][0]["image"] = str((root / first["image"]).resolve())
    _save_json(root, meta)


def _symlink_outside(root, meta, first):
    outside = root.parent / "outside_target.nii.gz"
    shutil.copy(root / first["image"], outside)
    link = root / "imagesTr" / "linked.nii.gz"
    link.symlink_to(outside)
    meta["training"][0]["image"] = "./imagesTr/linked.nii.gz"
    _save_json(root, meta)


def _resource_fork_listed(root, meta, first):
    name = Path(first["image"]).name
    meta["training"][0]["image"] = f"./imagesTr/._{name}"
    _save_json(root, meta)


def _missing_file(root, meta, first):
    (root / first["image"]).unlink()


def _truncated_gzip(root, meta, first):
    path = root / first["image"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_nifti(root, meta, first):
    path = root / first["image"]
    with gzip.GzipFile(path, "wb", mtime=0) as fh:
        fh.write(b"this is a text file, not a CT volume\n" * 40)


def _not_gzip(root, meta, first):
    (root / first["image"]).write_bytes(b"\x00\x05\x16\x07Mac OS X" + b"\x00" * 400)


def _shape_mismatch(root, meta, first):
    import nibabel as nib

    path = root / first["label"]
    img = _nifti(path)
    data = np.asarray(img.dataobj)[:-2]
    _save(nib.Nifti1Image(data, img.affine), path)


def _affine_mismatch(root, meta, first):
    import nibabel as nib

    path = root / first["label"]
    img = _nifti(path)
    affine = img.affine.copy()
    affine[:3, 3] += 5.0
    _save(nib.Nifti1Image(np.asarray(img.dataobj), affine), path)


def _bad_label_values(root, meta, first):
    def change(data):
        data[data == 1] = 1
        data.flat[int(np.flatnonzero(data)[0])] = 7
        return data
    _rewrite_label(root, first, change)


def _empty_liver(root, meta, first):
    _rewrite_label(root, first, lambda data: np.zeros_like(data))


def _nan_voxels(root, meta, first):
    import nibabel as nib

    path = root / first["image"]
    img = _nifti(path)
    data = np.asarray(img.dataobj, dtype=np.float32)
    data[data.shape[0] // 2, data.shape[1] // 2, data.shape[2] // 2] = np.nan
    _save(nib.Nifti1Image(data, img.affine), path)


def _mixed(root, meta, first):
    """Case 0 truncated, case 2 empty liver, case 4 missing; the rest good."""
    entries = meta["training"]
    _truncated_gzip(root, meta, entries[0])
    if len(entries) > 2:
        _empty_liver(root, meta, entries[2])
    if len(entries) > 4:
        (root / entries[4]["label"]).unlink()


_BREAKERS = {
    "no_dataset_json": _no_dataset_json,
    "not_json": _not_json,
    "missing_training": _missing("training"),
    "missing_labels": _missing("labels"),
    "training_not_list": _training_not_list,
    "entry_not_object": _entry_not_object,
    "path_dotdot": _path_dotdot,
    "path_absolute": _path_absolute,
    "symlink_outside": _symlink_outside,
    "resource_fork_listed": _resource_fork_listed,
    "missing_file": _missing_file,
    "truncated_gzip": _truncated_gzip,
    "not_nifti": _not_nifti,
    "not_gzip": _not_gzip,
    "shape_mismatch": _shape_mismatch,
    "affine_mismatch": _affine_mismatch,
    "bad_label_values": _bad_label_values,
    "empty_liver": _empty_liver,
    "nan_voxels": _nan_voxels,
    "mixed": _mixed,
}


# ---------------------------------------------------------------------------- hand-made headers


def nifti_bytes(data: np.ndarray, spacing: tuple[float, float, float] = (0.8, 0.8, 2.0),
                *, tail: bytes = b"", **fields) -> bytes:
    """An uncompressed single-file NIfTI-1 of ``data`` (header + 4 extension bytes + voxels
    + ``tail``), with any header ``fields`` overwritten afterwards *without* any checking:
    the way to build the hostile headers a reader must survive."""
    import nibabel as nib
    from nibabel.nifti1 import header_dtype

    hdr = nib.Nifti1Header()
    hdr.set_data_shape(data.shape)
    hdr.set_data_dtype(data.dtype)
    affine = np.diag([*spacing, 1.0])
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr.set_zooms(spacing)
    hdr.set_data_offset(352)
    block = np.frombuffer(hdr.binaryblock, dtype=header_dtype).copy()
    for name, value in fields.items():
        block[0][name] = value
    return (block.tobytes() + b"\x00" * 4 + np.asfortranarray(data).tobytes(order="F")
            + tail)


def write_volume_bytes(path: Path, raw: bytes, *, compress: bool = True) -> Path:
    """Write NIfTI bytes as ``path`` (gzipped with mtime 0 when ``compress``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(raw, compresslevel=1, mtime=0) if compress else raw)
    return path


def write_msd_folder(root: Path, cases: dict[str, tuple[bytes, bytes]]) -> Path:
    """An MSD folder with ``{patient id: (image bytes, label bytes)}`` as gzipped volumes."""
    training = []
    for pid, (image, label) in cases.items():
        write_volume_bytes(root / "imagesTr" / f"{pid}.nii.gz", image)
        write_volume_bytes(root / "labelsTr" / f"{pid}.nii.gz", label)
        training.append({"image": f"./imagesTr/{pid}.nii.gz",
                         "label": f"./labelsTr/{pid}.nii.gz"})
    meta = {"labels": {"0": "background", "1": "liver", "2": "cancer"},
            "training": training, "test": []}
    (root / "dataset.json").write_text(json.dumps(meta, indent=2))
    return root


def small_case(seed: int = 0, shape: tuple[int, int, int] = (12, 10, 4)
               ) -> tuple[np.ndarray, np.ndarray]:
    """A tiny valid case: int16 HU image and a label with liver (1) and some tumour (2)."""
    rng = np.random.default_rng(seed)
    image = rng.normal(60, 15, shape).round().astype(np.int16)
    label = np.zeros(shape, dtype=np.uint8)
    label[2:-2, 2:-2, :] = 1
    label[4:7, 4:6, 1:3] = 2
    return image, label
