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

``._*`` files (macOS resource forks shipped in the real release) are never listed, opened or
counted: only the paths named in ``dataset.json`` are read, and naming a ``._`` file is an error.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spikebench.errors import DataError

LABEL_VALUES = (0, 1, 2)
"""Task03 labels: 0 background, 1 liver, 2 tumour."""

CHUNK_SLICES = 16
"""Slices decoded per read: 512×512×16 float32 is 16 MB, whatever the volume's length."""

_NIFTI_EXTS = (".nii.gz", ".nii")
_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, struct.error)

try:  # isal's igzip is a drop-in, ~3x faster gzip.GzipFile; fall back to the stdlib one.
    from isal import igzip as _gzip_module  # type: ignore[import-not-found]

    FAST_GZIP = True
except ImportError:  # pragma: no cover - depends on the environment
    _gzip_module = gzip  # type: ignore[assignment]
    FAST_GZIP = False


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
    if not root.is_dir():
        raise DataError(f"{root}: data root is not a directory; pass the folder that holds "
                        "dataset.json, imagesTr/ and labelsTr/")
    if not path.is_file():
        raise DataError(f"{path}: missing; the data root must contain the MSD dataset.json "
                        "(download Task03_Liver from medicaldecathlon.com and pass its folder)")
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}); restore the original file") from None
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
    root_real = root.resolve()
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
    for i, entry in enumerate(test):
        where = f"{path}: test[{i}]"
        if isinstance(entry, dict) and "image" in entry:  # some MSD tasks use objects here
            entry = entry["image"]
        image = _safe_path(root, root_real, entry, where)
        cases.append(Case(_patient_id(image, where), image, None))
    seen: dict[str, Path] = {}
    for case in cases:
        if case.patient_id in seen:
            raise DataError(f"{path}: patient {case.patient_id!r} is listed twice "
                            f"({seen[case.patient_id]} and {case.image}); each volume must "
                            "appear once")
        seen[case.patient_id] = case.image
    return cases


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


# ---------------------------------------------------------------------------- volumes


