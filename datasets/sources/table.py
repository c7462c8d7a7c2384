"""``source = "table"``: a feature table (parquet or CSV) extracted earlier or supplied by you.

One row per slice: a binary ``label`` column, a patient ``group`` column and numeric feature
columns. Splits are made by the group column, so slices of one patient never sit on both sides
of a split. A table without a patient column would make every slice its own patient — the
slice-level split behind inflated published accuracies — so it is refused unless the spec says
``group = "none"`` explicitly; the report then carries a warning banner.
"""

from __future__ import annotations

from pathlib import Path

from spikebench.datasets.sources.base import DataSource, SourceData, SourceOptions
from spikebench.errors import DataError

#: ``group = "none"``: every row is its own patient (slice-level splits, reported as such).
NO_GROUP = "none"


class TableOptions(SourceOptions):
    #: The table file (relative paths: from the spec file's folder).
    path: str
    label: str = "label"
    #: Patient column; ``"none"`` allows a table without one (slice-level splits, flagged).
    group: str = "patient_id"


class TableSource(DataSource[TableOptions]):
    """A feature table file (module docstring)."""

    name = "table"
    summary = "a feature table file (parquet/CSV) with label and patient columns"
    Options = TableOptions
    path_options = ("path",)

    def load(self, options: TableOptions, workdir: Path, *, progress: bool = False
             ) -> SourceData:
        from spikebench.datasets.tables import load_feature_table

        path = Path(options.path)
        slice_level = options.group == NO_GROUP
        if not slice_level:
            _require_column(path, options.group)
        table = load_feature_table(path, label=options.label,
                                   group=None if slice_level else options.group)
        info = {"source": self.name, "path": str(path), "features": str(path),
                "excluded_cases": [], "slice_level_splits": slice_level}
        return SourceData(table, info)


def _require_column(path: Path, column: str) -> None:
    """:class:`DataError` when the table has no ``column`` (checked before loading it)."""
    if not path.exists():
        raise DataError(f"{path}: feature table not found; check [data].path")
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        try:
            names = pq.read_schema(path).names
        except Exception as exc:  # pyarrow raises several types for a non-parquet file
            raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    else:
        with path.open(encoding="utf-8", errors="replace") as fh:
            names = [c.strip() for c in fh.readline().rstrip("\n").split(",")]
    if column not in names:
        raise DataError(
            f"{path}: no patient column {column!r} (columns: {', '.join(names[:12])}). Splits "
            "must be by patient: name the patient column with [data].group, or set "
            f'group = "{NO_GROUP}" to accept slice-level splits (the report will flag them)')
