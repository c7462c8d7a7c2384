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
behind and two workers never do the same job. The folder is bound to one study: its identity
is the hash of the resolved spec (minus the trial budget and the storage) and of the input
data; opening it with another spec or other data is an error that names what changed.
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
        ``data.features``: absolute, or relative to the folder), then the data source's cache
        ``data/features.parquet``, then ``features.parquet`` (older folders)."""
        candidates = [Path(named), self.root / named] if named else []
        return [*candidates, self.data_dir / "features.parquet",
                self.root / "features.parquet"]

    def table(self, name: str) -> Path:
        """A collected table: ``results``, ``predictions``, ``curves`` or ``trials``."""
        return self.root / f"{name}.parquet"

    def row(self, cell_key: str, fold_key: str) -> Path:
        return self.root / "rows" / f"{cell_key}__{fold_key}.parquet"

    def cell_failure(self, cell_key: str) -> Path:
        """The single row of a skipped or failed cell."""
        return self.root / "rows" / f"{cell_key}__r-1.parquet"

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

    def bind(self, spec: StudySpec, data_sha256: str) -> None:
        """Record or check the folder's identity; a different study is refused by name."""
        spec_hash, raw = spec_identity(spec)
        identity = {"spec_sha256": spec_hash, "data_sha256": data_sha256, "spec": raw}
        path = self.identity_file
        if path.exists():
            old = read_json(path)
            if old.get("spec_sha256") != spec_hash or old.get("data_sha256") != data_sha256:
                raise SpecError(f"{self.root} holds another study: {_what_changed(old, identity)}. "
                                "Use a new --out folder (or delete this one) to run this spec")
            return
        write_json(path, identity)

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


def spec_identity(spec: StudySpec) -> tuple[str, dict[str, Any]]:
    """``(sha256, resolved spec without volatile keys)`` of a :class:`StudySpec`."""
    raw = spec.model_dump(mode="json")
    for table, key in _VOLATILE:
        raw.get(table, {}).pop(key, None)
    text = json.dumps(raw, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest(), raw


def _what_changed(old: dict[str, Any], new: dict[str, Any]) -> str:
    if old.get("data_sha256") != new["data_sha256"]:
        return (f"the input data changed (sha256 {str(old.get('data_sha256'))[:12]} -> "
                f"{new['data_sha256'][:12]})")
    changed = _diff(old.get("spec", {}), new["spec"])
    return "the spec changed: " + (", ".join(changed[:6]) or "(unreadable identity)")


def _diff(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff(a.get(key), b.get(key), f"{where}.{key}" if where else key)
        return out
    return [] if a == b else [f"{where}: {a!r} -> {b!r}"]
