"""The per-case cache of the feature extraction: ``<out>.cache/<case hash>.<key>.parquet``.

The key is made of the feature and cache versions and the image/label files' name, size and
mtime, so a changed file or feature set is recomputed and a rerun after an interruption only
computes what is missing. Case ids never enter a glob or a file name; a zero-byte, torn or
foreign cache file counts as missing (:func:`_load_cache` returns ``None``).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np

from spikebench.datasets.feature_output import _write, cache_dir_for
from spikebench.datasets.msd import Case, file_signature
from spikebench.datasets.slice_features import FEATURE_NAMES, FEATURES_VERSION
from spikebench.errors import DataError

CACHE_VERSION = "2"
"""Layout of the per-case cache files; part of every cache key."""

_CACHE_META = ("patient_id", "slice_idx", "tumour_voxels", "lesion_mm2", "image_sha256")


def case_cache_prefix(patient_id: str) -> str:
    """The file-name prefix of a case's cache entries: a hash of the case id, so any id
    (``a.b``, ``liver_[0]``, ``*``, 250 characters) gives a short, glob-free, unique name."""
    return hashlib.sha256(patient_id.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def case_cache_files(out: str | Path, patient_id: str) -> list[Path]:
    """The cache files of one case of the table ``out`` (normally one)."""
    prefix = case_cache_prefix(patient_id)
    folder = cache_dir_for(out)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.name.startswith(prefix + ".") and p.name.endswith(".parquet"))


def _prepare_cache_dir(cache: Path) -> None:
    """Create the cache folder and prove it is writable before any work is done."""
    def probe() -> None:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache):
            pass

    if cache.exists() and not cache.is_dir():
        raise DataError(f"{cache}: exists and is not a folder; the extraction keeps its per-case "
                        "cache there - remove that file or choose another output path")
    _write(cache, probe)


def _load_cache(path: Path, patient_id: str):
    """A case's cached rows, or ``None`` when the file is absent, empty, unreadable or not
    what this version writes (then the case is recomputed, never counted as done)."""
    import pandas as pd

    try:
        if not path.is_file() or path.stat().st_size == 0:
            return None
        frame = pd.read_parquet(path)
    except Exception:  # a torn or foreign file: recompute
        return None
    if (list(frame.columns) != [*_CACHE_META, *FEATURE_NAMES] or len(frame) == 0
            or not (frame["patient_id"] == patient_id).all()
            or frame["image_sha256"].nunique() != 1):
        return None
    values = frame[list(FEATURE_NAMES)].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        return None
    return frame


def _remove_stale(cache_path: Path, patient_id: str) -> None:
    """Delete the older keys of this case only (prefix match, no glob)."""
    prefix = case_cache_prefix(patient_id) + "."
    for stale in cache_path.parent.iterdir():  # older keys of this case only: no glob
        if stale.name.startswith(prefix) and stale.name.endswith(".parquet") \
                and stale != cache_path:
            stale.unlink(missing_ok=True)


def _cache_key(case: Case) -> str:
    assert case.label is not None
    parts = {"version": FEATURES_VERSION, "cache": CACHE_VERSION,
             "features": list(FEATURE_NAMES),
             "image": [case.image.name, _signature(case.image)],
             "label": [case.label.name, _signature(case.label)]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _signature(path: Path) -> str:
    try:
        return file_signature(path)
    except OSError:
        return "missing"
