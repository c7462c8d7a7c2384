"""Benchmark feature extraction against the bare cost of reading the volumes.

(a) reads and decompresses every training image and label completely through the same
reader the extraction uses (:class:`spikebench.datasets.msd.Volume`, chunked ``dataobj``,
isal gzip when installed), single process; (b) runs :func:`extract_features` with a cold cache
and ``workers`` processes. ``ratio = extract_seconds / read_seconds``; the target is ≤ 1.5.
Peak memory is the larger of this process's and its children's maximum resident set
(``getrusage``; the children figure is the largest single worker, not their sum).
"""

from __future__ import annotations

import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

from spikebench.datasets.features import extract_features
from spikebench.datasets.msd import FAST_GZIP, Volume, training_cases


def read_all(root: str | Path) -> tuple[float, int, int]:
    """Read+decompress every training image and label fully; ``(seconds, cases, voxels)``."""
    t0 = time.perf_counter()
    voxels = 0
    cases = training_cases(root)
    for case in cases:
        for path in (case.image, case.label):
            if path is None:  # training cases have labels; the type allows test images
                continue
            with Volume(path) as vol:
                for _, chunk in vol.chunks():
                    chunk.astype("float32", copy=False)
            if path == case.image:
                voxels += int(vol.shape[0] * vol.shape[1] * vol.shape[2])
    return time.perf_counter() - t0, len(cases), voxels


def _maxrss_mb(who: int) -> float:
    rss = resource.getrusage(who).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def benchmark_extraction(root: str | Path, workers: int = 1) -> dict:
    """Time reading vs extracting every training case of ``root`` (cache cold, temp output)."""
    read_s, n_cases, voxels = read_all(root)
    tmp = Path(tempfile.mkdtemp(prefix="spikebench-extract-bench-"))
    try:
        res = extract_features(root, tmp / "features.parquet", workers=workers)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    peak = max(_maxrss_mb(resource.RUSAGE_SELF), _maxrss_mb(resource.RUSAGE_CHILDREN))
    return {
        "read_seconds": round(read_s, 3),
        "extract_seconds": round(res.seconds, 3),
        "ratio": round(res.seconds / read_s, 3) if read_s > 0 else None,
        "workers": workers,
        "n_cases": n_cases,
        "n_rows": res.n_rows,
        "voxels": voxels,
        "peak_rss_mb": round(peak, 1),
        "fast_gzip": FAST_GZIP,
    }
