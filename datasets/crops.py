"""The image view: a fixed-size crop around the liver ROI of every liver slice, cached per case.

One crop per axial slice that contains liver (``label > 0``), exactly the slices the feature
table holds, in the same stored order, so both tracks share patients, slice labels and splits.
For a slice with ROI bounding box centre ``c`` (voxels) and in-plane spacing ``(dx, dy)`` mm,
output pixel ``(i, j)`` of an ``S × S`` crop at spacing ``s`` mm samples the slice (bilinear,
air = -1024 HU outside the scan) at::

    voxel = c + ((i - (S-1)/2) s / dx,  (j - (S-1)/2) s / dy)

and stores the HU value windowed to ``[lo, hi]`` (default ``[-100, 250]``, the features'
window) as ``uint8``: ``round(255 · clip((HU - lo) / (hi - lo), 0, 1))`` (1.4 HU per level,
well below CT noise). The crop is centred on the whole ROI (liver and tumour alike, never on the
tumour: the tumour label is not read) and resampled to the fixed spacing, so one pixel is the
same physical size for every patient. Flipped affines mirror the crop (the stored orientation
is kept, as for the features).

Cache discipline (as :mod:`spikebench.datasets.feature_cache`): each case is written atomically
(:mod:`spikebench.io`) as two files in the cache folder, ``<hash of case id>.<key>.npy``
(``uint8 [n, S, S]``) and ``<hash>.<key>.slices.npy`` (``int64 [n]`` stored slice indices),
``key`` hashing the crop version, the crop parameters and the image/label files' names, sizes
and mtimes. A torn, empty or inconsistent pair counts as missing and is recomputed; older keys
of the same case are removed; case ids never enter a file name or a glob.

At training time :class:`ImageRows` reads rows lazily from memory-mapped case files: the cohort
is never held in RAM, only the rows a batch asks for.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spikebench.errors import DataError

CROPS_VERSION = "1"
"""Bump when the crop definition changes: part of every cache key."""

AIR_HU = -1024.0


@dataclasses.dataclass(frozen=True)
class CropSettings:
    """Crop size in pixels, pixel spacing in mm and the HU window mapped to 0..255."""

    size: int = 64
    spacing_mm: float = 3.0
    window: tuple[float, float] = (-100.0, 250.0)

    def __post_init__(self) -> None:
        if not 8 <= int(self.size) <= 512:
            raise DataError(f"crop = {self.size}: must be between 8 and 512 pixels")
        if not 0 < float(self.spacing_mm) <= 20:
            raise DataError(f"crop_spacing_mm = {self.spacing_mm}: must be in (0, 20] mm")
        lo, hi = self.window
        if not hi > lo:
            raise DataError(f"crop window {self.window}: the upper HU must exceed the lower")

    def record(self) -> dict[str, Any]:
        return {"size": int(self.size), "spacing_mm": float(self.spacing_mm),
                "window": [float(v) for v in self.window], "version": CROPS_VERSION}


def crop_slice(stored: np.ndarray, roi: np.ndarray, spacing: tuple[float, float], to_hu: Any,
               settings: CropSettings) -> np.ndarray:
    """The ``uint8 [S, S]`` crop of one slice (module docstring); ``stored`` maps to HU through
    ``to_hu``, applied only to the part of the slice the crop samples."""
    from scipy import ndimage

    size, step = int(settings.size), float(settings.spacing_mm)
    rows, cols = np.flatnonzero(roi.any(axis=1)), np.flatnonzero(roi.any(axis=0))
    centre = ((rows[0] + rows[-1]) / 2.0, (cols[0] + cols[-1]) / 2.0)
    offsets = (np.arange(size) - (size - 1) / 2.0) * step
    ci = centre[0] + offsets / float(spacing[0])
    cj = centre[1] + offsets / float(spacing[1])
    r0, r1 = max(int(np.floor(ci.min())) - 1, 0), min(int(np.ceil(ci.max())) + 2, roi.shape[0])
    c0, c1 = max(int(np.floor(cj.min())) - 1, 0), min(int(np.ceil(cj.max())) + 2, roi.shape[1])
    out_u8 = np.zeros((size, size), dtype=np.uint8)
    if r0 >= r1 or c0 >= c1:
        return out_u8
    hu = np.asarray(to_hu(stored[r0:r1, c0:c1]), dtype=np.float32)
    grid = np.meshgrid(ci - r0, cj - c0, indexing="ij")
    sampled = ndimage.map_coordinates(hu, grid, order=1, mode="constant", cval=AIR_HU)
    lo, hi = settings.window
    scaled = np.clip((sampled.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)
    np.rint(scaled * 255.0, out=scaled)
    out_u8[...] = scaled.astype(np.uint8)
    return out_u8


def case_crops(case: Any, settings: CropSettings, limits: Any = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """``(crops uint8 [n, S, S], slice indices int64 [n])`` of every liver slice of ``case``."""
    from spikebench.datasets.msd import DEFAULT_LIMITS, iter_case_stored_slices

    crops, idx = [], []
    with np.errstate(all="ignore"):
        for k, stored, lab, spacing, to_hu in iter_case_stored_slices(
                case, limits=limits or DEFAULT_LIMITS):
            roi = lab > 0
            if roi.any():
                crops.append(crop_slice(stored, roi, spacing, to_hu, settings))
                idx.append(k)
    size = int(settings.size)
    data = np.stack(crops) if crops else np.zeros((0, size, size), dtype=np.uint8)
    return data, np.asarray(idx, dtype=np.int64)


# ---------------------------------------------------------------------------- cache


@dataclasses.dataclass(frozen=True)
class CaseCrops:
    """Where one case's crops live: the ``uint8 [n, S, S]`` file and its slice indices."""

    patient_id: str
    path: Path
    slices: np.ndarray


