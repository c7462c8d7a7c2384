"""Read a study's results folder into plain tables, defensively.

A report must work on a finished study, on a study still running (``results.parquet`` holds only
some rows) and on an old study written before a column existed. So this module is the only
place that touches files: it checks the one file a report cannot do without
(``results.parquet``), fills in missing optional columns with NaN, and turns every optional file
it cannot read (``predictions.parquet``, ``trials.parquet``, ``curves.parquet``,
``protocol.json``, ``spec.toml``) into ``None`` plus a note the report prints. Everything after
this module is a pure function of ``StudyTables``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import pandas as pd

from spikebench.errors import SpikebenchError
from spikebench.harness.folder import ResultsFolder
from spikebench.harness.metrics import THRESHOLD
from spikebench.harness.results import CURVE_COLUMNS, PREFIXED_METRICS, RESULT_COLUMNS

#: Identity columns a results table cannot do without.
REQUIRED_RESULT_COLUMNS = ("backend", "rule")
#: Columns a predictions table cannot do without (``fold`` and ``lesion_mm2`` are optional:
#: folders written before they existed have one fold, 0, and no lesion areas).
REQUIRED_PREDICTION_COLUMNS = ("backend", "rule", "repeat", "steps", "train_steps",
                               "patient_id", "label", "prob")
#: How a study's test sets relate (protocol.json "scheme"; absent → holdout).
SCHEMES = ("holdout", "nested-cv", "repeated-splits", "predefined")
#: A model's identity in both tables: one row of results.parquet per key.
UNIT_KEYS = ("backend", "rule", "repeat", "fold", "refit")


class ReportError(SpikebenchError, ValueError):
    """A results folder a report cannot be built from (missing or unreadable table)."""


@dataclass
class StudyTables:
    """Everything a report reads from one study folder (optional tables may be ``None``).

    ``spikebench.load_results`` returns one; reports are pure functions of it.

    Attributes
    ----------
    root : Path
        The results folder.
    results : pandas.DataFrame
        ``results.parquet``: one row per backend × rule × repeat × fold × refit (the columns
        of ``spikebench.harness.results.ResultRow``: identity, status, parameters, threshold,
        costs, ``val_*`` and ``test_*`` metrics), plus one row per skipped or failed cell.
    predictions : pandas.DataFrame or None
        ``predictions.parquet``: ``P(lesion)`` of every test slice at every evaluated number of
        time steps (``steps``; ``train_steps`` is the trained T).
    trials : pandas.DataFrame or None
        ``trials.parquet``: every Optuna trial of every cell (``value`` or ``values_0``,
        ``params_*``, ``user_attrs_*``, ``state``).
    curves : pandas.DataFrame or None
        ``curves.parquet``: active learning's validation metrics vs labels used.
    protocol : dict
        ``protocol.json``: data, splits, seeds, search settings, versions, machine.
    spec : dict
        ``spec.toml``: the resolved spec that ran.
    notes : list of str
        What could not be read (a missing or unreadable optional file), for the report.

    Examples
    --------
    >>> import pandas as pd
    >>> from spikebench.reports.load import StudyTables
    >>> rows = pd.DataFrame({"backend": ["custom", "custom"], "rule": ["surrogate"] * 2,
    ...                      "status": ["ok", "failed"]})
    >>> tables = StudyTables(root=Path("results/demo"), results=rows)
    >>> len(tables.ok), tables.scheme
    (1, 'holdout')
    """

    root: Path
    results: pd.DataFrame
    predictions: pd.DataFrame | None = None
    trials: pd.DataFrame | None = None
    curves: pd.DataFrame | None = None
    protocol: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def scheme(self) -> str:
        """``protocol.json["scheme"]``: holdout (default, also for old folders), nested-cv,
        predefined or
        repeated-splits."""
        value = str(self.protocol.get("scheme") or "holdout")
        if value not in SCHEMES:
            raise ReportError(f"protocol.json scheme {value!r} is not one of {list(SCHEMES)}")
        return value

    @property
    def ok(self) -> pd.DataFrame:
        """Result rows that finished (``status == "ok"``)."""
        return self.results[self.results["status"] == "ok"]

    def primary_predictions(self) -> pd.DataFrame | None:
        """Test predictions at the trained number of time steps (what the test metrics used),
        each slice with the decision ``threshold`` of the model that predicted it (from its
        results row; ``THRESHOLD`` when unknown)."""
        pred = self.thresholded_predictions()
        return None if pred is None else pred[pred["steps"] == pred["train_steps"]]

    def thresholded_predictions(self) -> pd.DataFrame | None:
        """Test predictions at every evaluated number of time steps, each slice with the
        decision ``threshold`` of the model that predicted it (as ``primary_predictions``),
        so that a metric at another T is thresholded as the tables threshold it."""
        pred = self.predictions
        if pred is None or pred.empty:
            return None
        thresholds = (self.results.dropna(subset=["repeat"])
                      .groupby(list(UNIT_KEYS), sort=False)["threshold"].first().reset_index())
        thresholds["repeat"] = thresholds["repeat"].astype(pred["repeat"].dtype)
        pred = pred.drop(columns=["threshold"], errors="ignore").merge(
            thresholds, on=list(UNIT_KEYS), how="left")
        pred["threshold"] = pred["threshold"].fillna(THRESHOLD)
        return pred


def load_study(study_dir: str | Path) -> StudyTables:
    """Read ``study_dir``; raise ``ReportError`` naming the file when ``results.parquet``
    is missing or unreadable, note (not raise) every optional file that is."""
    root = Path(study_dir)
    if not root.is_dir():
        raise ReportError(f"{root} is not a folder: give the --out folder of a study")
    folder = ResultsFolder(root)
    path = folder.table("results")
    if not path.exists():
        raise ReportError(
            f"{path} not found: a report needs the study's results table "
            f"(run `spikebench study run SPEC --out {root}` first)"
        )
    notes: list[str] = []
    results = _normalise_results(_read_parquet(path, required=True), path)
    predictions = _optional_table(folder, "predictions", REQUIRED_PREDICTION_COLUMNS, notes)
    if predictions is not None:
        predictions = _normalise_predictions(predictions)
    curves = _optional_table(folder, "curves",
                             tuple(c for c in CURVE_COLUMNS if c not in ("fold", "refit")), notes)
    trials = _optional_table(folder, "trials", ("backend", "rule", "number"), notes)
    protocol = _read_json(folder.protocol_file, notes)
    spec = _read_toml(folder.spec_file, notes)
    return StudyTables(root=root, results=results, predictions=predictions, trials=trials,
                       curves=curves, protocol=protocol, spec=spec, notes=notes)


@overload
def _read_parquet(path: Path, *, required: Literal[True]) -> pd.DataFrame: ...


@overload
def _read_parquet(path: Path, *, required: Literal[False]) -> pd.DataFrame | None: ...


def _read_parquet(path: Path, *, required: bool) -> pd.DataFrame | None:
    """The table at ``path``; unreadable: a ``ReportError`` when ``required``, else None."""
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a damaged file
        if required:
            raise ReportError(f"{path} cannot be read as parquet: {exc}") from exc
        return None


def _optional_table(folder: ResultsFolder, name: str, columns: tuple[str, ...],
                    notes: list[str]) -> pd.DataFrame | None:
    """``NAME.parquet``, else the per-row files ``NAME/*.parquet`` a running study writes first."""
    path = folder.table(name)
    jobs = folder.job_files(name)
    frame: pd.DataFrame | None = None
    if path.exists():
        frame = _read_parquet(path, required=False)
        if frame is None:
            notes.append(f"{path.name} could not be read; its figures are left out")
    elif jobs:
        parts = [_read_parquet(f, required=False) for f in jobs]
        parts = [p for p in parts if p is not None and len(p)]
        frame = pd.concat(parts, ignore_index=True) if parts else None
        notes.append(f"{path.name} not collected yet: read {len(parts)} files from {name}/")
    else:
        notes.append(f"{path.name} not present; its figures are left out")
    if frame is None or frame.empty:
        return None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        notes.append(f"{path.name} lacks columns {missing}; it is ignored")
        return None
    return frame


def _normalise_results(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    missing = [c for c in REQUIRED_RESULT_COLUMNS if c not in frame.columns]
    if missing and len(frame):
        raise ReportError(
            f"{path} lacks the column(s) {missing}; is it a spikebench results table?")
    frame = frame.copy()
    for col in REQUIRED_RESULT_COLUMNS:
        if col not in frame.columns:
            frame[col] = pd.Series(dtype=object)
    if "kind" not in frame.columns:
        frame["kind"] = np.where(frame["backend"] == "reference", "reference", "snn")
    if "status" not in frame.columns:
        frame["status"] = "ok"
    if "reason" not in frame.columns:
        frame["reason"] = ""
    frame["reason"] = frame["reason"].fillna("").astype(str)
    frame["status"] = frame["status"].fillna("ok").astype(str)
    for col in (*RESULT_COLUMNS, *PREFIXED_METRICS):
        if col not in frame.columns:
            frame[col] = np.nan
    frame["repeat"] = pd.to_numeric(frame["repeat"], errors="coerce")
    _add_newer_columns(frame)
    for col in frame.columns:
        if col.startswith(("test_", "val_")) or col.endswith(("_per_sample", "_per_epoch")):
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    frame["backend"] = frame["backend"].astype(str)
    frame["rule"] = frame["rule"].astype(str)
    return frame


def _add_newer_columns(frame: pd.DataFrame) -> None:
    """Columns older folders lack: ``fold`` and ``refit`` (→ 0), ``threshold`` (→ the harness
    default), ``acs_per_sample`` / ``macs_per_sample`` (→ NaN: the energy falls back to
    synops)."""
    frame["fold"] = _fold(frame)
    frame["refit"] = _int_column(frame, "refit")
    if "threshold" not in frame.columns:
        frame["threshold"] = THRESHOLD
    frame["threshold"] = pd.to_numeric(frame["threshold"], errors="coerce").fillna(THRESHOLD)
    for col in ("acs_per_sample", "macs_per_sample"):
        if col not in frame.columns:
            frame[col] = np.nan


def _fold(frame: pd.DataFrame) -> pd.Series:
    """The ``fold`` column as int (absent or missing → 0: old folders had one fold)."""
    return _int_column(frame, "fold")


def _int_column(frame: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` as int; absent or missing → 0 (what older folders held implicitly)."""
    if name not in frame.columns:
        return pd.Series(0, index=frame.index, dtype=np.int64)
    return pd.to_numeric(frame[name], errors="coerce").fillna(0).astype(np.int64)


def _normalise_predictions(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    frame["fold"] = _fold(frame)
    frame["refit"] = _int_column(frame, "refit")
    if "lesion_mm2" in frame.columns:
        frame["lesion_mm2"] = pd.to_numeric(frame["lesion_mm2"], errors="coerce")
    frame["backend"] = frame["backend"].astype(str)
    frame["rule"] = frame["rule"].astype(str)
    frame["patient_id"] = frame["patient_id"].astype(str)
    frame["label"] = pd.to_numeric(frame["label"], errors="coerce").fillna(0).astype(int)
    frame["prob"] = pd.to_numeric(frame["prob"], errors="coerce").astype(float)
    return frame


def _read_json(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.exists():
        notes.append(f"{path.name} not present; the protocol section is incomplete")
        return {}
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        notes.append(f"{path.name} could not be read ({exc}); the protocol section is incomplete")
        return {}
    return obj if isinstance(obj, dict) else {}


def _read_toml(path: Path, notes: list[str]) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text())
    except (OSError, ValueError) as exc:
        notes.append(f"{path.name} could not be read ({exc})")
        return {}
