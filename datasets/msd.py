"""Read a Medical Segmentation Decathlon (Task03 Liver) folder safely and lazily.

Two things live here:

* :func:`read_dataset_json` parses ``dataset.json`` into :class:`Case` objects, checking its
  structure and refusing any path that would leave the data root (``../``, absolute paths,
  symlinks pointing outside). These problems concern the dataset as a whole, so they always
  raise, whatever ``on_error`` the extraction uses.
* :func:`iter_case_slices` streams one case as axial slices ``(k, hu, label)`` a chunk of
  slices at a time, so memory stays bounded on real 512×512×987 volumes. Problems found in a
  case's files (missing, truncated gzip, not NIfTI, image/label mismatch, bad label values,
  empty liver, NaN/inf voxels) raise one :class:`~spikebench.errors.DataError` naming the file.
  :func:`iter_case_stored_slices` is the same stream with integer images left as stored
  (plus a bit-exact ``to_hu``), so the extraction converts only the liver's bounding box.

Orientation: the slice axis is voxel axis 2 *as stored*, for image and label alike (they must
share the affine, which is checked), and ``slice_idx`` is that stored voxel index, so a row
maps straight back to the file. Flipped affines therefore only reverse the order of the slices
or mirror them in-plane; every feature is invariant to in-plane mirroring (GLCM averaged over
symmetric angles, isotropic filters), so no reorientation is needed.

Reading one volume (header checks, :class:`VolumeLimits`, the bounded slab reader
:class:`Volume`) lives in :mod:`spikebench.datasets.nifti`; its public names are re-exported
here.

``._*`` files (macOS resource forks shipped in the real release) are never listed, opened or
counted: only the paths named in ``dataset.json`` are read, and naming a ``._`` file is an error.
"""


from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spikebench.datasets.nifti import (
    CHUNK_SLICES,
    DECOMPRESSION_SLACK,
    DEFAULT_LIMITS,
    FAST_GZIP,
    MAX_HEADER_BYTES,
    NiftiLayout,
    Volume,
    VolumeLimits,
    _describe,
    check_nifti_header,
)
from spikebench.errors import DataError

__all__ = [
    "CHUNK_SLICES", "DECOMPRESSION_SLACK", "DEFAULT_LIMITS", "FAST_GZIP", "LABEL_VALUES",
    "MAX_DATASET_JSON_BYTES", "MAX_HEADER_BYTES", "Case", "NiftiLayout", "Volume",
    "VolumeLimits", "check_nifti_header", "file_signature", "iter_case_slices",
    "iter_case_stored_slices", "read_dataset_json", "training_cases",
]

LABEL_VALUES = (0, 1, 2)
"""Task03 labels: 0 background, 1 liver, 2 tumour."""

MAX_DATASET_JSON_BYTES = 64 << 20
"""A real Task03 dataset.json is ~30 kB; anything over 64 MiB is refused unread."""

_NIFTI_EXTS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class Case:
    """One patient of the dataset: ``label`` is ``None`` for test images (no ground truth)."""

    patient_id: str
    image: Path
    label: Path | None


# ---------------------------------------------------------------------------- dataset.json


def read_dataset_json(root: str | Path) -> list[Case]:
    """Parse ``<root>/dataset.json`` (training cases first, then test images).

    Raises one :class:`DataError` for a missing / non-JSON file, missing or mistyped keys,
    paths that escape ``root`` or name a ``._`` resource-fork file, and duplicate patients.
    Files are not opened here (a missing volume is a per-case problem found when reading).
    """
    root = Path(root)
    path = root / "dataset.json"
    _check_data_root(root, path)
    meta = _load_json(path)
    training, test = _check_meta(path, meta)
    root_real = root.resolve()
    cases = [*_training_entries(root, root_real, path, training),
             *_test_entries(root, root_real, path, test)]
    _refuse_duplicate_ids(path, cases)
    _refuse_same_file_twice(path, cases)
    return cases


