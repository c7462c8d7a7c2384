"""Read one NIfTI-1 volume safely: header checks, volume limits and bounded voxel reading.

:func:`check_nifti_header` checks the 348 header bytes (a 3-D single-channel volume within
:class:`VolumeLimits`, a sane ``vox_offset`` and scaling) before anything is allocated;
:class:`Volume` then streams the voxel data a slab of slices at a time through a reader
capped at the size the header declares, so a hostile header or a gzip bomb can never make
the reader allocate more than the limits allow. Every refusal is one
:class:`~spikebench.errors.DataError` naming the file.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from spikebench.errors import DataError

CHUNK_SLICES = 16
"""Slices decoded per read: 512×512×16 float32 is 16 MB, whatever the volume's length."""

_READ_ERRORS = (OSError, EOFError, zlib.error, ValueError, struct.error)

_gzip_module: ModuleType  # igzip or gzip: the same API
try:  # isal's igzip is a drop-in, ~3x faster gzip.GzipFile; fall back to the stdlib one.
    from isal import igzip as _gzip_module

    FAST_GZIP = True
except ImportError:  # pragma: no cover - depends on the environment
    _gzip_module = gzip
    FAST_GZIP = False


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
