"""The results folder: every path inside it, every write into it, every claim on a job in it.

A study folder ``DIR`` holds (tables described in :mod:`spikebench.harness.results`)::

    DIR/identity.json        hashes of the resolved spec and of the input data (see below)
    DIR/spec.toml            the spec the study ran (resolved; no storage password)
    DIR/protocol.json        data provenance, folds, seeds, versions, machine, source state
    DIR/splits.json          the scheme and every fold's patient ids
    DIR/optuna.journal       Optuna storage (default; or an RDB URL named in protocol.json)
    DIR/data/                what the data source generated or cached (phantom, features)
    DIR/rows/ predictions/ curves/ models/   one file per cell × fold (written atomically)
    DIR/results.parquet predictions.parquet curves.parquet trials.parquet   (collected)

Only this class builds paths inside a results folder. Every file is written atomically
(:mod:`spikebench.io`). A job (one cell × fold refit) is claimed with an OS file lock
(``filelock``), which the kernel releases when its holder dies, so a crash never leaves a claim
behind and two workers never do the same job.

The folder is bound to one study, whatever path it is reached by (relative, absolute, through
a symbolic link, from another working directory or another machine that mounts it elsewhere):
its identity is the hash of the resolved spec minus what may change between runs of one study
(the trial budget, the storage, the ``[calibration]`` assumptions, and where the data files
lie: the data source's path options)
and the hash of the input data's *values* (:func:`spikebench.datasets.tables.values_sha256`).
Opening it with another spec or other data is an error that names what changed, decided
before anything in the folder is rewritten: the spec is checked before the data is loaded
(:meth:`ResultsFolder.check_spec`), and what the data source rewrites under ``data/`` while the
data is compared is put back when the folder turns out to hold another study
(:meth:`ResultsFolder.guard_data`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spikebench.errors import SpecError
from spikebench.io import atomic_write_text, concat_parquet, write_json, write_parquet

if TYPE_CHECKING:
    import pandas as pd

    from spikebench.harness.spec import StudySpec

#: Spec keys that may change between runs of one folder: the trial budget (more trials resume
#: tuning) and where the trials are stored.
_VOLATILE = (("search", "trials"), ("search", "storage"))
#: Spec tables that may change too: ``[calibration]`` holds the assumptions of the error-rate
#: simulation (``spikebench calibrate``), not the protocol; editing them reruns nothing.
_VOLATILE_TABLES = ("calibration",)
#: identity.json's format: 2 hashes the data's values and leaves path options out of the spec.
IDENTITY_FORMAT = 2
#: A snapshot of ``data/`` older than this (seconds) was left by a killed run: removed.
STALE_SNAPSHOT_SECONDS = 3600.0


class ResultsFolder:
    """A study's results folder (module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- paths -------------------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def journal(self) -> Path:
        return self.root / "optuna.journal"

    @property
    def spec_file(self) -> Path:
        return self.root / "spec.toml"

    @property
    def identity_file(self) -> Path:
        return self.root / "identity.json"

    @property
    def protocol_file(self) -> Path:
        return self.root / "protocol.json"

    @property
    def splits_file(self) -> Path:
        return self.root / "splits.json"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def report_dir(self) -> Path:
        """Where ``spikebench report`` writes by default."""
        return self.root / "report"

    def job_files(self, kind: str) -> list[Path]:
        """The per-job files of ``kind`` (``rows``, ``predictions``, ``curves``), sorted."""
        return sorted((self.root / kind).glob("*.parquet"))

    def feature_tables(self, named: str = "") -> list[Path]:
        """Where a study's feature table may be, in order: ``named`` (protocol.json's
        ``data.features``: absolute, or relative to the folder — never to the working
        directory), then the data source's cache ``data/features.parquet``, then
        ``features.parquet`` (older folders)."""
        candidates = ([Path(named)] if Path(named).is_absolute() else [self.root / named]
                      ) if named else []
        return [*candidates, self.data_dir / "features.parquet",
                self.root / "features.parquet"]

    def relative(self, path: str) -> str:
        """``path`` relative to the folder when it lies inside it (the folder may be reached
        by another path, or mounted elsewhere, next time), else as given."""
        try:
            inner = Path(path).resolve().relative_to(self.root.resolve())
        except (OSError, RuntimeError, ValueError):
            return path
        return inner.as_posix()

    def table(self, name: str) -> Path:
        """A collected table: ``results``, ``predictions``, ``curves`` or ``trials``."""
        return self.root / f"{name}.parquet"

    def row(self, cell_key: str, fold_key: str) -> Path:
        return self.root / "rows" / f"{cell_key}__{fold_key}.parquet"

    def cell_failure(self, cell_key: str) -> Path:
        """The single row of a skipped or failed cell."""
        return self.root / "rows" / f"{cell_key}__r-1.parquet"

    def clear_failure(self, cell_key: str) -> None:
        """Remove the failure row of a cell that is being retried (a skipped cell's stays)."""
        row = self.read_row(self.cell_failure(cell_key))
        if row is not None and row.get("status") == "failed":
            self.cell_failure(cell_key).unlink(missing_ok=True)

    def failed_cells(self) -> dict[str, str]:
        """``{backend/rule: reason}`` of every cell whose single row says it failed."""
        out = {}
        for path in self.job_files("rows"):
            if path.name.endswith("__r-1.parquet"):
                row = self.read_row(path)
                if row is not None and row.get("status") == "failed":
                    out[f"{row.get('backend')}/{row.get('rule')}"] = str(row.get("reason"))
        return out

    def predictions(self, cell_key: str, fold_key: str) -> Path:
        return self.root / "predictions" / f"{cell_key}__{fold_key}.parquet"

    def curves(self, cell_key: str, fold_key: str) -> Path:
        return self.root / "curves" / f"{cell_key}__{fold_key}.parquet"

    def model(self, cell_key: str, fold_key: str) -> Path:
        return self.root / "models" / f"{cell_key}__{fold_key}.pt"

    # -- creating and binding ----------------------------------------------------------------

    def create(self) -> None:
        """Make the folder (refusing a path that is a file)."""
        import os

        if self.root.exists() and not self.root.is_dir():
            raise SpecError(f"--out {self.root}: is a file; give a folder for the results")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            from spikebench.oserror import describe_os_error

            raise SpecError(f"--out {self.root}: cannot create it ({describe_os_error(exc)})"
                            ) from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise SpecError(f"--out {self.root}: cannot write into it (read-only file system "
                            "or no permission); choose a writable folder")

    def check_spec(self, spec: StudySpec) -> None:
        """Refuse a folder bound to another spec before anything is loaded or written."""
        path = self.identity_file
        if not path.exists():
            return
        old = read_json(path)
        if not _same_spec(old, spec):
            raise SpecError(_another_study(self.root, _what_changed(old, spec, None)))

    def bind(self, spec: StudySpec, data_sha256: str, legacy_data_sha256: str = "") -> None:
        """Record or check the folder's identity; a different study is refused by name.

        ``data_sha256`` is the fingerprint of the data's values; ``legacy_data_sha256`` that
        of the feature table file's bytes, which folders written before identity format 2 were
        bound to (they are accepted when it matches, and their identity is upgraded)."""
        spec_hash, raw = spec_identity(spec)
        identity: dict[str, Any] = {"format": IDENTITY_FORMAT, "spec_sha256": spec_hash,
                    "data_sha256": data_sha256, "spec": raw}
        path = self.identity_file
        if path.exists():
            old = read_json(path)
            legacy = old.get("format") != IDENTITY_FORMAT
            data = legacy_data_sha256 if legacy else data_sha256
            if not (_same_spec(old, spec) and old.get("data_sha256") == data):
                raise SpecError(_another_study(self.root, _what_changed(old, spec, data)))
            if not legacy:
                return
        write_json(path, identity)  # new, or an older identity of this very study upgraded

    @contextlib.contextmanager
    def guard_data(self) -> Iterator[None]:
        """While the data is loaded into a *bound* folder's ``data/`` and compared with the
        folder's identity: when the block raises (another study, a data error, an interrupt),
        ``data/`` is put back as it was — files the data source replaced or deleted come back
        from hard links taken before, files it created go. Nothing of a folder holding another
        study is rewritten. (On a file system without hard links the guard does nothing.)"""
        if not self.identity_file.exists() or not self.data_dir.is_dir():
            yield
            return
        snapshot = _Snapshot.take(self.data_dir)
        try:
            yield
        except BaseException:
            if snapshot is not None:
                snapshot.restore()
            raise
        finally:
            if snapshot is not None:
                snapshot.discard()

    def write_spec(self, text: str) -> None:
        atomic_write_text(self.spec_file, text)

    def write_protocol(self, protocol: dict[str, Any]) -> None:
        write_json(self.protocol_file, protocol)

    def write_splits(self, splits: dict[str, Any]) -> None:
        """``splits.json``; in a resumed study it must be what this spec and data produce."""
        path = self.splits_file
        if path.exists() and read_json(path) == json.loads(json.dumps(splits)):
            return
        if path.exists():
            raise SpecError(f"{path} holds different splits than this spec and data produce; "
                            "use a new --out folder")
        write_json(path, splits)

    # -- rows and jobs -----------------------------------------------------------------------

    def has(self, path: Path) -> bool:
        """A written table file (a zero-byte or unreadable file counts as missing)."""
        if not path.is_file() or path.stat().st_size == 0:
            return False
        try:
            import pyarrow.parquet as pq

            pq.read_metadata(path)
        except Exception:  # torn or foreign file: redo the job
            return False
        return True

    def read_row(self, path: Path) -> dict[str, Any] | None:
        """The first row of a written table file as ``{column: value}`` (None: not written)."""
        import pandas as pd

        if not self.has(path):
            return None
        frame = pd.read_parquet(path)
        return {str(k): v for k, v in frame.iloc[0].items()} if len(frame) else None

    def write_frame(self, path: Path, frame: pd.DataFrame) -> None:
        """Write ``frame`` to ``path`` (a path of this folder), atomically."""
        write_parquet(path, frame)

    @contextlib.contextmanager
    def claim(self, job: str) -> Iterator[bool]:
        """Try to claim ``job`` for this process: yields True when claimed (held until the
        block ends, or the process dies), False when another live process holds it."""
        from filelock import FileLock, Timeout

        lock = FileLock(str((self.root / "locks" / f"{job}.lock").resolve()))
        Path(lock.lock_file).parent.mkdir(parents=True, exist_ok=True)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            yield False
            return
        try:
            yield True
        finally:
            lock.release()

    def collect(self) -> None:
        """Rebuild the collected tables from the per-job files."""
        for name, target in (("rows", "results"), ("predictions", "predictions"),
                             ("curves", "curves")):
            files = self.job_files(name)
            if files or name == "rows":
                concat_parquet([f for f in files if self.has(f)], self.table(target))


