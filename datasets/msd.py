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
import hashlib
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

MAX_DATASET_JSON_BYTES = 64 << 20
"""A real Task03 dataset.json is ~30 kB; anything over 64 MiB is refused unread."""

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
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:  # JSONDecodeError, digits
        raise DataError(f"{path}: not valid JSON ({_describe(exc)[:200]}); restore the "
                        "original file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({_describe(exc)}); check its permissions"
                        ) from None
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
    _refuse_same_file_twice(path, cases)
    return cases


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


# ---------------------------------------------------------------------------- volumes


@dataclass(frozen=True)
class VolumeLimits:
    """Largest volume the reader accepts, checked from the header before any allocation.

    The defaults fit every real Task03 volume (512×512 in-plane, 74-987 slices). A header
    claiming more is refused with a :class:`DataError`; raise a limit (``extract_features``'
    ``max_slice_voxels`` / ``max_volume_voxels``) for genuinely larger scans.
    """

    max_slice_voxels: int = 512 * 512
    max_volume_voxels: int = 512 * 512 * 1024

    def __post_init__(self) -> None:
        for name in ("max_slice_voxels", "max_volume_voxels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"{name}={value!r}: must be an integer >= 1")


DEFAULT_LIMITS = VolumeLimits()

MAX_HEADER_BYTES = 1 << 24
"""Largest ``vox_offset`` (header + extensions) accepted: 16 MiB; real files use 352."""

DECOMPRESSION_SLACK = 1 << 16
"""Bytes a stream may hold past the data its header declares (padding); more is an error."""

_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4",
           1024: "i8", 1280: "u8"}
"""NIfTI-1 datatype codes of single-channel real voxels: the only ones a CT or label can use."""
_DTYPE_PROBLEMS = {0: "unknown (code 0)", 1: "binary (code 1)", 32: "complex64",
                   128: "RGB colour (code 128)", 255: "'all' (code 255)", 1536: "float128",
                   1792: "complex128", 2048: "complex256", 2304: "RGBA colour (code 2304)"}


@dataclass(frozen=True)
class NiftiLayout:
    """What a NIfTI-1 header declares, checked: shape, stored dtype, data offset and size."""

    shape: tuple[int, int, int]
    dtype: np.dtype
    offset: int
    data_bytes: int


class _BoundedReader:
    """A read-only file object that never hands out more than ``limit`` bytes.

    It wraps the (gzip) stream so a header cannot make anyone read - and so allocate - more
    than the header's declared size: nibabel's extension parser and our slab reads are both
    capped, whatever lengths a hostile file declares.
    """

    def __init__(self, fh: Any, limit: int):
        self._fh = fh
        self.limit = limit
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        room = max(self.limit - self._pos, 0)
        n = room if n is None or n < 0 else min(n, room)
        data = self._fh.read(n) if n else b""
        self._pos += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        data = self.read(len(memoryview(buf)))
        memoryview(buf).cast("B")[: len(data)] = data
        return len(data)

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence != 0:
            raise OSError("seek from the end is not supported on a bounded stream")
        self._pos = self._fh.seek(pos)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read_past_limit(self, n: int) -> bytes:
        """Up to ``n`` bytes beyond the limit (to check a stream ends where it should)."""
        data = self._fh.read(n)
        self._pos += len(data)
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._fh.close()

    @property
    def closed(self) -> bool:
        return bool(getattr(self._fh, "closed", False))


