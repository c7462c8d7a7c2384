"""One-line descriptions of operating-system errors a user can cause or fix (a full disk, a
read-only or missing folder, a path that is a file), so the CLI never shows a traceback for
them. Every write goes through :mod:`spikebench.io` (atomic), so after such an error nothing
half-written reads as valid: fixing the cause and rerunning the same command resumes."""

from __future__ import annotations

import errno

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
}


def describe_os_error(exc: OSError) -> str:
    """``exc`` as one line naming the file(s) and the fix."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    fix = FIXES.get(exc.errno or 0, "check the path and rerun")
    reason = exc.strerror or type(exc).__name__
    return f"{where or 'a file'}: {reason}; {fix}"
