"""The report folder: what a report may write, replace and delete — only its own files.

A report is written into a folder (``--out``, default ``<results>/report``) that may already
exist. spikebench never deletes or overwrites a file it did not create, so every file a report
writes is listed in ``<out>/.spikebench-report.json`` *before* it is written (a crash leaves no
unlisted file behind), and the next report replaces exactly those files, deleting the ones it
no longer writes. Before anything is written, :meth:`ReportFolder.open` refuses

- an ``--out`` that is the results folder itself, holds it, or lies inside one of its data
  entries (``rows/``, ``models/``, ...): the report would sit among the study's own files;
- a folder holding any file not in the manifest (the user's own files): the error names them
  and says what to do.

A report folder written before the manifest existed (``report.html`` titled
"spikebench report") is recognised: the files it holds with a report's own names count as the
report's, anything else is foreign.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from spikebench.io import delete_own, inside, write_json

from .load import ReportError

MANIFEST = ".spikebench-report.json"
_FORMAT = 1
_LEGACY_TITLE = "<title>spikebench report:"
_MAX_LISTED = 5


def _files(folder: Path) -> set[str]:
    """Every file below ``folder`` as a POSIX path relative to it (the manifest excluded)."""
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if (p.is_file() or p.is_symlink()) and p.name != MANIFEST}


def _is_legacy_report(folder: Path) -> bool:
    page = folder / "report.html"
    try:
        return page.is_file() and _LEGACY_TITLE in page.read_text(errors="replace")[:2000]
    except OSError:
        return False


def is_report_folder(folder: Path) -> bool:
    """True when ``folder`` holds a report spikebench wrote (manifest or legacy page)."""
    return (folder / MANIFEST).is_file() or _is_legacy_report(folder)


class ReportFolder:
    """The files of one report folder: those listed as the report's, and those being written.

    Use :meth:`open` (which checks the folder), :meth:`claim` each path just before writing
    it, and :meth:`finish` once everything is written (it deletes the previous report's files
    that this one did not write again).
    """

    def __init__(self, out: Path, previous: set[str]) -> None:
        self.out = out
        self.previous = previous
        self.written: set[str] = set()

    @classmethod
    def open(cls, out: str | Path, results: str | Path,
             own_name: Callable[[str], bool]) -> ReportFolder:
        """Check that a report may be written to ``out`` for the results folder ``results``;
        raise :class:`ReportError` naming the path and the fix when not. ``own_name(rel)``
        says whether a path (relative to ``out``) is one a report writes: used only for a
        folder written before the manifest existed."""
        out = Path(out)
        _check_not_data(out, Path(results))
        if not out.exists():
            return cls(out, set())
        if not out.is_dir():
            raise ReportError(f"{out} is a file, not a folder: choose another --out")
        present = _files(out)
        previous = _read_manifest(out)
        if previous is None:
            legacy = _is_legacy_report(out)
            previous = {rel for rel in present if legacy and own_name(rel)}
        # a listed name now a symbolic link is not the file the report wrote
        foreign = sorted((present - previous)
                         | {rel for rel in present & previous if (out / rel).is_symlink()})
        if foreign:
            shown = ", ".join(str(out / f) for f in foreign[:_MAX_LISTED])
            more = f" and {len(foreign) - _MAX_LISTED} more" if len(foreign) > _MAX_LISTED else ""
            raise ReportError(
                f"{out} holds files spikebench did not write ({shown}{more}); a report never "
                "overwrites or deletes them. Move them elsewhere, or give another --out (an "
                "empty or new folder, or one holding only an earlier report)")
        return cls(out, previous)

    def claim(self, path: Path) -> Path:
        """List ``path`` (inside the folder) as the report's before it is written; returns
        it. The manifest on disk is updated first, so an interrupted report leaves no file the
        next run would take for the user's."""
        rel = path.relative_to(self.out).as_posix()
        if rel not in self.written:
            self.written.add(rel)
            self._save(self.previous | self.written)
        return path

    def finish(self) -> None:
        """Delete the previous report's files that were not written again; the manifest then
        lists exactly this report's files."""
        for rel in sorted(self.previous - self.written):
            path = inside(self.out, rel)
            if path is not None:
                delete_own(path, lambda _p: True)  # listed in our manifest: a regular file only
        for sub in ("tables", "figures"):
            folder = self.out / sub
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        self._save(self.written)

    def _save(self, files: set[str]) -> None:
        write_json(self.out / MANIFEST, {"spikebench_report": _FORMAT, "files": sorted(files)})


def _read_manifest(out: Path) -> set[str] | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        files = data["files"]
        if not isinstance(files, list):
            raise TypeError("files is not a list")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReportError(f"{path} is damaged ({exc}); delete the report folder {out} or "
                          "give another --out") from exc
    # only names inside the report folder (no absolute path, no "..", no link leading out):
    # a manifest received with someone's folder must not make a report delete other files
    return {str(f) for f in files if inside(out, str(f)) is not None}


def _check_not_data(out: Path, results: Path) -> None:
    """Refuse an ``out`` that is, holds, or lies inside the data of the results folder."""
    o, r = out.resolve(), results.resolve()
    fix = f"write the report to {results / 'report'} (the default) or a folder of its own"
    if o == r or r.is_relative_to(o):
        raise ReportError(f"--out {out} is or holds the results folder {results}: the report "
                          f"would sit among the study's data files; {fix}")
    if o.is_relative_to(r):
        first = r / o.relative_to(r).parts[0]
        holds_data = first.is_file() or (first.is_dir() and bool(_files(first)))
        if first != o and holds_data and not is_report_folder(first):
            raise ReportError(f"--out {out} lies inside {first}, part of the study's data in "
                              f"{results}; {fix}")