class _Snapshot:
    """Hard links of every file under a folder, in ``<folder>/.kept-<unique>/``."""

    PREFIX = ".kept-"

    def __init__(self, folder: Path, keep: Path, files: dict[str, tuple[int, int]]) -> None:
        self.folder, self.keep, self.files = folder, keep, files

    @classmethod
    def take(cls, folder: Path) -> _Snapshot | None:
        import os
        import shutil
        import time
        import uuid

        for old in folder.glob(f"{cls.PREFIX}*"):  # left by a killed run
            with contextlib.suppress(OSError):
                if time.time() - old.stat().st_mtime > STALE_SNAPSHOT_SECONDS:
                    shutil.rmtree(old, ignore_errors=True)
        keep = folder / f"{cls.PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
        files: dict[str, tuple[int, int]] = {}
        try:
            for rel, path in _regular_files(folder):
                target = keep / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, target, follow_symlinks=False)
                st = path.stat()
                files[rel] = (st.st_dev, st.st_ino)
        except OSError:  # no hard links here (or no space for the folders): no guard
            shutil.rmtree(keep, ignore_errors=True)
            return None
        return cls(folder, keep, files)

    def restore(self) -> None:
        """Put every file back as it was and remove the files created since."""
        import os

        with contextlib.suppress(OSError):
            for rel, path in _regular_files(self.folder):
                if rel not in self.files:
                    path.unlink(missing_ok=True)
            for rel, inode in self.files.items():
                path = self.folder / rel
                try:
                    st = path.stat()
                    same = (st.st_dev, st.st_ino) == inode
                except OSError:
                    same = False
                if not same:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(self.keep / rel, path)

    def discard(self) -> None:
        import shutil

        shutil.rmtree(self.keep, ignore_errors=True)


