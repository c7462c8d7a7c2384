"""Every file spikebench writes goes through here: atomic writes with the user's file mode,
and the one rule about files spikebench did not write.

**Atomic.** A write goes to a temporary file in the target's folder, is flushed to disk and
renamed into place, so a crash or a full disk never leaves a half-written file that a later run
would read as valid, and a reader never sees a partial file.

**The user's file mode.** A temporary file is created readable by its owner only; before it is
renamed into place it gets the mode a new file of the user gets (``0o666`` minus the umask), so
colleagues on a shared disk read results as they read any other file of that user.

**Never overwrite or delete a path spikebench did not write.** A writer that may meet an
existing file (``export --to``, ``report --out``, ``extract --out``, ``phantom``) asks
:func:`refuse_foreign` first, with a recogniser of its own kind of file (an export bundle, a
report listed in its manifest, an extracted table, a phantom marker): a path that exists and is
not recognised (or is a symbolic link, or not a regular file) is refused with one error naming
it. :func:`delete_own` deletes only what the recogniser accepts, and :func:`inside` keeps the
file names a manifest lists inside its own folder.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from spikebench.oserror import errno_of, output_error

#: Recognises a file spikebench wrote (of one kind); an exception counts as "not ours".
Recogniser = Callable[[Path], bool]
_UMASK_LOCK = threading.Lock()


def user_file_mode() -> int:
    """The mode of a new file of this user: ``0o666`` minus the process umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    try:  # Linux >= 4.7: read it without changing it
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere: set and restore (the lock keeps our own threads out)
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; when the block ends without an error
    it gets the user's file mode, is flushed to disk and renamed to ``path`` (atomic). On an
    error nothing is left at the temporary path and ``path`` is as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:200]}.", suffix=".tmp")
    tmp = Path(name)
    try:
        os.fchmod(fd, user_file_mode())
        os.close(fd)
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename is None:
            exc.filename = str(path)  # a failed write()/fsync() names no file: name the target
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file + rename (never a half-written file)."""
    atomic_write_stream(path, lambda fh: fh.write(data))


def atomic_write_stream(path: str | os.PathLike[str], write: Callable[[BinaryIO], Any]) -> None:
    """``write(fh)`` into a temporary file opened for binary writing, then rename it to
    ``path`` (see :func:`atomic_output`)."""
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        write(fh)
        fh.flush()


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


# -- the one rule: never overwrite or delete a path spikebench did not write -----------------

def is_ours(path: str | os.PathLike[str], recognise: Recogniser) -> bool:
    """Whether ``path`` is a regular file (not a symbolic link) that ``recognise`` accepts as
    one spikebench wrote."""
    path = Path(path)
    try:
        if path.is_symlink() or not path.is_file():
            return False
        return bool(recognise(path))
    except Exception:  # an unreadable or foreign file: not ours
        return False


def refuse_foreign(path: str | os.PathLike[str], recognise: Recogniser, *,
                   error: Callable[[str], Exception], what: str, fix: str) -> None:
    """Raise ``error(message)`` when ``path`` exists and is not a file spikebench wrote
    (:func:`is_ours`): a writer calls this before it replaces ``path``. ``what`` says what
    spikebench would have written there, ``fix`` what the user can do."""
    path = Path(path)
    if not os.path.lexists(path) or is_ours(path, recognise):
        return
    kind = ("a symbolic link" if path.is_symlink() else "a folder" if path.is_dir()
            else "a file")
    raise error(f"{path}: exists and is {kind} spikebench did not write (not {what}); "
                f"spikebench never overwrites or deletes it - {fix}")


def delete_own(path: str | os.PathLike[str], recognise: Recogniser) -> bool:
    """Delete ``path`` if it is a file spikebench wrote (:func:`is_ours`); whether it did."""
    path = Path(path)
    if not is_ours(path, recognise):
        return False
    path.unlink(missing_ok=True)
    return True


def inside(folder: str | os.PathLike[str], name: str) -> Path | None:
    """``folder / name`` when ``name`` is a relative path that stays inside ``folder`` (no
    absolute path, drive, ``..``, and no symbolic link on the way leading out), else None: how
    a manifest's file names are read."""
    folder = Path(folder)
    rel = Path(str(name))
    if not str(name) or rel.is_absolute() or rel.drive or ".." in rel.parts:
        return None
    target = folder / rel
    try:
        if not target.parent.resolve().is_relative_to(folder.resolve()):
            return None
    except (OSError, RuntimeError):  # a symlink loop on the way
        return None
    return target
