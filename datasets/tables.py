"""Load and validate a feature table (extracted, or supplied by the user) before any training.

Every problem is one ``DataError`` naming the file and the columns at
fault, raised here rather than deep inside a training loop. Decisions:

* Columns other than the label, the group, ``patient_id`` and ``slice_idx`` are features
  (``patient_id`` is never a feature, even with ``group=None``) and must be numeric
  (booleans count as numeric); a text column is an error naming it (drop it or use it as the
  group).
* NaN/inf in a feature is an error (columns and counts named): silently imputing would hide a
  broken extraction.
* **Constant feature columns are dropped with a warning**, not an error: they carry no
  information, break standardisation (zero std) and are common and harmless in radiomics
  tables (e.g. a HU band no slice reaches). The dropped names are in ``dropped_constant``.
* Labels must be 0/1 (or booleans) with both classes present.
* Without a group column (``group=None``, or the default ``patient_id`` absent) every row is
  its own patient: ``groups`` are the row indices as strings.
* The group column is read as text, always (CSV and parquet): patient ids ``001``, ``01`` and
  ``1`` are three patients, never one integer.
* ``lesion_mm2`` (tumour area per slice, written by ``spikebench extract``) is ground-truth
  metadata, like the label: it is never a feature, and is exposed as
  ``FeatureTable.lesion_mm2``.
* ``split`` (a source's own split, e.g. MedMNIST's official one: ``train``, ``val`` or
  ``test`` per row, the same for every row of a patient) is metadata too, exposed as
  ``FeatureTable.split``; ``[split].scheme = "predefined"`` reads it.
* Finiteness is checked after every cast: a value finite in float64 that overflows the
  float32 of ``X`` is an error naming the column, not an ``inf`` handed to a model.
* The table's fingerprint (:attr:`FeatureTable.sha256`, to which a results folder is bound)
  hashes what the data *is*: the feature names and the values a study reads (features,
  labels, patient ids, slice indices, lesion areas), never the file's bytes, so neither the
  path the table was written from, nor parquet metadata, nor CSV formatting changes it.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spikebench.errors import DataError

DEFAULT_GROUP = "patient_id"
_SLICE = "slice_idx"
LESION_AREA = "lesion_mm2"
"""Meta column of the tumour area per slice (mm²): never a feature."""
SPLIT = "split"
"""Meta column of a source's own split (``train`` / ``val`` / ``test``): never a feature."""
SPLIT_NAMES = ("train", "val", "test")


