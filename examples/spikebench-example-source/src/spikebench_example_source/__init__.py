"""``source = "patient_csv"``: a folder with one CSV file of slice features per patient.

An example spikebench data-source plug-in, the shape of an in-house export::

    cohort/
      P001.csv        slice_idx,tumour,hu_mean,hu_std,entropy,area_cm2
      P002.csv        0,0,58.41,10.91,3.718,103.4
      ...             ...

One row per slice: a 0/1 label column (``[data].label``), numeric feature columns, optionally
``slice_idx``. The patient id is the file name without ``.csv``, or the value of a column
named by ``[data].patient`` (then one id per file). Every file must have the same columns.

Each file is checked on its own and a bad one is one :class:`~spikebench.errors.DataError`
naming the file, what is wrong and the fix; with ``on_error = "skip"`` it is left out instead
and listed in ``protocol.json`` under ``excluded_cases``. The patients are combined into
``<workdir>/features.parquet`` (the results folder's data folder), written only when it
changed, and loaded with spikebench's own table checks
(:func:`~spikebench.datasets.tables.load_feature_table`: both classes present, finite values,
constant columns dropped). The input folder is only read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from spikebench.datasets.sources.base import DataSource, SourceData, SourceOptions
from spikebench.errors import DataError

#: Column names the combined table uses for its meta data; a file must not use them as features.
PATIENT, SLICE, LABEL = "patient_id", "slice_idx", "label"


class PatientCSVOptions(SourceOptions):
    """The ``[data]`` keys of ``source = "patient_csv"``."""

    #: The folder of per-patient CSV files (relative paths: from the spec file's folder).
    path: str
    #: Which files of the folder are patients.
    pattern: str = Field("*.csv", min_length=1)
    #: The 0/1 slice label column.
    label: str = Field("label", min_length=1)
    #: A column holding the patient id; by default the file name without its suffix.
    patient: str | None = None
    #: "fail": the first bad file stops the study; "skip": bad files are left out and listed.
    on_error: Literal["fail", "skip"] = "fail"


class BadFile(Exception):
    """One file's problem (without the file name, which the caller adds); ``hint``: whether
    leaving the file out (``on_error = "skip"``) is a sensible fix to suggest."""

    def __init__(self, message: str, *, hint: bool = True) -> None:
        super().__init__(message)
        self.hint = hint


class PatientCSVSource(DataSource):
    """A folder of per-patient CSV files (module docstring)."""

    name = "patient_csv"
    summary = "a folder with one CSV of slice features per patient"
    Options = PatientCSVOptions
    path_options = ("path",)

    def load(self, options: PatientCSVOptions, workdir: Path, *, progress: bool = False
             ) -> SourceData:
        import pandas as pd

        from spikebench.datasets.tables import load_feature_table
        from spikebench.io import write_parquet

        folder = Path(options.path)
        frames, excluded = read_folder(folder, options)
        table = pd.concat(frames, ignore_index=True)
        out = Path(workdir) / "features.parquet"
        if not out.exists() or not pd.read_parquet(out).equals(table):
            write_parquet(out, table)  # unchanged input: the same file, the same fingerprint
        info = {"source": self.name, "path": str(folder), "features": str(out),
                "files": len(frames), "excluded_cases": excluded}
        return SourceData(load_feature_table(out, label=LABEL, group=PATIENT), info)


def read_folder(folder: Path, options: PatientCSVOptions) -> tuple[list[Any], list[dict]]:
    """Every patient file as a frame with ``patient_id``, ``slice_idx``, ``label`` and the
    features (in file-name order), and the files left out under ``on_error = "skip"``."""
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; [data].path must name the folder of "
                        "per-patient CSV files (relative paths start at the spec file's folder)")
    files = sorted(p for p in folder.glob(options.pattern) if p.is_file())
    if not files:
        raise DataError(f"{folder}: no files match {options.pattern!r}; check [data].path "
                        "and [data].pattern")
    frames, excluded, owner = [], [], {}
    columns: tuple[list[str], Path] | None = None  # the first good file's features
    for path in files:
        try:
            frame = read_patient(path, options)
            features = [c for c in frame.columns if c not in (PATIENT, SLICE, LABEL)]
            if columns is not None and features != columns[0]:
                raise BadFile(_column_difference(features, *columns))
        except BadFile as exc:
            if options.on_error == "fail":
                skip_hint = ' (or set on_error = "skip" in [data] to leave this patient out)'
                raise DataError(f"{path}: {exc}{skip_hint if exc.hint else ''}") from None
            excluded.append({"patient_id": path.stem, "reason": f"{path}: {exc}"})
            continue
        pid = str(frame[PATIENT].iloc[0])
        if pid in owner:  # two files for one patient: refuse, whatever on_error says
            raise DataError(f"{path}: patient {pid!r} is also in {owner[pid]}; one file per "
                            "patient (merge the files, or fix the patient column)")
        owner[pid] = path
        columns = columns or (features, path)
        frames.append(frame)
    if not frames:
        raise DataError(f"{folder}: every patient file was left out; the first: "
                        f"{excluded[0]['reason']}")
    return frames, excluded


def read_patient(path: Path, options: PatientCSVOptions) -> Any:
    """One patient's slices with the meta columns first; :class:`BadFile` says what is wrong."""
    import numpy as np
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={options.patient: str} if options.patient else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BadFile(f"not a readable CSV file ({type(exc).__name__}: {str(exc)[:120]})"
                      ) from None
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if frame.empty:
        raise BadFile("no rows; every patient file needs one row per slice")
    if options.label not in columns:
        raise BadFile(f"no label column {options.label!r} (columns: {', '.join(columns)}); "
                      "name it with [data].label", hint=False)
    ids = _patient_ids(frame, columns, options.patient, path.stem)
    labels = pd.to_numeric(frame[options.label], errors="coerce")
    if not labels.isin([0, 1]).all():
        odd = sorted({str(v) for v in frame[options.label][~labels.isin([0, 1])]})[:5]
        raise BadFile(f"label column {options.label!r} must hold 0 or 1 in every row; found "
                      f"{', '.join(odd)}")
    meta = {options.label, options.patient, SLICE}
    features = [c for c in columns if c not in meta]
    reserved = sorted({PATIENT, LABEL} & set(features))
    if reserved:
        raise BadFile(f"column {reserved[0]!r} is reserved for the combined table; rename it")
    if not features:
        raise BadFile("no feature columns besides the label")
    text = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise BadFile(f"non-numeric feature columns {text}; drop them from the export")
    values = frame[features].to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        bad = [c for c, ok in zip(features, np.isfinite(values).all(0)) if not ok]
        raise BadFile(f"empty or non-finite values in feature columns {bad}; fill or drop them")
    slices = frame[SLICE] if SLICE in columns else np.arange(len(frame))
    return pd.DataFrame({PATIENT: ids, SLICE: slices, LABEL: labels.astype("int64"),
                         **{c: frame[c] for c in features}})


def _patient_ids(frame: Any, columns: list[str], column: str | None, stem: str) -> list[str]:
    """The patient id of every row: the file name, or the one value of ``column``."""
    if column is None:
        return [stem] * len(frame)
    if column not in columns:
        raise BadFile(f"no patient column {column!r} (columns: {', '.join(columns)}); name it "
                      "with [data].patient, or leave patient out to use the file name",
                      hint=False)
    ids = frame[column].fillna("").astype(str).str.strip()
    distinct = sorted(set(ids))
    if len(distinct) != 1 or not distinct[0]:
        raise BadFile(f"patient column {column!r} must hold one id in every row; found "
                      f"{distinct[:5]} (one file per patient)")
    return list(ids)


def _column_difference(features: list[str], first: list[str], first_path: Path) -> str:
    missing = [c for c in first if c not in features]
    extra = [c for c in features if c not in first]
    if not missing and not extra:
        return f"feature columns in another order than {first_path.name}; use one column order"
    return (f"feature columns differ from {first_path.name}: missing {missing}, extra {extra}; "
            "every patient file needs the same columns")


__all__ = ["PatientCSVOptions", "PatientCSVSource"]