class Volume:
    """A NIfTI-1 volume read lazily, one slab of slices at a time (context manager).

    The header is checked by :func:`check_nifti_header` *before* anything is allocated
    (dimensions within ``limits``, a supported single-channel datatype, a sane ``vox_offset``
    and scaling); nibabel then parses it (affine, scaling) and the voxel data are read
    straight from the stream, which is capped at the size the header declares. The gzip
    stream (isal's igzip when installed) is decompressed exactly once, forwards, and never
    held whole in memory; the SHA-256 of the stored voxel bytes is computed on the way
    (:attr:`content_sha256`), so duplicated scans can be found at no extra read.
    """

    def __init__(self, path: str | Path, limits: VolumeLimits = DEFAULT_LIMITS):
        import nibabel as nib

        self.path = Path(path)
        self.limits = limits
        self._fh: Any = None
        self.content_sha256: str | None = None
        try:
            is_file = self.path.is_file()
        except OSError as exc:
            raise DataError(f"{self.path}: cannot access ({_describe(exc)}); rename the file "
                            "(shorter name, no special characters) and its dataset.json entry"
                            ) from None
        if not is_file:
            raise DataError(f"{self.path}: listed in dataset.json but missing; restore the file "
                            "or remove its entry")
        try:
            with open(self.path, "rb") as raw:
                magic = raw.read(2)
            gz = magic == b"\x1f\x8b"
            if self.path.name.endswith(".gz") and not gz:
                raise DataError(f"{self.path}: not a gzip file (the name ends in .gz); "
                                "re-download or recompress the volume")
            opener = _gzip_module.open if gz else open
            self._fh = _BoundedReader(opener(self.path, "rb"), 348)  # closed by close()
            self.layout = check_nifti_header(self.path, self._fh.read(348), limits)
            self._fh.seek(0)
            self._fh.limit = self.layout.offset  # header + extensions, nothing more
            try:
                header = nib.Nifti1Header.from_fileobj(self._fh)
                self.affine = np.asarray(header.get_best_affine(), dtype=np.float64)
                self._proxy = nib.arrayproxy.ArrayProxy(self._fh, header)
                slope, inter = self._proxy.slope, self._proxy.inter
            except _READ_ERRORS:
                raise
            except Exception as exc:  # nibabel's own header checks (HeaderDataError, ...)
                raise DataError(f"{self.path}: nibabel rejects the NIfTI header "
                                f"({_describe(exc)}); re-export the volume with a valid header"
                                ) from None
            self._fh.limit = self.layout.offset + self.layout.data_bytes
        except DataError:
            self.close()
            raise
        except _READ_ERRORS as exc:
            self.close()
            raise DataError(f"{self.path}: unreadable ({_describe(exc)}); the file is truncated "
                            "or corrupt - re-download it") from None
        self.header = header
        self.shape: tuple[int, ...] = self.layout.shape
        if not np.isfinite(self.affine).all():
            self.close()
            raise DataError(f"{self.path}: the affine (qform/sform/pixdim) holds NaN/inf; fix "
                            "the header's voxel spacing and orientation")
        spacing = np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))
        if not (np.isfinite(spacing).all() and (spacing > 0).all()):
            self.close()
            raise DataError(f"{self.path}: voxel spacing {spacing.tolist()} mm is not finite "
                            "and > 0; fix pixdim / qform / sform in the header")
        self.spacing = tuple(float(s) for s in spacing)
        if not (np.isfinite(slope) and np.isfinite(inter)):
            self.close()
            raise DataError(f"{self.path}: scaling scl_slope={slope}, scl_inter={inter} is "
                            "not finite; fix the header's scaling")

    @property
    def stored_integers(self) -> bool:
        """True when voxels are stored as integers: :meth:`chunks` can then hand out the
        stored values (``raw=True``) and :meth:`to_physical` scales only the part a caller
        uses, exactly as nibabel would scale the whole slab."""
        return self.layout.dtype.kind in "iu" and self._fh is not None

    def to_physical(self, stored: np.ndarray) -> np.ndarray:
        """Stored values -> scaled values, bit for bit as nibabel's ``dataobj[...]`` computes
        them (``ArrayProxy._get_scaled``; the identity returns ``stored`` itself)."""
        from nibabel.volumeutils import apply_read_scaling

        slope = np.asanyarray(self._proxy.slope)
        inter = np.asanyarray(self._proxy.inter)
        if np.can_cast(inter, slope.dtype):
            inter = inter.astype(slope.dtype)
        return apply_read_scaling(stored, slope, inter)

    def chunks(self, chunk: int = CHUNK_SLICES, raw: bool = False
               ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_slice, data[:, :, first:first+chunk])`` with scaling applied
        (scl_slope / scl_inter), in stored dtype (integers) or float.

        ``raw=True`` and :attr:`stored_integers`: the stored integers, with no scaling pass;
        callers scale only what they use with :meth:`to_physical`. After the last slab the
        stream is read to its end (CRC check, at most :data:`DECOMPRESSION_SLACK` bytes past
        the declared size) and :attr:`content_sha256` is set.
        """
        nx, ny, nz = self.layout.shape
        dtype = self.layout.dtype
        direct = raw and self.stored_integers
        plane = nx * ny
        digest = hashlib.sha256(f"{self.layout.shape}|{dtype.str}|".encode())
        self._fh.seek(self.layout.offset)
        for start in range(0, nz, chunk):
            stop = min(nz, start + chunk)
            n = plane * (stop - start) * dtype.itemsize
            try:
                buf = self._fh.read(n)
            except _READ_ERRORS as exc:
                raise DataError(f"{self.path}: truncated or corrupt data at slices "
                                f"{start}-{stop - 1} ({_describe(exc)}); re-download the file"
                                ) from None
            if len(buf) != n:
                raise DataError(f"{self.path}: truncated data at slices {start}-{stop - 1} "
                                f"(expected {n} bytes, got {len(buf)}); re-download the file")
            digest.update(buf)
            data = np.frombuffer(buf, dtype=dtype).reshape((nx, ny, stop - start), order="F")
            yield start, (data if direct else self.to_physical(data))
        self._check_end()
        self.content_sha256 = digest.hexdigest()

    def _check_end(self) -> None:
        """Read the stream to its end so a truncated tail / bad CRC is still reported, and
        refuse a stream that goes on past the size the header declares (a gzip bomb)."""
        try:
            extra = 0
            while True:
                block = self._fh.read_past_limit(min(1 << 16, DECOMPRESSION_SLACK + 1 - extra))
                if not block:
                    break
                extra += len(block)
                if extra > DECOMPRESSION_SLACK:
                    raise DataError(f"{self.path}: the data go on past the "
                                    f"{self.layout.offset + self.layout.data_bytes} bytes its "
                                    f"header declares (shape {self.layout.shape}, "
                                    f"{self.layout.dtype}); the file is corrupt or not what "
                                    "it claims - re-export it")
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


def check_nifti_header(path: Path, head: bytes, limits: VolumeLimits = DEFAULT_LIMITS
                       ) -> NiftiLayout:
    """Check the 348 header bytes of a single-file NIfTI-1 volume before anything is read
    or allocated; return what it declares. Every refusal is one :class:`DataError` naming
    the file, the field and the fix."""
    from nibabel.nifti1 import header_dtype

    if len(head) < 348:
        raise DataError(f"{path}: only {len(head)} bytes, shorter than a NIfTI header; "
                        "the file is truncated - re-download it")
    size_le = struct.unpack("<i", head[:4])[0]
    size_be = struct.unpack(">i", head[:4])[0]
    if 348 not in (size_le, size_be) or head[344:348] not in (b"n+1\x00", b"ni1\x00"):
        raise DataError(f"{path}: not a NIfTI-1 file (bad header); check that the path names "
                        "a CT volume")
    if head[344:348] == b"ni1\x00":
        raise DataError(f"{path}: header magic 'ni1' declares a separate .img data file; "
                        "convert the pair to a single .nii.gz volume")
    hdr = np.frombuffer(head[:348], dtype=header_dtype.newbyteorder(
        "<" if size_le == 348 else ">"))[0]
    dim = [int(d) for d in hdr["dim"]]
    if dim[0] != 3:
        raise DataError(f"{path}: header dim {dim} is not a 3-D volume (dim[0] must be 3); "
                        "export the scan as one 3-D NIfTI volume")
    shape = (dim[1], dim[2], dim[3])
    if min(shape) < 1:
        raise DataError(f"{path}: header dimensions {shape} must all be >= 1; the header is "
                        "corrupt - re-export the volume")
    code = int(hdr["datatype"])
    if code not in _DTYPES:
        what = _DTYPE_PROBLEMS.get(code, f"code {code}")
        raise DataError(f"{path}: voxel datatype {what} is not supported; CT images and labels "
                        "must be single-channel integers or floats - convert the volume "
                        "(e.g. to int16)")
    plane = shape[0] * shape[1]
    if plane > limits.max_slice_voxels:
        raise DataError(f"{path}: header declares {shape[0]}×{shape[1]} = {plane} voxels per "
                        f"slice, more than the limit of {limits.max_slice_voxels}; if the "
                        "volume is genuine, raise max_slice_voxels (extract_features) - "
                        "otherwise the header is corrupt")
    nvox = plane * shape[2]
    if nvox > limits.max_volume_voxels:
        raise DataError(f"{path}: header declares {shape} = {nvox} voxels, more than the limit "
                        f"of {limits.max_volume_voxels}; if the volume is genuine, raise "
                        "max_volume_voxels (extract_features) - otherwise the header is corrupt")
    offset = float(hdr["vox_offset"])
    if not np.isfinite(offset) or offset < 352 or offset > MAX_HEADER_BYTES \
            or offset != int(offset):
        raise DataError(f"{path}: vox_offset {offset} is invalid (a single-file NIfTI needs "
                        f"an integer between 352 and {MAX_HEADER_BYTES}); the header is "
                        "corrupt - re-export the volume")
    pixdim = [float(v) for v in hdr["pixdim"][1:4]]
    if not all(np.isfinite(v) and v != 0 for v in pixdim):
        raise DataError(f"{path}: voxel spacing pixdim[1:4] = {pixdim} mm must be finite and "
                        "non-zero (nibabel would silently use 1 mm); fix pixdim in the header")
    slope, inter = float(hdr["scl_slope"]), float(hdr["scl_inter"])
    if slope != 0 and np.isfinite(slope) and not np.isfinite(inter):
        raise DataError(f"{path}: scl_inter {inter} is not finite (with scl_slope {slope}); "
                        "fix the header's scaling")
    dtype = np.dtype(_DTYPES[code]).newbyteorder("<" if size_le == 348 else ">")
    return NiftiLayout(shape=shape, dtype=dtype, offset=int(offset),
                       data_bytes=nvox * dtype.itemsize)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