def settings_key(settings: CropSettings) -> str:
    """Hash of the crop version and parameters: the part of a cache file's name that lets
    crops of other settings (another study sharing the cache) live beside these."""
    return hashlib.sha256(json.dumps(settings.record(), sort_keys=True).encode()
                          ).hexdigest()[:12]


def crop_cache_key(case: Any, settings: CropSettings) -> str:
    """Hash of the crop version and parameters and the image/label files' identity."""
    from spikebench.datasets.msd import file_signature

    def signature(path: Path) -> str:
        try:
            return file_signature(path)
        except OSError:
            return "missing"

    parts = {"crops": settings.record(), "image": [case.image.name, signature(case.image)],
             "label": [case.label.name, signature(case.label)]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def _load_cached(path: Path, slices_path: Path, size: int) -> np.ndarray | None:
    """The cached slice indices when both files are present and consistent, else ``None``."""
    try:
        if not path.is_file() or not slices_path.is_file():
            return None
        slices = np.load(slices_path, allow_pickle=False)
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):  # torn or foreign file: recompute
        return None
    if (data.dtype != np.uint8 or data.ndim != 3 or data.shape[1:] != (size, size)
            or slices.dtype != np.int64 or slices.shape != (data.shape[0],) or len(slices) == 0
            or np.any(np.diff(slices) <= 0)):
        return None
    return slices


def _remove_stale(folder: Path, prefix: str, keep: str) -> None:
    """Delete this case's files of these settings with other keys — older versions of its
    volumes — (prefix match, never a glob); crops of other settings are left alone."""
    for stale in folder.iterdir():
        name = stale.name
        if name.startswith(prefix + ".") and name.endswith(".npy") and not name.startswith(keep):
            stale.unlink(missing_ok=True)


def extract_crops(cases: Sequence[Any], cache: str | Path, settings: CropSettings, *,
                  workers: int = 1, progress: bool = False) -> dict[str, CaseCrops]:
    """Crop every case in ``cases`` into the folder ``cache`` (reusing valid cache files);
    returns ``{patient_id: CaseCrops}`` in the order of ``cases``. ``workers > 1`` crops in a
    process pool, as feature extraction does. A case that cannot be read raises its
    DataError."""
    from spikebench.datasets.case_pool import map_cases

    folder = Path(cache)
    folder.mkdir(parents=True, exist_ok=True)
    items = list(cases)
    done: dict[str, CaseCrops] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(items), desc="crops", unit="case", disable=None)
    try:
        map_cases(crop_case_cached, [(case, folder, settings) for case in items], workers,
                  lambda crops: done.__setitem__(crops.patient_id, crops),
                  image_of=lambda job: job[0].image, bar=bar)
    finally:
        if bar is not None:
            bar.close()
    return {case.patient_id: done[case.patient_id] for case in items}


def crop_case_cached(case: Any, folder: Path, settings: CropSettings) -> CaseCrops:
    """One case's crops from ``folder``'s cache when valid, else cropped and cached there."""
    found = cached_crops(case, folder, settings)
    if found is not None:
        return found
    data, slices = case_crops(case, settings)
    return store_crops(case, folder, settings, data, slices)