@dataclass
class FeatureTable:
    """A validated feature table: ``X`` float32 [n, F], ``y`` int64 [n] in {0, 1},
    ``groups`` str [n] (patient of each row), ``slice_idx`` int64 [n] or ``None``,
    ``lesion_mm2`` float64 [n] (tumour area of each slice, metadata) or ``None``, ``meta``
    the extraction record stored in the table (parameters, skipped cases) or ``{}``,
    ``split`` str [n] (the source's own split of each row, ``train`` / ``val`` / ``test``) or
    ``None``. ``sha256`` is the fingerprint of the values (:func:`values_sha256`),
    ``file_sha256`` that of the file's bytes (what results folders of spikebench < 0.9 were
    bound to)."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    slice_idx: np.ndarray | None
    feature_names: list[str]
    path: Path
    sha256: str
    dropped_constant: list[str] = field(default_factory=list)
    lesion_mm2: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    file_sha256: str = ""
    split: np.ndarray | None = None

    @property
    def n_patients(self) -> int:
        """Number of distinct groups (patients)."""
        return len(np.unique(self.groups))


def load_feature_table(path: str | Path, *, label: str = "label",
                       group: str | None = DEFAULT_GROUP) -> FeatureTable:
    """Read a ``.parquet`` or ``.csv`` feature table and check it is trainable."""
    path = Path(path)
    frame, suffix = _read_frame(path, group)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    _check_columns(path, frame, columns, label, group)

    y = _labels(path, frame[label], label)
    groups, used_group = _groups(path, frame, columns, group)
    slice_idx = _slice_index(frame, columns, label, used_group)
    lesion = _lesion_area(path, frame, columns, label, used_group)
    split = _split(path, frame, columns, groups, (label, used_group))
    names = _feature_names(path, frame, columns, label, used_group)
    X32 = _feature_matrix(path, frame, names)
    X32, names, const = _drop_constant(path, X32, names)
    record = frame.attrs.get("spikebench", {}) if suffix in (".parquet", ".pq") else {}
    return FeatureTable(X=X32, y=y, groups=groups, slice_idx=slice_idx,
                        feature_names=names, path=path,
                        sha256=values_sha256(names, X32, y, groups, slice_idx, lesion, split),
                        dropped_constant=const, lesion_mm2=lesion,
                        meta=dict(record) if isinstance(record, dict) else {},
                        file_sha256=digest, split=split)


def values_sha256(feature_names: list[str], X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                  slice_idx: np.ndarray | None, lesion_mm2: np.ndarray | None = None,
                  split: np.ndarray | None = None) -> str:
    """SHA-256 of what a study reads from a feature table, in row order: the feature names,
    ``X`` as float32, the labels, the patient ids (UTF-8), the slice indices, lesion areas and
    the source's own split (when present). Independent of the file's path, format, metadata
    and column dtypes."""
    digest = hashlib.sha256(b"spikebench-feature-values-1\0")

    def part(name: str, data: bytes) -> None:
        digest.update(f"{name}:{len(data)}\0".encode())
        digest.update(data)

    part("features", "\0".join(feature_names).encode("utf-8", "surrogatepass"))
    part("X", np.ascontiguousarray(X, dtype="<f4").tobytes())
    part("y", np.ascontiguousarray(y, dtype="<i8").tobytes())
    part("groups", "\0".join(map(str, groups)).encode("utf-8", "surrogatepass"))
    if slice_idx is not None:
        part("slice_idx", np.ascontiguousarray(slice_idx, dtype="<i8").tobytes())
    if lesion_mm2 is not None:
        part("lesion_mm2", np.ascontiguousarray(lesion_mm2, dtype="<f8").tobytes())
    if split is not None:
        part("split", "\0".join(map(str, split)).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _read_frame(path: Path, group: str | None):
    """Read the table (parquet or CSV, group ids as text); return it and the lower-case
    suffix."""
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: feature table not found; run `spikebench extract` first or "
                        "check the path")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".txt"):
            frame = pd.read_csv(path)
            if group is not None and group in frame.columns:  # ids as text: keep "001"
                frame[group] = pd.read_csv(path, usecols=[group], dtype=str,
                                           keep_default_na=False)[group]
        else:
            raise DataError(f"{path}: unknown table format {suffix!r}; use .parquet or .csv")
    except DataError:
        raise
    except Exception as exc:  # pyarrow / pandas raise many types for a corrupt file
        raise DataError(f"{path}: cannot read as {suffix[1:]} ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); is the file complete and in that format?") from None
    return frame, suffix


def _check_columns(path: Path, frame, columns: list[str], label: str,
                   group: str | None) -> None:
    """The label column, an explicitly named group column and at least one row exist."""
    if label not in columns:
        raise DataError(f"{path}: no label column {label!r}; columns present: {columns}")
    if group is not None and group not in columns and group != DEFAULT_GROUP:
        raise DataError(f"{path}: no group column {group!r}; columns present: {columns} "
                        "(pass group=None to treat every row as its own patient)")
    if len(frame) == 0:
        raise DataError(f"{path}: the table has no rows")


def _groups(path: Path, frame, columns: list[str], group: str | None
            ) -> tuple[np.ndarray, str | None]:
    """The patient of each row and the group column used (``None``: one patient per row)."""
    if group is not None and group in columns:
        col = frame[group]
        empty = col.isna() | (col.astype(str).str.strip() == "")
        if empty.any():
            raise DataError(f"{path}: group column {group!r} has {int(empty.sum())} "
                            "empty values; every row needs a patient id")
        return col.astype(str).to_numpy(dtype=str), group
    if group is not None:
        warnings.warn(f"{path}: no {group!r} column, so every row is treated as its own "
                      "patient; slices of one patient may then land in train and test",
                      stacklevel=3)  # the caller of load_feature_table
    return np.arange(len(frame)).astype(str), None


def _slice_index(frame, columns: list[str], label: str, used_group: str | None
                 ) -> np.ndarray | None:
    """The slice column as int64, or ``None`` when absent or not all integers."""
    import pandas as pd

    if _SLICE in columns and _SLICE not in (label, used_group):
        values = pd.to_numeric(frame[_SLICE], errors="coerce").to_numpy(dtype=np.float64)
        if np.isfinite(values).all() and (values == np.round(values)).all() \
                and (np.abs(values) < 2.0**62).all():
            return values.astype(np.int64)
    return None


def _lesion_area(path: Path, frame, columns: list[str], label: str, used_group: str | None
                 ) -> np.ndarray | None:
    """The ``lesion_mm2`` meta column (finite, >= 0), or ``None`` when absent."""
    import pandas as pd

    if LESION_AREA not in columns or LESION_AREA in (label, used_group):
        return None
    lesion = pd.to_numeric(frame[LESION_AREA], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(lesion).all() or (lesion < 0).any():
        raise DataError(f"{path}: meta column {LESION_AREA!r} must hold finite areas >= 0 "
                        "(mm²); re-run the extraction or drop the column")
    return lesion


def _split(path: Path, frame, columns: list[str], groups: np.ndarray,
           taken: tuple[str | None, ...]) -> np.ndarray | None:
    """The ``split`` meta column (train / val / test, one per patient), or ``None``."""
    if SPLIT not in columns or SPLIT in taken:
        return None
    values = frame[SPLIT].astype(str).str.strip().to_numpy(dtype=str)
    bad = sorted(set(values.tolist()) - set(SPLIT_NAMES))
    if bad:
        raise DataError(f"{path}: split column {SPLIT!r} must hold {list(SPLIT_NAMES)} in every "
                        f"row; found {bad[:5]} (rename the column if it is not a split)")
    owner: dict[str, str] = {}
    for g, s in zip(groups.tolist(), values.tolist()):
        if owner.setdefault(g, s) != s:
            raise DataError(f"{path}: patient {g!r} has rows in the {owner[g]!r} and {s!r} "
                            f"splits; a patient belongs to one split")
    return values


def _feature_names(path: Path, frame, columns: list[str], label: str,
                   used_group: str | None) -> list[str]:
    """Every non-meta column, each numeric (or boolean); at least one."""
    import pandas as pd

    meta_cols = {label, _SLICE, DEFAULT_GROUP, LESION_AREA, SPLIT} | (
        {used_group} if used_group is not None else set())
    names = [c for c in columns if c not in meta_cols]
    if not names:
        raise DataError(f"{path}: no feature columns besides {sorted(meta_cols)}")
    bad = [c for c in names if not (pd.api.types.is_numeric_dtype(frame[c])
                                    or pd.api.types.is_bool_dtype(frame[c]))]
    if bad:
        raise DataError(f"{path}: non-numeric feature columns {bad}; drop them from the table "
                        "(or name one as the group column)")
    return names


def _feature_matrix(path: Path, frame, names: list[str]) -> np.ndarray:
    """The features as float32, finite in float64 and after the cast."""
    X = frame[names].to_numpy(dtype=np.float64)
    _check_finite(path, X, names, "")
    with np.errstate(over="ignore"):  # overflow is reported below, naming the columns
        X32 = X.astype(np.float32)
    _check_finite(path, X32, names, " after conversion to float32 (values beyond ±3.4e38)")
    return X32


def _drop_constant(path: Path, X32: np.ndarray, names: list[str]
                   ) -> tuple[np.ndarray, list[str], list[str]]:
    """Drop the columns constant in float32 (as models see them), with a warning; refuse a
    table whose every feature is constant. Returns the kept matrix, names and the dropped."""
    const = [n for j, n in enumerate(names) if np.ptp(X32[:, j]) == 0]  # as models see it
    if const:
        if len(const) == len(names):
            raise DataError(f"{path}: every feature column is constant ({const}); nothing to "
                            "learn from")
        warnings.warn(f"{path}: dropping constant feature columns {const}",
                      stacklevel=3)  # the caller of load_feature_table
        keep = [j for j, n in enumerate(names) if n not in const]
        X32, names = X32[:, keep], [names[j] for j in keep]
    return X32, names, const


def _check_finite(path: Path, X: np.ndarray, names: list[str], when: str) -> None:
    finite = np.isfinite(X)
    if not finite.all():
        counts = {n: int((~finite[:, j]).sum()) for j, n in enumerate(names)
                  if not finite[:, j].all()}
        raise DataError(f"{path}: NaN/inf values in feature columns {counts} (column: count)"
                        f"{when}; fix the extraction, rescale, or drop those rows/columns")


def _labels(path: Path, col, label: str) -> np.ndarray:
    import pandas as pd

    if col.isna().any():
        raise DataError(f"{path}: label column {label!r} has {int(col.isna().sum())} empty "
                        "values")
    if pd.api.types.is_bool_dtype(col):
        y = col.to_numpy().astype(np.int64)
    else:
        num = pd.to_numeric(col, errors="coerce")
        values = sorted({str(v) for v in col[num.isna() | ~num.isin([0, 1])].unique()})[:10]
        if values:
            raise DataError(f"{path}: label column {label!r} must be binary 0/1; found values "
                            f"{values}")
        y = num.to_numpy().astype(np.int64)
    classes = np.unique(y)
    if len(classes) < 2:
        raise DataError(f"{path}: label column {label!r} has a single class ({int(classes[0])}) "
                        "in all rows; a classifier needs positive and negative slices")
    return y


def check_splittable(table: FeatureTable, min_patients: int = 4) -> None:
    """Raise if the table cannot be split by patient: too few patients, or too few patients
    with a positive slice (each split needs at least one on both sides)."""
    n = table.n_patients
    if n < min_patients:
        raise DataError(f"{table.path}: only {n} patients (groups); patient-level splits need "
                        f"at least {min_patients}")
    positive = len(np.unique(table.groups[table.y == 1]))
    if positive < 2:
        raise DataError(f"{table.path}: only {positive} patient(s) have positive slices; "
                        "patient-level splits need at least 2")
