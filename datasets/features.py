"""Extract the per-slice feature table of an MSD liver folder, resumably and in parallel.

One row per axial slice that contains liver (``label > 0``): ``patient_id``, ``slice_idx``,
``label`` (1 when the slice holds at least ``min_lesion_voxels`` tumour voxels) and the
features of :mod:`spikebench.datasets.slice_features`, computed on the liver ROI only.

Nothing computed is lost: each case's rows are cached atomically (temp file + ``os.replace``)
in ``<out>.cache/`` under a key made of the feature version and the image/label files' size
and mtime, so a rerun after Ctrl-C / SIGKILL / a bad case only computes what is missing and
yields the same table as an uninterrupted run. The cache stores the tumour-voxel count, not
the label, so changing ``min_lesion_voxels`` reuses it. The final parquet is written
atomically too, rows sorted by (patient id in natural order, slice index).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikebench.datasets.msd import Case, file_signature, iter_case_stored_slices, training_cases
from spikebench.datasets.slice_features import FEATURE_NAMES, FEATURES_VERSION, slice_features
from spikebench.errors import DataError

META_COLUMNS: tuple[str, ...] = ("patient_id", "slice_idx", "label")
"""The only non-feature columns of an extracted table; every other column is a feature."""

_ON_ERROR = ("fail", "skip")


@dataclass
class ExtractionResult:
    """What :func:`extract_features` did: table path, counts, skipped cases, timings."""

    path: Path
    n_cases: int
    n_rows: int
    n_positive: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    read_seconds: float = 0.0
    cached_cases: int = 0
    manifest: Path | None = None


def cache_dir_for(out: str | Path) -> Path:
    """The per-case cache folder of an output table: ``<out>.cache/``."""
    out = Path(out)
    return out.with_name(out.name + ".cache")


def manifest_path_for(out: str | Path) -> Path:
    """Where ``on_error="skip"`` lists the skipped cases: ``<out stem>.manifest.json``."""
    out = Path(out)
    return out.with_name(out.stem + ".manifest.json")


def natural_key(text: str) -> tuple:
    """Sort key putting ``liver_2`` before ``liver_10``."""
    return tuple((0, int(tok), "") if tok.isdigit() else (1, 0, tok)
                 for tok in re.split(r"(\d+)", text) if tok)


def extract_features(root: str | Path, out: str | Path, *, workers: int = 1,
                     min_lesion_voxels: int = 1, on_error: str = "fail",
                     progress: bool = False) -> ExtractionResult:
    """Write the feature table of every training case of ``root`` to ``out`` (parquet).

    ``on_error="fail"`` raises the first case's :class:`DataError`; ``"skip"`` carries on,
    lists each skipped case and its reason in ``<out stem>.manifest.json`` and in the result.
    Problems with ``dataset.json`` itself always raise. ``workers > 1`` uses a process pool
    (forked on Linux, see :func:`_mp_context`; one numpy thread per worker), fed the largest
    cases first.
    """
    import pandas as pd

    t0 = time.perf_counter()
    if on_error not in _ON_ERROR:
        raise DataError(f"on_error={on_error!r}: use 'fail' or 'skip'")
    if not isinstance(workers, int) or workers < 1:
        raise DataError(f"workers={workers!r}: must be an integer >= 1")
    if not isinstance(min_lesion_voxels, int) or min_lesion_voxels < 1:
        raise DataError(f"min_lesion_voxels={min_lesion_voxels!r}: must be an integer >= 1")
    root, out = Path(root), Path(out)
    cases = training_cases(root)
    if not cases:
        raise DataError(f"{root / 'dataset.json'}: 'training' lists no cases")
    cache = cache_dir_for(out)
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [(case, cache / f"{case.patient_id}.{_cache_key(case)}.parquet") for case in cases]

    done: dict[str, Path] = {}
    skipped: list[tuple[str, str]] = []
    read_seconds = 0.0
    todo = []
    for case, path in jobs:
        if path.is_file():
            done[case.patient_id] = path
        else:
            todo.append((case, path))
    cached = len(done)

    def record(pid: str, status: str, payload: str, seconds: float) -> None:
        nonlocal read_seconds
        read_seconds += seconds
        if status == "ok":
            done[pid] = Path(payload)
        elif on_error == "skip":
            skipped.append((pid, payload))
        else:
            raise DataError(payload)

    bar = None
    if progress:
        from tqdm.auto import tqdm

        # disable=None: no bar when stderr is not a terminal (CI logs, files)
        bar = tqdm(total=len(jobs), initial=cached, desc="extract", unit="case", disable=None)
    try:
        _run_jobs(todo, workers, record, bar)
    finally:
        if bar is not None:
            bar.close()

    frames = [pd.read_parquet(done[c.patient_id]) for c, _ in jobs if c.patient_id in done]
    if not frames:
        raise DataError(f"{root}: every case was skipped ({len(skipped)}); see "
                        f"{manifest_path_for(out)} - nothing to extract")
    table = pd.concat(frames, ignore_index=True)
    table["label"] = (table.pop("tumour_voxels") >= min_lesion_voxels).astype("int64")
    table = table[[*META_COLUMNS, *FEATURE_NAMES]]
    order = sorted(range(len(table)), key=lambda i: (natural_key(table["patient_id"].iat[i]),
                                                     int(table["slice_idx"].iat[i])))
    table = table.iloc[order].reset_index(drop=True)
    _atomic_parquet(table, out)
    manifest = None
    skipped.sort(key=lambda item: natural_key(item[0]))
    if on_error == "skip":
        manifest = manifest_path_for(out)
        payload = {"root": str(root), "out": str(out), "features_version": FEATURES_VERSION,
                   "n_cases": len(frames),
                   "skipped": [{"patient_id": p, "reason": r} for p, r in skipped]}
        _atomic_write_text(manifest, json.dumps(payload, indent=2) + "\n")
    return ExtractionResult(path=out, n_cases=len(frames), n_rows=len(table),
                            n_positive=int(table["label"].sum()), skipped=skipped,
                            seconds=time.perf_counter() - t0, read_seconds=read_seconds,
                            cached_cases=cached, manifest=manifest)


def _run_jobs(todo: list[tuple[Case, Path]], workers: int,
              record: Callable[[str, str, str, float], None], bar) -> None:
    if workers == 1 or len(todo) <= 1:  # dataset order: "fail" raises the first bad case
        for case, path in todo:
            record(*extract_case(case, path))
            if bar is not None:
                bar.update()
        return
    # Largest volumes first, so no big case is left running alone at the end (the table is
    # sorted afterwards, so the order of computation never shows).
    todo = sorted(todo, key=lambda job: -_size(job[0].image))
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from spikebench.datasets._threads import single_threaded

    pool = ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=_mp_context(),
                               initializer=single_threaded)
    try:
        futures = [pool.submit(extract_case, case, path) for case, path in todo]
        for fut in as_completed(futures):
            record(*fut.result())
            if bar is not None:
                bar.update()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


_WORKER_MODULES = ("numpy", "scipy.ndimage", "skimage.feature", "nibabel", "pandas",
                   "pyarrow.parquet", "spikebench.datasets.features")


def _mp_context():
    """The cheapest safe way to start workers: ``fork`` on Linux (the worker inherits the
    already imported numpy/scipy/nibabel/pandas instead of spending ~0.9 s importing them);
    ``forkserver`` with those modules preloaded when torch is loaded in this process (forking
    a process with live torch/OpenMP thread pools is unsafe); ``spawn`` elsewhere."""
    import multiprocessing
    import sys

    methods = multiprocessing.get_all_start_methods()
    if sys.platform.startswith("linux") and "fork" in methods and "torch" not in sys.modules:
        import contextlib
        import importlib

        for name in _WORKER_MODULES:  # import once here, shared copy-on-write by every worker
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        return multiprocessing.get_context("fork")
    if sys.platform.startswith("linux") and "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(_WORKER_MODULES))
        return ctx
    return multiprocessing.get_context("spawn")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def extract_case(case: Case, cache_path: Path) -> tuple[str, str, str, float]:
    """Compute and cache one case; returns ``(patient_id, "ok", cache path, read seconds)``
    or ``(patient_id, "error", message, read seconds)`` for a :class:`DataError`."""
    import pandas as pd

    rows, idx, tumour = [], [], []
    read_s = 0.0
    try:
        it = iter_case_stored_slices(case)
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
            rows.append(slice_features(stored, roi, spacing, to_hu=to_hu))
            idx.append(k)
            tumour.append(int(np.count_nonzero(lab == 2)))
    except DataError as exc:
        return case.patient_id, "error", str(exc), read_s
    frame = pd.DataFrame(np.vstack(rows), columns=list(FEATURE_NAMES))
    frame.insert(0, "tumour_voxels", np.asarray(tumour, dtype=np.int64))
    frame.insert(0, "slice_idx", np.asarray(idx, dtype=np.int64))
    frame.insert(0, "patient_id", case.patient_id)
    for stale in cache_path.parent.glob(f"{case.patient_id}.*.parquet"):
        if stale != cache_path:
            stale.unlink(missing_ok=True)
    _atomic_parquet(frame, cache_path)
    return case.patient_id, "ok", str(cache_path), read_s


def _cache_key(case: Case) -> str:
    assert case.label is not None
    parts = {"version": FEATURES_VERSION, "features": list(FEATURE_NAMES),
             "image": [case.image.name, _signature(case.image)],
             "label": [case.label.name, _signature(case.label)]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _signature(path: Path) -> str:
    try:
        return file_signature(path)
    except OSError:
        return "missing"


def _atomic_parquet(frame, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