def _cache_paths(case: Any, folder: Path, settings: CropSettings) -> tuple[str, Path, Path]:
    """``(case prefix, crops file, slice-index file)`` of ``case`` in ``folder``."""
    from spikebench.datasets.feature_cache import case_cache_prefix

    prefix = f"{case_cache_prefix(case.patient_id)}.{settings_key(settings)}"
    stem = f"{prefix}.{crop_cache_key(case, settings)}"
    return prefix, folder / f"{stem}.npy", folder / f"{stem}.slices.npy"


def cached_crops(case: Any, folder: Path, settings: CropSettings) -> CaseCrops | None:
    """``case``'s crops in ``folder`` when both files are present and valid, else ``None``."""
    _, path, slices_path = _cache_paths(case, folder, settings)
    slices = _load_cached(path, slices_path, int(settings.size))
    return None if slices is None else CaseCrops(case.patient_id, path, slices)


def store_crops(case: Any, folder: Path, settings: CropSettings, data: np.ndarray,
                slices: np.ndarray) -> CaseCrops:
    """Cache ``case``'s crops (``uint8 [n, S, S]``, slice indices ``[n]``) in ``folder``
    atomically, removing its files of other settings or file versions."""
    from spikebench.io import atomic_write_bytes

    if len(slices) == 0:
        raise DataError(f"{case.label}: no liver slice to crop (label > 0 is empty)")
    prefix, path, slices_path = _cache_paths(case, folder, settings)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(slices_path, _npy_bytes(slices))
    atomic_write_bytes(path, _npy_bytes(data))
    _remove_stale(folder, prefix, path.name.removesuffix(".npy"))
    return CaseCrops(case.patient_id, path, slices)


class CropSink:
    """A case's crops collected during another pass over its slices (feature extraction reads
    each volume once for both) and cached at the end, as :func:`crop_case_cached` would."""

    def __init__(self, case: Any, folder: Path, settings: CropSettings) -> None:
        self.case, self.folder, self.settings = case, Path(folder), settings
        self.images: list[np.ndarray] = []
        self.slices: list[int] = []

    @classmethod
    def open(cls, case: Any, crops: tuple[Path, CropSettings] | None) -> CropSink | None:
        """A sink when crops ``(folder, settings)`` are asked for and not already cached."""
        if crops is None:
            return None
        folder, settings = crops
        return None if cached_crops(case, Path(folder), settings) else cls(case, folder, settings)

    def add(self, k: int, stored: np.ndarray, roi: np.ndarray, spacing: tuple[float, float],
            to_hu: Any) -> None:
        """Crop slice ``k`` (its stored values, liver mask, spacing and HU mapping)."""
        self.images.append(crop_slice(stored, roi, spacing, to_hu, self.settings))
        self.slices.append(k)

    def close(self) -> None:
        """Cache the crops (nothing without a liver slice: the crop pass then reports it,
        naming the file)."""
        if self.images:
            store_crops(self.case, self.folder, self.settings, np.stack(self.images),
                        np.asarray(self.slices, dtype=np.int64))


# ---------------------------------------------------------------------------- lazy rows


