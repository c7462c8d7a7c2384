"""Extract the per-slice feature table of an MSD liver folder, resumably and in parallel.

One row per axial slice that contains liver (``label > 0``): ``patient_id``, ``slice_idx``,
``label``, ``lesion_mm2`` (metadata, see ``META_COLUMNS``) and the features of
``spikebench.datasets.slice_features``, computed on the liver ROI only.

Labels: a slice is positive when it holds at least ``min_lesion_voxels`` tumour voxels *and*
(with ``min_lesion_mm2``) a tumour area of at least ``min_lesion_mm2`` mm². With
``ambiguous_margin_mm2`` the negative slices whose tumour area is above zero and within that
margin below ``min_lesion_mm2`` are dropped as ambiguous (neither clearly tumour-free nor
clearly positive).

Nothing computed is lost, nothing that is not ours is touched:

* each case's rows are cached atomically in ``<out>.cache/`` under ``<hash of the case
  id>.<key>.parquet``, the key made of the feature version and the image/label files' size
  and mtime, so a rerun after Ctrl-C / SIGKILL / a bad case only computes what is missing and
  yields the same table as an uninterrupted run. Case ids never enter a glob or a file name
  (``a`` and ``a.b``, ``liver_[0]`` or ``*`` cannot touch each other's cache); a zero-byte
  or unreadable cache file counts as missing. The cache stores tumour-voxel counts and areas,
  not labels, so changing the label thresholds reuses it (see
  ``spikebench.datasets.feature_cache``);
* ``out`` (and its cache and manifest) may not alias an input: ``dataset.json``, a listed
  volume, or anything inside the folders that hold the volumes; an existing ``out`` that
  spikebench did not write is never overwritten (see ``spikebench.datasets.feature_output``);
* the same scan listed twice (a link or a copy under another name) is refused, whatever
  ``on_error`` says: it would put one patient in train and test.

The final parquet is written atomically, rows sorted by (patient id in natural order, slice
index); its pandas ``attrs["spikebench"]`` and ``<out stem>.manifest.json`` record the
extraction parameters, the skipped cases and each image's content hash.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from spikebench.datasets.crops import CropSink
from spikebench.datasets.duplicates import refuse_duplicate_scans
from spikebench.datasets.feature_cache import (
    CACHE_VERSION,
    _cache_key,
    _load_cache,
    _prepare_cache_dir,
    _remove_stale,
    case_cache_files,
    case_cache_prefix,
)
from spikebench.datasets.feature_output import (
    _check_output,
    _write,
    cache_dir_for,
    manifest_path_for,
)
from spikebench.datasets.msd import (
    DEFAULT_LIMITS,
    Case,
    VolumeLimits,
    iter_case_stored_slices,
    read_dataset_json,
)
from spikebench.datasets.slice_features import FEATURE_NAMES, FEATURES_VERSION, slice_features
from spikebench.errors import DataError
from spikebench.io import write_json, write_parquet

__all__ = [
    "CACHE_VERSION", "META_COLUMNS", "ExtractionResult", "cache_dir_for", "case_cache_files",
    "case_cache_prefix", "extract_case", "extract_features", "manifest_path_for",
    "natural_key",
]


META_COLUMNS: tuple[str, ...] = ("patient_id", "slice_idx", "label", "lesion_mm2")
"""The non-feature columns of an extracted table; every other column is a feature.
``lesion_mm2`` (tumour area in the slice, mm²) is ground-truth metadata: no model may train
on it (``load_feature_table`` keeps it out of ``X``)."""

_ON_ERROR = ("fail", "skip")


@dataclass
class ExtractionResult:
    """What ``extract_features`` did.

    Attributes
    ----------
    path : Path
        The feature table written (parquet).
    n_cases : int
        Cases whose features are in the table.
    n_rows : int
        Rows of the table: one per liver slice.
    n_positive : int
        Rows labelled as lesion slices.
    skipped : list of (str, str)
        ``(patient id, reason)`` of every case left out under ``on_error="skip"``.
    seconds : float
        Wall time of the whole extraction.
    read_seconds : float
        Part of it spent reading and decompressing volumes.
    cached_cases : int
        Cases taken from the per-case cache instead of being read again.
    manifest : Path or None
        The manifest listing skipped cases (``<table>.manifest.json``), when there is one.
    n_ambiguous_dropped : int
        Negative slices dropped as ambiguous (``ambiguous_margin_mm2``).
    parameters : dict
        The labelling parameters recorded in the table's metadata and manifest.
    """

    path: Path
    n_cases: int
    n_rows: int
    n_positive: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    read_seconds: float = 0.0
    cached_cases: int = 0
    manifest: Path | None = None
    n_ambiguous_dropped: int = 0
    parameters: dict[str, Any] = field(default_factory=dict)


def natural_key(text: str) -> tuple:
    """Sort key putting ``liver_2`` before ``liver_10``."""
    return tuple((0, int(tok), "") if tok.isdigit() else (1, 0, tok)
                 for tok in re.split(r"(\d+)", text) if tok)


def extract_features(root: str | Path, out: str | Path, *, workers: int = 1,
                     min_lesion_voxels: int = 1, on_error: str = "fail",
                     progress: bool = False, min_lesion_mm2: float | None = None,
                     ambiguous_margin_mm2: float | None = None,
                     max_slice_voxels: int = DEFAULT_LIMITS.max_slice_voxels,
                     max_volume_voxels: int = DEFAULT_LIMITS.max_volume_voxels,
                     crops: tuple[Path, Any] | None = None,
                     ) -> ExtractionResult:
    """Write the feature table of every training case of an MSD-layout folder.

    One row per liver slice (ROI = the liver label as a whole, ``label > 0``): ``patient_id``,
    ``slice_idx``, ``label`` (lesion slice or not) and the features, computed on the liver ROI
    only. Features are cached per case, so an interrupted extraction resumes where it stopped.

    Parameters
    ----------
    root : str or Path
        The folder holding ``dataset.json`` (the release, or ``write_phantom``'s output).
    out : str or Path
        The feature table to write (parquet); never overwrites a file spikebench did not
        write.
    workers : int, default 1
        Processes reading volumes in parallel (forked on Linux, one numpy thread each, fed
        the largest cases first).
    min_lesion_voxels : int, default 1
        Tumour voxels a slice needs to be a lesion slice.
    on_error : {"fail", "skip"}, default "fail"
        ``"fail"`` raises the first bad case's ``DataError``; ``"skip"`` carries on and lists
        each skipped case and its reason in the manifest and in the result.
    progress : bool, default False
        Show a progress bar.
    min_lesion_mm2 : float, optional
        Tumour area (mm²) a slice also needs to be a lesion slice.
    ambiguous_margin_mm2 : float, optional
        Drop the negative slices whose tumour area lies within this margin below
        ``min_lesion_mm2`` (neither clearly tumour-free nor clearly positive).
    max_slice_voxels, max_volume_voxels : int
        Bounds on what a volume header may declare, checked before anything is allocated.
    crops : tuple of (Path, CropSettings), optional
        Also cut each case's liver crops in the same read of its volumes and cache them in
        that folder (what ``spikebench.datasets.crops.extract_crops`` would write).

    Returns
    -------
    ExtractionResult
        The table's path, counts, skipped cases and timings.

    Raises
    ------
    DataError
        A bad case (under ``on_error="fail"``), a problem with ``dataset.json`` itself, the
        same scan under two names, or an argument out of range.
    OutputError
        ``out`` cannot be written.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from spikebench.datasets.phantom import write_phantom
    >>> from spikebench.datasets.features import extract_features
    >>> tmp = Path(tempfile.mkdtemp())
    >>> data = write_phantom(tmp / "phantom", cases=2, test_cases=0, shape=(32, 32),
    ...                      slices=(6, 6))
    >>> result = extract_features(data, tmp / "features.parquet")
    >>> result.n_cases, result.n_rows == len(__import__("pandas").read_parquet(result.path))
    (2, True)
    """
    t0 = time.perf_counter()
    _check_arguments(on_error, workers, min_lesion_voxels)
    min_lesion_mm2, ambiguous_margin_mm2 = _label_areas(min_lesion_mm2, ambiguous_margin_mm2)
    limits = VolumeLimits(max_slice_voxels, max_volume_voxels)
    root, out = Path(root), Path(out)
    all_cases = read_dataset_json(root)
    cases = _labelled_cases(root, all_cases)
    cache = cache_dir_for(out)
    _check_output_path(root, out, all_cases)
    _prepare_cache_dir(cache)
    key_of = {case.patient_id: _cache_key(case) for case in cases}
    jobs = [(case, cache / f"{case_cache_prefix(case.patient_id)}.{key_of[case.patient_id]}"
             ".parquet") for case in cases]

    frames, todo = _split_cached(jobs)
    skipped: list[tuple[str, str]] = []
    read_seconds = 0.0
    cached = len(frames)

    def record(pid: str, status: str, payload: str, seconds: float) -> None:
        nonlocal read_seconds
        read_seconds += seconds
        if status == "ok":
            frame = _load_cache(Path(payload), pid)
            if frame is None:
                raise DataError(f"{payload}: the cache file just written for {pid!r} cannot be "
                                "read back; check the disk holding the output folder")
            frames[pid] = frame
        elif on_error == "skip":
            skipped.append((pid, payload))
        else:
            raise DataError(payload)

    bar = _progress_bar(progress, len(jobs), cached)
    try:
        _run_jobs(todo, workers, record, bar, limits, crops)
    finally:
        if bar is not None:
            bar.close()

    refuse_duplicate_scans(root, cases, frames)
    done = [c for c, _ in jobs if c.patient_id in frames]
    if not done:
        raise DataError(f"{root}: every case was skipped ({len(skipped)}); see "
                        f"{manifest_path_for(out)} - nothing to extract")
    table, n_ambiguous = _label_rows([frames[c.patient_id] for c in done], min_lesion_voxels,
                                     min_lesion_mm2, ambiguous_margin_mm2)
    skipped.sort(key=lambda item: natural_key(item[0]))
    parameters = {
        "features_version": FEATURES_VERSION, "min_lesion_voxels": min_lesion_voxels,
        "min_lesion_mm2": min_lesion_mm2, "ambiguous_margin_mm2": ambiguous_margin_mm2,
        "max_slice_voxels": limits.max_slice_voxels,
        "max_volume_voxels": limits.max_volume_voxels,
    }
    hashes = {c.patient_id: str(frames[c.patient_id]["image_sha256"].iat[0]) for c in done}
    record_ = {"root": str(root), "out": str(out), **parameters, "n_cases": len(done),
               "n_ambiguous_dropped": n_ambiguous, "on_error": on_error,
               "skipped": [{"patient_id": p, "reason": r} for p, r in skipped],
               "image_sha256": hashes}
    table.attrs["spikebench"] = {"kind": "extracted_features", **record_}
    manifest = manifest_path_for(out)
    # unchanged values are not rewritten: a study resumed through another spelling of its
    # folder (or on another machine) leaves its files as they are
    if not _same_table(out, table):
        _write(out, lambda: write_parquet(out, table))
    if not _same_record(manifest, {"spikebench_manifest": 1, **record_}):
        _write(manifest, lambda: write_json(manifest, {"spikebench_manifest": 1, **record_}))
    return ExtractionResult(path=out, n_cases=len(done), n_rows=len(table),
                            n_positive=int(table["label"].sum()), skipped=skipped,
                            seconds=time.perf_counter() - t0, read_seconds=read_seconds,
                            cached_cases=cached, manifest=manifest,
                            n_ambiguous_dropped=n_ambiguous, parameters=parameters)


#: Record keys that only say where the extraction ran: not a change of the table.
_PATH_KEYS = ("root", "out")


def _without_paths(record: Any) -> Any:
    return ({k: v for k, v in record.items() if k not in _PATH_KEYS}
            if isinstance(record, dict) else record)


def _same_table(out: Path, table: Any) -> bool:
    """``out`` already holds ``table``: the same values and the same record but for paths."""
    import pandas as pd

    try:
        old = pd.read_parquet(out)
    except Exception:  # absent, torn or foreign: write it
        return False
    return (old.equals(table) and list(old.columns) == list(table.columns)
            and _without_paths(old.attrs.get("spikebench"))
            == _without_paths(json.loads(json.dumps(table.attrs["spikebench"], default=str))))


def _same_record(path: Path, record: dict[str, Any]) -> bool:
    """The JSON file ``path`` already says ``record`` (but for paths)."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return _without_paths(old) == _without_paths(json.loads(json.dumps(record, default=str)))


def _check_arguments(on_error: str, workers: int, min_lesion_voxels: int) -> None:
    """Refuse an unknown ``on_error`` and non-integer or < 1 counts."""
    if on_error not in _ON_ERROR:
        raise DataError(f"on_error={on_error!r}: use 'fail' or 'skip'")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise DataError(f"workers={workers!r}: must be an integer >= 1")
    if (isinstance(min_lesion_voxels, bool) or not isinstance(min_lesion_voxels, int)
            or min_lesion_voxels < 1):
        raise DataError(f"min_lesion_voxels={min_lesion_voxels!r}: must be an integer >= 1")


def _label_areas(min_lesion_mm2: float | None, ambiguous_margin_mm2: float | None
                 ) -> tuple[float | None, float | None]:
    """The area thresholds as floats (or ``None``); a margin needs a threshold below it."""
    min_lesion_mm2 = _positive_area("min_lesion_mm2", min_lesion_mm2)
    ambiguous_margin_mm2 = _positive_area("ambiguous_margin_mm2", ambiguous_margin_mm2)
    if ambiguous_margin_mm2 is not None and min_lesion_mm2 is None:
        raise DataError("ambiguous_margin_mm2 needs min_lesion_mm2: the margin lies below that "
                        "threshold; pass both or neither")
    return min_lesion_mm2, ambiguous_margin_mm2


def _labelled_cases(root: Path, all_cases: list[Case]) -> list[Case]:
    """The training cases (with a label); refuse a dataset.json listing none."""
    cases = [c for c in all_cases if c.label is not None]
    if not cases:
        raise DataError(f"{root / 'dataset.json'}: 'training' lists no cases")
    return cases


def _check_output_path(root: Path, out: Path, all_cases: list[Case]) -> None:
    """``_check_output``, with an OS refusal to inspect the path as one DataError."""
    try:
        _check_output(root, out, all_cases)
    except OSError as exc:
        raise DataError(f"{out}: cannot use this output path ({type(exc).__name__}: "
                        f"{exc.strerror or exc}); choose a shorter, accessible file path"
                        ) from None


def _split_cached(jobs: list[tuple[Case, Path]]
                  ) -> tuple[dict[str, Any], list[tuple[Case, Path]]]:
    """The frames of the cases already cached, and the jobs still to compute."""
    frames: dict[str, Any] = {}
    todo = []
    for case, path in jobs:
        frame = _load_cache(path, case.patient_id)
        if frame is None:
            todo.append((case, path))
        else:
            frames[case.patient_id] = frame
    return frames, todo


def _progress_bar(progress: bool, total: int, initial: int):
    """A tqdm bar over the cases when ``progress`` is set, else ``None``."""
    if not progress:
        return None
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (CI logs, files)
    return tqdm(total=total, initial=initial, desc="extract", unit="case", disable=None)


def _positive_area(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise DataError(f"{name}={value!r}: must be a finite number of mm² > 0 (or None)")
    return float(value)


def _label_rows(frames: list, min_voxels: int, min_mm2: float | None, margin: float | None):
    """Concatenate cached case frames, label each slice, drop ambiguous ones, sort rows."""
    import pandas as pd

    table = pd.concat(frames, ignore_index=True)
    tumour = table.pop("tumour_voxels").to_numpy()
    area = table["lesion_mm2"].to_numpy()
    positive = tumour >= min_voxels
    if min_mm2 is not None:
        positive &= area >= min_mm2
    table["label"] = positive.astype("int64")
    n_ambiguous = 0
    if margin is not None and min_mm2 is not None:  # a margin comes with a threshold
        ambiguous = ~positive & (area > 0) & (area > min_mm2 - margin)
        n_ambiguous = int(ambiguous.sum())
        table = table[~ambiguous]
    table = table[[*META_COLUMNS, *FEATURE_NAMES]]
    order = sorted(range(len(table)), key=lambda i: (natural_key(table["patient_id"].iat[i]),
                                                     int(table["slice_idx"].iat[i])))
    return table.iloc[order].reset_index(drop=True), n_ambiguous


# ---------------------------------------------------------------------------- workers


def _run_jobs(todo: list[tuple[Case, Path]], workers: int,
              record: Callable[[str, str, str, float], None], bar,
              limits: VolumeLimits = DEFAULT_LIMITS, crops: tuple[Path, Any] | None = None
              ) -> None:
    from spikebench.datasets.case_pool import map_cases

    map_cases(extract_case, [(case, path, limits, crops) for case, path in todo], workers,
              lambda result: record(*result), image_of=lambda job: job[0].image, bar=bar)


def extract_case(case: Case, cache_path: Path, limits: VolumeLimits = DEFAULT_LIMITS,
                 crops: tuple[Path, Any] | None = None) -> tuple[str, str, str, float]:
    """Compute and cache one case (and, with ``crops = (folder, CropSettings)``, its crops in
    the same read); returns ``(patient_id, "ok", cache path, read seconds)`` or
    ``(patient_id, "error", message, read seconds)`` for a ``DataError`` in the case's
    files. A failure to write the cache raises (it is not the case's fault)."""
    # Hostile values overflow silently here and are refused by the finiteness checks below,
    # with a message naming the file, instead of numpy's RuntimeWarnings.
    with np.errstate(all="ignore"):
        return _extract_case(case, cache_path, limits, CropSink.open(case, crops))


def _extract_case(case: Case, cache_path: Path, limits: VolumeLimits,
                  sink: CropSink | None = None) -> tuple[str, str, str, float]:
    import pandas as pd

    rows, idx, tumour = [], [], []
    read_s = 0.0
    info: dict[str, Any] = {}
    spacing = (1.0, 1.0)
    try:
        it = iter_case_stored_slices(case, limits=limits, info=info)
        while True:
            t = time.perf_counter()
            try:
                k, stored, lab, spacing, to_hu = next(it)
            except StopIteration:
                read_s += time.perf_counter() - t
                break
            read_s += time.perf_counter() - t
            roi = lab > 0
            if not roi.any():
                continue
            row = slice_features(stored, roi, spacing, to_hu=to_hu)
            _check_finite_features(case, k, row)
            if sink is not None:
                sink.add(k, stored, roi, spacing, to_hu)
            rows.append(row)
            idx.append(k)
            tumour.append(int(np.count_nonzero(lab == 2)))
        area = np.asarray(tumour, dtype=np.float64) * (spacing[0] * spacing[1])
        if not np.isfinite(area.astype(np.float32)).all():
            raise DataError(f"{case.image}: tumour areas overflow with voxel spacing "
                            f"{spacing} mm; fix pixdim / qform / sform in the header")
    except DataError as exc:
        return case.patient_id, "error", str(exc), read_s
    frame = pd.DataFrame(np.vstack(rows), columns=list(FEATURE_NAMES))
    frame.insert(0, "image_sha256", info["image_sha256"])
    frame.insert(0, "lesion_mm2", area)
    frame.insert(0, "tumour_voxels", np.asarray(tumour, dtype=np.int64))
    frame.insert(0, "slice_idx", np.asarray(idx, dtype=np.int64))
    frame.insert(0, "patient_id", case.patient_id)
    if sink is not None:
        sink.close()
    _write(cache_path, lambda: write_parquet(cache_path, frame))
    _remove_stale(cache_path, case.patient_id)
    return case.patient_id, "ok", str(cache_path), read_s


def _check_finite_features(case: Case, k: int, row: np.ndarray) -> None:
    """Features must be finite in float64 and in the float32 the models train on."""
    bad = ~np.isfinite(row) | ~np.isfinite(row.astype(np.float32))
    if bad.any():
        names = [FEATURE_NAMES[j] for j in np.flatnonzero(bad)][:6]
        raise DataError(f"{case.image}: slice {k} gives non-finite features {names} (float32); "
                        "the volume's values or spacing are extreme - check scl_slope / "
                        "scl_inter and pixdim in the header, or exclude the case")