def _check_data_root(root: Path, path: Path) -> None:
    """The data root is an accessible folder holding a dataset.json of plausible size."""
    try:
        is_dir, is_file = root.is_dir(), path.is_file()
        size = path.stat().st_size if is_file else 0
    except OSError as exc:
        raise DataError(f"{root}: cannot access the data root ({_describe(exc)}); pass the "
                        "folder that holds dataset.json, imagesTr/ and labelsTr/") from None
    if not is_dir:
        raise DataError(f"{root}: data root is not a directory; pass the folder that holds "
                        "dataset.json, imagesTr/ and labelsTr/")
    if not is_file:
        raise DataError(f"{path}: missing; the data root must contain the MSD dataset.json "
                        "(download Task03_Liver from medicaldecathlon.com and pass its folder)")
    if size > MAX_DATASET_JSON_BYTES:
        raise DataError(f"{path}: {size} bytes, more than the {MAX_DATASET_JSON_BYTES} a "
                        "dataset.json can plausibly need; restore the original file")


def _load_json(path: Path) -> Any:
    """The parsed content of dataset.json (UTF-8 JSON)."""
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError, digits
        raise DataError(f"{path}: not valid JSON ({_describe(exc)[:200]}); restore the "
                        "original file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({_describe(exc)}); check its permissions"
                        ) from None


def _check_meta(path: Path, meta: Any) -> tuple[list, list]:
    """Check the top-level structure; return the ``training`` and ``test`` lists."""
    if not isinstance(meta, dict):
        raise DataError(f"{path}: top level must be a JSON object, got {type(meta).__name__}")
    for key in ("labels", "training"):
        if key not in meta:
            raise DataError(f"{path}: missing key {key!r} (keys present: "
                            f"{sorted(map(str, meta))}); restore the original dataset.json")
    _check_labels(path, meta["labels"])
    training = meta["training"]
    if not isinstance(training, list):
        raise DataError(f"{path}: 'training' must be a list of {{\"image\", \"label\"}} "
                        f"objects, got {type(training).__name__}")
    test = meta.get("test", [])
    if not isinstance(test, list):
        raise DataError(f"{path}: 'test' must be a list of paths, got {type(test).__name__}")
    return training, test


def _training_entries(root: Path, root_real: Path, path: Path, training: list) -> list[Case]:
    """The labelled cases of the ``training`` list, each path checked."""
    cases: list[Case] = []
    for i, entry in enumerate(training):
        where = f"{path}: training[{i}]"
        if not isinstance(entry, dict):
            raise DataError(f"{where} must be an object with 'image' and 'label', "
                            f"got {type(entry).__name__}")
        for key in ("image", "label"):
            if key not in entry:
                raise DataError(f"{where} has no {key!r} path")
        image = _safe_path(root, root_real, entry["image"], f"{where}.image")
        label = _safe_path(root, root_real, entry["label"], f"{where}.label")
        cases.append(Case(_patient_id(image, f"{where}.image"), image, label))
    return cases


def _test_entries(root: Path, root_real: Path, path: Path, test: list) -> list[Case]:
    """The unlabelled cases of the ``test`` list, each path checked."""
    cases: list[Case] = []
    for i, entry in enumerate(test):
        where = f"{path}: test[{i}]"
        if isinstance(entry, dict) and "image" in entry:  # some MSD tasks use objects here
            entry = entry["image"]
        image = _safe_path(root, root_real, entry, where)
        cases.append(Case(_patient_id(image, where), image, None))
    return cases


def _refuse_duplicate_ids(path: Path, cases: list[Case]) -> None:
    """Each patient id (volume file name) appears once."""
    seen: dict[str, Path] = {}
    for case in cases:
        if case.patient_id in seen:
            raise DataError(f"{path}: patient {case.patient_id!r} is listed twice "
                            f"({seen[case.patient_id]} and {case.image}); each volume must "
                            "appear once")
        seen[case.patient_id] = case.image


def _refuse_same_file_twice(path: Path, cases: list[Case]) -> None:
    """One file under two entries (a symlink or hard link to another listed volume) would
    put one scan in train and test: refuse it here, before anything is read. Copies with
    other inodes are caught later by content (``image_sha256``)."""
    seen: dict[tuple[int, int], Case] = {}
    for case in cases:
        try:
            st = case.image.stat()
        except OSError:  # missing / unreadable: a per-case problem found when reading
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            first = seen[key]
            raise DataError(f"{path}: patients {first.patient_id!r} ({first.image}) and "
                            f"{case.patient_id!r} ({case.image}) are the same file (a link); "
                            "one scan under two names would leak between train and test - "
                            "remove one entry (never skippable, even with on_error='skip')")
        seen[key] = case