def _regular_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """``(relative POSIX path, path)`` of the regular files under ``folder`` (no symbolic
    links followed; snapshots left out)."""
    import os

    for top, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(_Snapshot.PREFIX)]
        for name in names:
            path = Path(top) / name
            if path.is_file() and not path.is_symlink():
                yield path.relative_to(folder).as_posix(), path


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object written by spikebench (a torn or foreign file is an error naming it)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SpecError(f"{path}: unreadable ({exc}); it was not written by this version of "
                        "spikebench or is damaged: use a new --out folder") from None
    if not isinstance(value, dict):
        raise SpecError(f"{path}: holds JSON {type(value).__name__}, not an object; it was not "
                        "written by this version of spikebench: use a new --out folder")
    return value


def spec_identity(spec: StudySpec, *, legacy: bool = False) -> tuple[str, dict[str, Any]]:
    """``(sha256, resolved spec without volatile keys)`` of a :class:`StudySpec`: without the
    trial budget, the storage, the ``[calibration]`` assumptions and the data source's path
    options (the data's values are hashed instead). ``legacy``: the hash of identity format
    1, which kept the paths."""
    raw = spec.model_dump(mode="json")
    for table, key in _VOLATILE:
        raw.get(table, {}).pop(key, None)
    for name in _VOLATILE_TABLES:
        raw.pop(name, None)
    if not legacy:
        for key in _path_options(spec):
            raw.get("data", {}).pop(key, None)
    text = json.dumps(raw, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), raw


