"""Worker-process initialiser: one BLAS/OpenMP thread per process (imports nothing heavy).

It lives in its own module, free of numpy imports, so a spawned worker runs it *before* numpy
is imported by the task function; the thread pools then start with one thread each. A forked
worker has numpy already loaded, so its live thread pools are limited with threadpoolctl
(when installed) as well.
"""

from __future__ import annotations

import os
import sys

_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def single_threaded() -> None:
    """Pin numeric libraries of this process to one thread (call first in a worker)."""
    for var in _THREAD_VARS:
        os.environ[var] = "1"
    if "numpy" in sys.modules:  # forked from a parent that already started the pools
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - optional dependency
            return
        threadpool_limits(1)