def training_cases(root: str | Path) -> list[Case]:
    """The labelled cases of ``dataset.json`` (test images have no ground truth)."""
    return [c for c in read_dataset_json(root) if c.label is not None]


def _check_labels(path: Path, labels: Any) -> None:
    if not isinstance(labels, dict):
        raise DataError(f"{path}: 'labels' must be an object like "
                        f'{{"0": "background", "1": "liver", "2": "cancer"}}, '
                        f"got {type(labels).__name__}")
    missing = [k for k in ("0", "1", "2") if k not in labels]
    if missing:
        raise DataError(f"{path}: 'labels' lacks {missing}; Task03 Liver needs 0 background, "
                        "1 liver, 2 cancer")


def _safe_path(root: Path, root_real: Path, value: Any, where: str) -> Path:
    """Resolve a dataset.json path inside ``root``; refuse anything that would leave it."""
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: expected a relative path string like "
                        f"'./imagesTr/liver_0.nii.gz', got {value!r}")
    if "\x00" in value:
        raise DataError(f"{where}: path {value!r} contains a NUL byte")
    rel = Path(value)
    if rel.is_absolute() or value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":"):
        raise DataError(f"{where}: absolute path {value!r} refused; paths must be relative to "
                        f"the data root {root}")
    name = rel.name
    if name.startswith("._"):
        raise DataError(f"{where}: {value!r} is a macOS resource-fork file, not a volume; "
                        "list the volume without the '._' prefix")
    if not name.endswith(_NIFTI_EXTS):
        raise DataError(f"{where}: {value!r} is not a .nii.gz or .nii file name")
    full = root / rel
    try:
        real = full.resolve()
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{where}: cannot resolve {value!r} ({exc})") from None
    if not real.is_relative_to(root_real):
        raise DataError(f"{where}: {value!r} points outside the data root {root} (to {real}); "
                        "refused - keep every volume inside the dataset folder")
    return full


def _patient_id(path: Path, where: str) -> str:
    name = path.name
    for ext in _NIFTI_EXTS:
        if name.endswith(ext):
            stem = name[: -len(ext)]
            if stem:
                return stem
    raise DataError(f"{where}: cannot take a patient id from file name {name!r}")


# ---------------------------------------------------------------------------- case slices


def iter_case_slices(case: Case, chunk: int = CHUNK_SLICES, *,
                     limits: VolumeLimits = DEFAULT_LIMITS, info: dict | None = None
                     ) -> Iterator[tuple[int, np.ndarray, np.ndarray, tuple[float, float]]]:
    """Stream a labelled case as ``(slice_idx, hu float32 [X, Y], label uint8 [X, Y],
    (spacing_x, spacing_y) in mm)`` for every stored slice along voxel axis 2.

    Checks, each raising one :class:`DataError` naming the file: the headers (see
    :func:`check_nifti_header`, within ``limits``), image/label shape or affine mismatch,
    label values outside {0, 1, 2}, NaN/inf voxels (also after scaling to float32), and
    (after the last slice) a label volume without any liver voxel. Once the stream is
    exhausted, ``info`` (when given) holds ``image_sha256``: the SHA-256 of the image's
    stored voxel bytes, shape and dtype, which identifies the scan whatever its file name.
    """
    for start, img, lab, spacing, to_hu in _iter_case_chunks(case, chunk, False, limits, info):
        hu = to_hu(img)
        for j in range(hu.shape[2]):
            yield start + j, hu[:, :, j], lab[:, :, j], spacing


def iter_case_stored_slices(case: Case, chunk: int = CHUNK_SLICES, *,
                            limits: VolumeLimits = DEFAULT_LIMITS, info: dict | None = None
                            ) -> Iterator[tuple[int, np.ndarray, np.ndarray,
                                                tuple[float, float], Callable]]:
    """Like :func:`iter_case_slices`, but the image slice comes as stored (integers when the
    file stores integers) with a function ``to_hu`` mapping any part of it to the float32 HU
    values :func:`iter_case_slices` would yield there, bit for bit. The feature extraction
    converts only the liver's bounding box instead of every whole slice.
    """
    for start, img, lab, spacing, to_hu in _iter_case_chunks(case, chunk, True, limits, info):
        for j in range(img.shape[2]):
            yield start + j, img[:, :, j], lab[:, :, j], spacing, to_hu


