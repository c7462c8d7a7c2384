"""Run one function per case of a data set, in this process or in a pool of worker processes.

Feature extraction and crop extraction both read every volume once per case; this is the one
place that decides how: in order in this process for one worker (a failure then names the
first bad case of the data set), else in a process pool fed the largest volumes first (so no
big case is left running alone at the end), each worker pinned to one numeric thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

#: What a worker needs, imported once in the parent and shared copy-on-write by forked workers.
WORKER_MODULES = ("numpy", "scipy.ndimage", "scipy.stats", "skimage.feature", "nibabel",
                  "pandas", "pyarrow.parquet", "spikebench.datasets.features",
                  "spikebench.datasets.crops")


def map_cases(fn: Callable[..., Any], jobs: Sequence[tuple[Any, ...]], workers: int,
              on_result: Callable[[Any], None], *, image_of: Callable[[tuple], Path],
              bar: Any = None) -> None:
    """Call ``fn(*job)`` for every job and hand each result to ``on_result`` (in data-set
    order with one worker, in completion order otherwise). ``image_of(job)`` is the volume
    whose size orders the pool's queue. The first exception stops the pool and is raised."""
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            on_result(fn(*job))
            if bar is not None:
                bar.update()
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from spikebench.datasets._threads import single_threaded

    ordered = sorted(jobs, key=lambda job: -_size(image_of(job)))
    pool = ProcessPoolExecutor(max_workers=min(workers, len(ordered)), mp_context=mp_context(),
                               initializer=single_threaded)
    try:
        futures = [pool.submit(fn, *job) for job in ordered]
        for fut in as_completed(futures):
            on_result(fut.result())
            if bar is not None:
                bar.update()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def mp_context() -> Any:
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

        for name in WORKER_MODULES:  # import once here, shared copy-on-write by every worker
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
        return multiprocessing.get_context("fork")
    if sys.platform.startswith("linux") and "forkserver" in methods:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(WORKER_MODULES))
        return ctx
    return multiprocessing.get_context("spawn")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
