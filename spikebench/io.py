"""Atomic file writes: the one helper every layer uses (datasets, harness, reports, backends).

A write goes to a temporary file in the target's folder, is flushed to disk and renamed into
place, so a crash or a full disk never leaves a half-written file that a later run would read
as valid, and a reader never sees a partial file.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from spikebench.oserror import errno_of, output_error


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file + rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a failed write()/fsync() names no file: name the target
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """:func:`atomic_write_bytes` of UTF-8 ``text``."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Atomically write ``obj`` as indented, key-sorted JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(path: str | os.PathLike[str], frame: Any) -> None:
    """Atomically write a pandas DataFrame as parquet: the one place every parquet table is
    written. An OS or disk failure (full disk, quota, read-only or forbidden folder; also
    pyarrow's I/O errors, whose errno may be in the message only) is one
    :class:`~spikebench.errors.OutputError` naming ``path`` and the fix, without a pyarrow
    traceback, and leaves nothing at ``path`` (a file already there stays as it was)."""
    from pyarrow.lib import ArrowException

    try:
        buf = io.BytesIO()
        frame.to_parquet(buf, index=False)
        atomic_write_bytes(path, buf.getvalue())
    except (OSError, ArrowException) as exc:
        if not isinstance(exc, OSError) and errno_of(exc) is None:
            raise  # ArrowInvalid, ArrowTypeError ...: a frame parquet cannot hold, not the disk
        raise output_error(path, exc) from None


def concat_parquet(files: Iterable[Path], out: str | os.PathLike[str]) -> int:
    """Concatenate parquet ``files`` (sorted by name) into ``out`` atomically; returns rows."""
    import pandas as pd

    frames = [pd.read_parquet(f) for f in sorted(files)]
    frames = [f for f in frames if len(f)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    write_parquet(out, frame)
    return len(frame)