def _iter_case_chunks(case: Case, chunk: int, raw: bool, limits: VolumeLimits,
                      info: dict | None
                      ) -> Iterator[tuple[int, np.ndarray, np.ndarray, tuple[float, float],
                                          Callable]]:
    if case.label is None:
        raise DataError(f"{case.image}: test image without a label volume; only training "
                        "cases can be extracted")
    with Volume(case.image, limits) as image, Volume(case.label, limits) as label:
        if image.shape != label.shape:
            raise DataError(f"{case.label}: shape {label.shape} differs from image "
                            f"{case.image} {image.shape}; image and label must match voxel "
                            "for voxel")
        if not np.allclose(image.affine, label.affine, atol=1e-3, rtol=1e-5):
            raise DataError(f"{case.label}: affine differs from image {case.image} "
                            f"(max difference {np.abs(image.affine - label.affine).max():.4g}); "
                            "image and label must share the affine")
        spacing = (image.spacing[0], image.spacing[1])
        raw = raw and image.stored_integers

        def to_hu(stored: np.ndarray) -> np.ndarray:
            return np.asarray(image.to_physical(stored)).astype(np.float32, copy=False)

        def as_float32(data: np.ndarray) -> np.ndarray:
            return data.astype(np.float32, copy=False)

        any_liver = False
        chunks = zip(image.chunks(chunk, raw=raw), label.chunks(chunk), strict=True)
        for (start, img), (_, lab) in chunks:
            last = start + img.shape[2] - 1
            if raw:  # scaling is linear: the chunk is finite when its extremes scale finitely
                ends = to_hu(np.array([img.min(), img.max()], dtype=img.dtype))
                if not np.isfinite(ends).all():
                    raise DataError(f"{case.image}: stored values {img.min()}..{img.max()} in "
                                    f"slices {start}-{last} scale to non-finite HU in float32 "
                                    f"({ends.tolist()}); fix scl_slope / scl_inter in the "
                                    "header")
            else:
                img = as_float32(img)
                if not np.isfinite(img).all():
                    bad = int((~np.isfinite(img)).sum())
                    raise DataError(f"{case.image}: {bad} NaN/inf voxels in slices "
                                    f"{start}-{last} (after scaling to float32); fix or "
                                    "exclude the volume")
            lab_u8 = _check_label_chunk(case.label, lab, start)
            any_liver = any_liver or bool(lab_u8.any())
            yield start, img, lab_u8, spacing, (to_hu if raw else as_float32)
        if not any_liver:
            raise DataError(f"{case.label}: no liver voxels (label > 0) at all; the mask is "
                            "empty - check the label file or exclude the case")
        if info is not None:
            info["image_sha256"] = image.content_sha256


def _check_label_chunk(path: Path, lab: np.ndarray, start: int) -> np.ndarray:
    if lab.dtype.kind == "f":
        if not np.isfinite(lab).all():
            raise DataError(f"{path}: NaN/inf label values near slice {start}; labels must be "
                            "0 (background), 1 (liver) or 2 (tumour)")
        if np.any(lab != np.round(lab)):
            vals = np.unique(lab[lab != np.round(lab)])[:5]
            raise DataError(f"{path}: non-integer label values {vals.tolist()} near slice "
                            f"{start}; labels must be 0, 1 or 2")
    lo, hi = lab.min(), lab.max()
    if lo < 0 or hi > 2:
        vals = np.unique(lab[(lab < 0) | (lab > 2)])[:5]
        raise DataError(f"{path}: label values {vals.tolist()} outside {{0, 1, 2}} near slice "
                        f"{start}; labels must be 0 (background), 1 (liver) or 2 (tumour)")
    return lab.astype(np.uint8, copy=False)


def file_signature(path: Path) -> str:
    """``size:mtime_ns`` of a file, for cache keys (changes when the file is replaced)."""
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"