class ImageRows:
    """A lazy ``[n, 1, S, S]`` float32 view of crop rows: ``(u8 / 255 - offset) / scale``.

    Backed by memory-mapped per-case files (opened on first use, never loaded whole) or, for
    tests and the conformance kit, by in-memory blocks. ``rows[index]`` (an int, slice, integer
    array or boolean mask) *reads* those rows into a new float32 array; :meth:`rows` returns a
    lazy sub-view. :attr:`groups` holds each row's patient id (a multiple-instance rule reads a
    patient's bag from it). Pickles without its open memory maps.
    """

    def __init__(self, blocks: Sequence[Path | np.ndarray], block: np.ndarray,
                 index: np.ndarray, groups: np.ndarray, size: int, *, offset: float = 0.0,
                 scale: float = 1.0) -> None:
        self.blocks = tuple(blocks)
        self.block = np.asarray(block, dtype=np.int64)
        self.index = np.asarray(index, dtype=np.int64)
        self.groups = np.asarray(groups)
        self.size, self.offset, self.scale = int(size), float(offset), float(scale)
        self._open: dict[int, np.ndarray] = {}

    @classmethod
    def from_array(cls, images: np.ndarray, groups: Sequence[Any]) -> ImageRows:
        """In-memory rows from ``uint8 [n, S, S]`` crops (tests, synthetic problems)."""
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise DataError("ImageRows.from_array needs uint8 crops shaped [n, S, S]")
        n = len(images)
        return cls([images], np.zeros(n, np.int64), np.arange(n), np.asarray(groups),
                   images.shape[1])

    # -- array-like surface
    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.index), 1, self.size, self.size)

    ndim = 4
    dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_open"] = {}
        return state

    def _data(self, b: int) -> np.ndarray:
        source = self.blocks[b]
        if isinstance(source, np.ndarray):
            return source
        if b not in self._open:
            try:
                self._open[b] = np.load(source, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:  # removed or damaged since it was listed
                raise DataError(f"{source}: crop file unreadable ({exc}); another process "
                                "removed or damaged it - rerun the same command to crop it "
                                "again") from None
        return self._open[b]

    def _positions(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return np.arange(len(self))[[int(key)]]
        return np.arange(len(self))[key]

    def __getitem__(self, key: Any) -> np.ndarray:
        single = isinstance(key, (int, np.integer))
        pos = self._positions(key)
        out = np.empty((len(pos), 1, self.size, self.size), dtype=np.float32)
        blocks, idx = self.block[pos], self.index[pos]
        for b in np.unique(blocks):
            where = np.flatnonzero(blocks == b)
            wanted = idx[where]
            order = np.argsort(wanted, kind="stable")  # ascending reads from the map
            raw = self._data(int(b))[wanted[order]]
            out[where[order], 0] = raw
        out *= np.float32(1.0 / 255.0)
        if self.offset != 0.0 or self.scale != 1.0:
            out -= np.float32(self.offset)
            out /= np.float32(self.scale)
        return out[0] if single else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        data = self[:]
        return data if dtype is None else data.astype(dtype)

    # -- lazy views
    def rows(self, key: Any) -> ImageRows:
        """A lazy view of the selected rows (same backing files, same scaling)."""
        pos = self._positions(key)
        view = ImageRows(self.blocks, self.block[pos], self.index[pos], self.groups[pos],
                         self.size, offset=self.offset, scale=self.scale)
        view._open = self._open
        return view

    def standardised(self, offset: float, scale: float) -> ImageRows:
        """The same rows read as ``(u8 / 255 - offset) / scale``."""
        view = self.rows(slice(None))
        view.offset, view.scale = float(offset), float(scale) if scale > 1e-12 else 1.0
        return view

    def pixel_stats(self, chunk: int = 512) -> tuple[float, float]:
        """Mean and standard deviation of every pixel of these rows (read in chunks)."""
        total = total_sq = 0.0
        count = 0
        for start in range(0, len(self), chunk):
            block = self[start:start + chunk].astype(np.float64)
            total += float(block.sum())
            total_sq += float(np.square(block).sum())
            count += block.size
        if count == 0:
            return 0.0, 1.0
        mean = total / count
        return mean, float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))


def image_rows(crops: dict[str, CaseCrops], groups: np.ndarray, slice_idx: np.ndarray,
               size: int) -> ImageRows:
    """Rows aligned with a feature table's ``(patient_id, slice_idx)`` rows; a row whose crop
    is missing is one :class:`DataError` naming the patient and slice."""
    pids = sorted(crops)
    files = [crops[p].path for p in pids]
    number = {p: i for i, p in enumerate(pids)}
    groups = np.asarray(groups).astype(str)
    block = np.empty(len(groups), dtype=np.int64)
    index = np.empty(len(groups), dtype=np.int64)
    for pid in np.unique(groups):
        rows = np.flatnonzero(groups == pid)
        if pid not in crops:
            raise DataError(f"patient {pid!r}: no image crops were extracted for it")
        known = crops[pid].slices
        wanted = np.asarray(slice_idx)[rows].astype(np.int64)
        at = np.clip(np.searchsorted(known, wanted), 0, len(known) - 1)
        bad = known[at] != wanted
        if bad.any():
            raise DataError(f"patient {pid!r}: slice {int(wanted[bad][0])} of the feature "
                            "table has no crop (the crop cache disagrees with the table; "
                            "delete the images folder of the results' data folder)")
        block[rows], index[rows] = number[pid], at
    return ImageRows(files, block, index, groups, size)


__all__ = ["CROPS_VERSION", "CaseCrops", "CropSettings", "ImageRows", "case_crops",
           "crop_cache_key", "crop_slice", "extract_crops", "image_rows"]
