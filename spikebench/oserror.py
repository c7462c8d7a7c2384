"""One-line descriptions of operating-system errors a user can cause or fix (a full disk, a
read-only or missing folder, a path that is a file), so the CLI never shows a traceback for
them. Every write goes through :mod:`spikebench.io` (atomic), so after such an error nothing
half-written reads as valid: fixing the cause and rerunning the same command resumes."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from spikebench.errors import OutputError

#: errno → what to do about it.
FIXES = {
    errno.ENOSPC: "the disk is full: free space (or choose another --out) and rerun to resume",
    errno.EDQUOT: "the disk quota is exhausted: free space and rerun to resume",
    errno.EROFS: "the file system is read-only: choose a writable folder",
    errno.EACCES: "permission denied: choose a folder you can write to",
    errno.EPERM: "operation not permitted: choose a folder you can write to",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "the path is a folder: give a file path",
    errno.ENOENT: "no such file or folder: check the path",
    errno.ENAMETOOLONG: "the name is longer than the file system allows: use a shorter path",
    errno.EEXIST: "the path exists already: choose another",
    errno.ELOOP: "a loop of symbolic links: fix or remove the link, or choose another path",
}
#: The fix of a failed write whose cause names no errno.
WRITE_FIX = ("check that its folder exists and is writable and that the disk has free space "
             "(or choose another --out), then rerun to resume")
#: ``[Errno 28]``, ``errno 28``, ``errno=28``: how pyarrow's messages carry an errno.
_ERRNO_TEXT = re.compile(r"\berrno\s*[:=]?\s*(\d+)", re.IGNORECASE)


def describe_os_error(exc: OSError) -> str:
    """``exc`` as one line naming the file(s) and the fix."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    fix = FIXES.get(exc.errno or 0, "check the path and rerun")
    reason = exc.strerror or type(exc).__name__
    return f"{where}: {reason}; {fix}" if where else f"{reason} (no file named); {fix}"


#: How Python 3.11's ``Path.resolve`` reports a loop of symbolic links (a RuntimeError).
_LOOP = "Symlink loop from "


def symlink_loop(exc: BaseException) -> OSError | None:
    """The ``ELOOP`` error of a symbolic-link loop ``exc`` reports (Python < 3.13 raises
    ``RuntimeError("Symlink loop from '<path>'")`` from ``Path.resolve``), else None."""
    if isinstance(exc, RuntimeError) and str(exc).startswith(_LOOP):
        where = str(exc)[len(_LOOP):].strip("'\"")
        return OSError(errno.ELOOP, os.strerror(errno.ELOOP), where)
    return None


def errno_of(exc: BaseException) -> int | None:
    """The errno of ``exc``: its ``errno`` attribute, else one written in its message (pyarrow's
    I/O errors may carry it as text only, ``[errno 28] No space left on device``), else that of
    a known error text in the message; None when it has none."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code:
        return code
    text = str(exc)
    match = _ERRNO_TEXT.search(text)
    if match:
        return int(match.group(1))
    lowered = text.lower()
    return next((known for known in FIXES if os.strerror(known).lower() in lowered), None)


def _reason(exc: BaseException, code: int | None) -> str:
    """What went wrong in a few words: the OS's text, else the first line of the message
    (never a library's source locations or traceback), else the exception's type."""
    if isinstance(exc, OSError) and exc.strerror:
        return str(exc.strerror)
    if code:
        return os.strerror(code)
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return first or type(exc).__name__


def output_error(path: str | os.PathLike[str], exc: BaseException) -> OutputError:
    """The :class:`~spikebench.errors.OutputError` of a failed write of ``path`` caused by
    ``exc`` (an :class:`OSError` or a pyarrow I/O error): one line naming ``path``, the cause
    and the fix, keeping the cause's errno."""
    code = errno_of(exc)
    reason = _reason(exc, code)
    fix = FIXES.get(code or 0, WRITE_FIX)
    return OutputError(f"cannot write {Path(path)}: {reason}; {fix}", code, reason,
                       str(Path(path)))
