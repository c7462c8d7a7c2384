"""Reading crop rows in batches: how the image-track rules read the memory-mapped crops.

``X`` is lazy crop rows (:class:`~spikebench.datasets.crops.ImageRows`) or an array. Training
batches read any index set (:func:`read_rows`, in ascending order: sequential reads of the
memory maps); inference reads :data:`CHUNK` rows at a time (:func:`row_chunks`,
:func:`predict_rows`), so the cohort is never in memory at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

#: Rows read from the memory-mapped crops per inference chunk (read when a chunked pass
#: starts: a test may lower it).
CHUNK = 256


def read_rows(X: Any, index: np.ndarray) -> np.ndarray:
    """Rows ``index`` of ``X`` (lazy crop rows or an array) as a float32 array, read in
    ascending order (sequential reads of the memory maps)."""
    order = np.argsort(index, kind="stable")
    rows = np.asarray(X[index[order]], dtype=np.float32)
    out = np.empty_like(rows)
    out[order] = rows
    return out


def row_chunks(n: int, chunk: int | None = None) -> Iterator[np.ndarray]:
    """The row indices ``0 .. n − 1`` in order, ``chunk`` (default :data:`CHUNK`) at a time."""
    size = CHUNK if chunk is None else chunk
    for start in range(0, n, size):
        yield np.arange(start, min(start + size, n))


def predict_rows(X: Any, forward: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``forward`` (float32 rows → one value per row, numpy) applied chunk by chunk over
    ``X``."""
    if len(X) == 0:
        return np.zeros(0)
    return np.concatenate([forward(read_rows(X, index)) for index in row_chunks(len(X))])