class Volume:
    """A NIfTI-1 volume opened lazily through nibabel's ``dataobj`` (context manager).

    The gzip stream is opened once (isal's igzip when installed) and read forwards a chunk of
    slices at a time, so a volume is decompressed exactly once and never held whole in memory.
    """

    def __init__(self, path: str | Path):
        import nibabel as nib

        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: listed in dataset.json but missing; restore the file "
                            "or remove its entry")
        self._fh: Any = None
        try:
            with open(self.path, "rb") as raw:
                magic = raw.read(2)
            gz = magic == b"\x1f\x8b"
            if self.path.name.endswith(".gz") and not gz:
                raise DataError(f"{self.path}: not a gzip file (the name ends in .gz); "
                                "re-download or recompress the volume")
            opener = _gzip_module.open if gz else open
            self._fh = opener(self.path, "rb")  # closed by close() / __exit__
            head = self._fh.read(348)
            _check_nifti_header(self.path, head)
            self._fh.seek(0)
            self.image = nib.Nifti1Image.from_stream(self._fh)
        except DataError:
            self.close()
            raise
        except (*_READ_ERRORS, nib.filebasedimages.ImageFileError) as exc:
            self.close()
            raise DataError(f"{self.path}: unreadable ({_describe(exc)}); the file is truncated "
                            "or corrupt - re-download it") from None
        self.header = self.image.header
        self.shape: tuple[int, ...] = tuple(int(s) for s in self.image.shape)
        if len(self.shape) != 3:
            self.close()
            raise DataError(f"{self.path}: expected a 3-D volume, got shape {self.shape}")
        self.affine = np.asarray(self.image.affine, dtype=np.float64)
        self.spacing = tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))

    @property
    def stored_integers(self) -> bool:
        """True when voxels are stored as integers with finite scaling: :meth:`chunks` can
        then hand out the stored values (``raw=True``) and :meth:`to_physical` scales only
        the part a caller uses, exactly as nibabel would scale the whole slab."""
        proxy = self.image.dataobj
        return (self.header.get_data_dtype().kind in "iu" and self._fh is not None
                and bool(np.isfinite(proxy.slope)) and bool(np.isfinite(proxy.inter)))

    def to_physical(self, stored: np.ndarray) -> np.ndarray:
        """Stored values -> scaled values, bit for bit as ``dataobj[...]`` computes them
        (nibabel's ``ArrayProxy._get_scaled``; the identity returns ``stored`` itself)."""
        from nibabel.volumeutils import apply_read_scaling

        proxy = self.image.dataobj
        slope = np.asanyarray(proxy.slope)
        inter = np.asanyarray(proxy.inter)
        if np.can_cast(inter, slope.dtype):
            inter = inter.astype(slope.dtype)
        return apply_read_scaling(stored, slope, inter)

    def chunks(self, chunk: int = CHUNK_SLICES, raw: bool = False
               ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_slice, data[:, :, first:first+chunk])`` with scaling applied
        (scl_slope / scl_inter), in stored dtype (integers) or float.

        ``raw=True`` and :attr:`stored_integers`: the stored integers, read straight from the
        stream (no scaling pass, no float copy of the whole slab); callers scale only what they
        use with :meth:`to_physical`. Otherwise ``raw`` changes nothing.
        """
        nz = self.shape[2]
        direct = raw and self.stored_integers
        if direct:
            dtype = self.header.get_data_dtype()
            offset = int(self.image.dataobj.offset)
            plane = self.shape[0] * self.shape[1]
        for start in range(0, nz, chunk):
            stop = min(nz, start + chunk)
            try:
                if direct:
                    n = plane * (stop - start) * dtype.itemsize
                    self._fh.seek(offset + plane * start * dtype.itemsize)
                    buf = self._fh.read(n)
                    if len(buf) != n:
                        raise EOFError(f"expected {n} bytes, got {len(buf)}")
                    data = np.frombuffer(buf, dtype=dtype).reshape(
                        (self.shape[0], self.shape[1], stop - start), order="F")
                else:
                    data = np.asarray(self.image.dataobj[:, :, start:stop])
            except _READ_ERRORS as exc:
                raise DataError(f"{self.path}: truncated or corrupt data at slices "
                                f"{start}-{stop - 1} ({_describe(exc)}); re-download the file"
                                ) from None
            yield start, data
        if direct:
            self._check_end()

    def _check_end(self) -> None:
        """Read the stream to its end so a truncated tail / bad CRC is still reported."""
        try:
            while self._fh.read(1 << 20):
                pass
        except _READ_ERRORS as exc:
            raise DataError(f"{self.path}: truncated or corrupt data after the last slice "
                            f"({_describe(exc)}); re-download the file") from None

    def close(self) -> None:
        """Close the underlying file handle."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Volume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_nifti_header(path: Path, head: bytes) -> None:
    if len(head) < 348:
        raise DataError(f"{path}: only {len(head)} bytes, shorter than a NIfTI header; "
                        "the file is truncated - re-download it")
    size_le, size_be = struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0]
    if 348 not in (size_le, size_be) or head[344:348] not in (b"n+1\x00", b"ni1\x00"):
        raise DataError(f"{path}: not a NIfTI-1 file (bad header); check that the path names "
                        "a CT volume")


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def iter_case_slices(case: Case, chunk: int = CHUNK_SLICES
                     ) -> Iterator[tuple[int, np.ndarray, np.ndarray, tuple[float, float]]]:
    """Stream a labelled case as ``(slice_idx, hu float32 [X, Y], label uint8 [X, Y],
    (spacing_x, spacing_y) in mm)`` for every stored slice along voxel axis 2.

    Checks, each raising one :class:`DataError` naming the file: image/label shape or affine
    mismatch, label values outside {0, 1, 2}, NaN/inf voxels, and (after the last slice) a
    label volume without any liver voxel.
    """
    for start, img, lab, spacing, to_hu in _iter_case_chunks(case, chunk, raw=False):
        hu = to_hu(img)
        for j in range(hu.shape[2]):
            yield start + j, hu[:, :, j], lab[:, :, j], spacing


def iter_case_stored_slices(case: Case, chunk: int = CHUNK_SLICES
                            ) -> Iterator[tuple[int, np.ndarray, np.ndarray,
                                                tuple[float, float], Callable]]:
    """Like :func:`iter_case_slices`, but the image slice comes as stored (integers when the
    file stores integers) with a function ``to_hu`` mapping any part of it to the float32 HU
    values :func:`iter_case_slices` would yield there, bit for bit. The feature extraction
    converts only the liver's bounding box instead of every whole slice.
    """
    for start, img, lab, spacing, to_hu in _iter_case_chunks(case, chunk, raw=True):
        for j in range(img.shape[2]):
            yield start + j, img[:, :, j], lab[:, :, j], spacing, to_hu


def _iter_case_chunks(case: Case, chunk: int, raw: bool
                      ) -> Iterator[tuple[int, np.ndarray, np.ndarray, tuple[float, float],
                                          Callable]]:
    if case.label is None:
        raise DataError(f"{case.image}: test image without a label volume; only training "
                        "cases can be extracted")
    with Volume(case.image) as image, Volume(case.label) as label:
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
        for (start, img), (_, lab) in zip(image.chunks(chunk, raw=raw), label.chunks(chunk)):
            if not raw:  # integers (raw) are finite; stored floats are checked here
                img = as_float32(img)
                if not np.isfinite(img).all():
                    bad = int((~np.isfinite(img)).sum())
                    raise DataError(f"{case.image}: {bad} NaN/inf voxels in slices "
                                    f"{start}-{start + img.shape[2] - 1}; fix or exclude the "
                                    "volume")
            lab_u8 = _check_label_chunk(case.label, lab, start)
            any_liver = any_liver or bool(lab_u8.any())
            yield start, img, lab_u8, spacing, (to_hu if raw else as_float32)
        if not any_liver:
            raise DataError(f"{case.label}: no liver voxels (label > 0) at all; the mask is "
                            "empty - check the label file or exclude the case")


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