def _path_options(spec: StudySpec) -> tuple[str, ...]:
    """The ``[data]`` keys that name files or folders (the source's ``path_options``)."""
    from spikebench.harness.spec import data_options

    try:
        source, _ = data_options(spec)
    except SpecError:
        return ()
    return tuple(source.path_options)


def _same_spec(old: dict[str, Any], spec: StudySpec) -> bool:
    legacy = old.get("format") != IDENTITY_FORMAT
    digest, raw = spec_identity(spec, legacy=legacy)
    return old.get("spec_sha256") == digest or _only_new_defaults(old.get("spec"), raw, spec)


def _only_new_defaults(old: Any, raw: dict[str, Any], spec: StudySpec) -> bool:
    """True when ``raw`` differs from the recorded spec ``old`` only by keys a newer version
    added to a table, each at its default (which keeps the older behaviour): such a folder is
    the same study and resumes."""
    if not isinstance(old, dict) or set(old) != set(raw):
        return False
    for name, table in raw.items():
        before = old[name]
        if not isinstance(table, dict) or not isinstance(before, dict):
            if table != before:
                return False
            continue
        if any(before.get(k, _ABSENT) != v for k, v in table.items() if k in before) or (
                set(before) - set(table)):
            return False
        added = set(table) - set(before)
        if added and not all(table[k] == _default(spec, name, k) for k in added):
            return False
    return True


_ABSENT = object()


def _default(spec: StudySpec, table: str, key: str) -> Any:
    """The default of ``[table].key`` in the spec's model (``_ABSENT`` when it has none)."""
    model = type(getattr(spec, table, None))
    field = getattr(model, "model_fields", {}).get(key)
    if field is None or field.is_required():
        return _ABSENT
    value = field.get_default(call_default_factory=True)
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def _another_study(root: Path, what: str) -> str:
    return (f"{root} holds another study: {what}. Its results are kept as they are; run this "
            "spec with a new --out folder (or restore the spec and data of that study to "
            "resume it)")


def _what_changed(old: dict[str, Any], spec: StudySpec, data_sha256: str | None) -> str:
    """What differs between the identity ``old`` and ``spec`` (and the data's fingerprint)."""
    legacy = old.get("format") != IDENTITY_FORMAT
    changed = _diff(old.get("spec", {}), spec_identity(spec, legacy=legacy)[1])
    if changed:
        return "the spec changed: " + ", ".join(changed[:6])
    if data_sha256 is not None and old.get("data_sha256") != data_sha256:
        return (f"the input data changed (sha256 {str(old.get('data_sha256'))[:12]} -> "
                f"{data_sha256[:12]})")
    return "the spec changed (unreadable identity)"


def _diff(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{where}.{key}" if where else key)
        return out
    return [] if a == b else [f"{where}: {a!r} -> {b!r}"]
