"""The data-source conformance kit: run ``check_source`` in a source plug-in's tests.

A source conforms when, given ``options`` that describe a small valid cohort, it

1. declares itself: ``name`` a non-empty string, ``summary`` a
   string, ``Options`` a ``SourceOptions`` model that refuses unknown keys, every ``path_options``
   entry one of its fields, and an ``on_error`` option (if it has one) that accepts
   ``"fail"`` and ``"skip"``;
2. delivers a feature table a study can use: ``load`` into an empty
   ``workdir`` returns a ``SourceData`` whose ``table``
   has finite float32 features ``[n, F]`` named by ``feature_names``, binary labels with both
   classes, a patient id per row (fewer patients than rows, unless ``info`` says
   ``slice_level_splits``, or states its ``grouping`` assumption when each row is its own
   patient by design, as with one MedMNIST sample per row) and enough patients to split by patient
   (``check_splittable``); ``info`` is a dict, and its
   ``excluded_cases`` (if given) a list;
3. reads its inputs without changing them: every file under a path option has the same size
   and modification time after the load;
4. is deterministic: a load into a second empty ``workdir`` gives the same rows (features,
   labels, patient ids, slice indices, feature names) and the same fingerprint
   (``table.sha256``, to which the results folder is bound: it must not depend on where the
   folder is), and loading again into the first ``workdir`` — what a resumed study does —
   gives the same fingerprint;
5. refuses bad input with one ``DataError`` naming the file: a path
   option pointing at nothing, and every ``BrokenInput`` the plug-in's tests supply;
   with ``on_error = "skip"`` a skippable broken input loads instead and is listed in
   ``info["excluded_cases"]``.

::

    from spikebench.datasets.sources.conformance import BrokenInput, check_source

    def test_my_source_conforms(cohort, broken_cohort):
        check_source("mysource", {"path": str(cohort)},
                     broken=[BrokenInput({"path": str(broken_cohort)}, names="P007.csv",
                                         skippable=True)])

``check_source`` runs every check and raises one ``AssertionError`` listing the failures;
``source_checks`` yields ``(name, check)`` pairs for one pytest test per check.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from spikebench.datasets.sources.base import DataSource, SourceData, SourceOptions
from spikebench.errors import DataError

#: Files looked at per path option by the "inputs unchanged" check (a guard for huge folders).
MAX_WATCHED_FILES = 20_000


@dataclasses.dataclass(frozen=True)
class BrokenInput:
    """A bad input the source must refuse: complete ``options`` pointing at it, the text
    ``names`` the ``DataError`` must contain (the file at fault), and
    whether ``on_error = "skip"`` should load the rest and list it as an excluded case."""

    options: Mapping[str, Any]
    names: str
    skippable: bool = False


def _resolve(source: DataSource | type[DataSource] | str) -> DataSource:
    if isinstance(source, str):
        from spikebench.datasets.sources import get_source

        return get_source(source)
    return source() if isinstance(source, type) else source


def _fail(msg: str) -> NoReturn:
    raise AssertionError(msg)


def _load(source: DataSource, options: Mapping[str, Any], workdir: Path) -> SourceData:
    return source.load(source.Options.model_validate(dict(options)), workdir)


def check_declarations(source: DataSource | type[DataSource] | str,
                       options: Mapping[str, Any]) -> None:
    """Name, summary, a strict options model that validates ``options``, path options that
    are fields, ``on_error`` accepting ``"fail"`` and ``"skip"``."""
    from pydantic import ValidationError

    s = _resolve(source)
    if not isinstance(getattr(s, "name", None), str) or not s.name:
        _fail(f"{type(s).__qualname__}.name must be a non-empty string")
    if not isinstance(s.summary, str):
        _fail(f"{s.name}: summary must be a string (one line for `spikebench datasets`)")
    if not (isinstance(s.Options, type) and issubclass(s.Options, SourceOptions)):
        _fail(f"{s.name}: Options must subclass spikebench.datasets.sources.base.SourceOptions")
    fields = s.Options.model_fields
    stray = [key for key in s.path_options if key not in fields]
    if stray:
        _fail(f"{s.name}: path_options {stray} are not fields of {s.Options.__name__}")
    try:
        s.Options.model_validate(dict(options))
    except ValidationError as exc:
        _fail(f"{s.name}: the example options do not validate: {exc}")
    try:
        s.Options.model_validate({**options, "no_such_option": 1})
    except ValidationError:
        pass
    else:
        _fail(f"{s.name}: {s.Options.__name__} accepts unknown keys; a misspelt [data] key must "
              "be an error naming it (keep SourceOptions' extra='forbid')")
    if "on_error" in fields:
        for mode in ("fail", "skip"):
            try:
                s.Options.model_validate({**options, "on_error": mode})
            except ValidationError:
                _fail(f"{s.name}: on_error must accept {mode!r} (the harness' vocabulary)")


def _check_table(name: str, data: Any) -> None:
    """The delivered table is one a study can split by patient and train on."""
    from spikebench.datasets.tables import FeatureTable, check_splittable

    if not isinstance(data, SourceData):
        _fail(f"{name}: load() must return a SourceData, got {type(data).__name__}")
    table = data.table
    if not isinstance(table, FeatureTable):
        _fail(f"{name}: SourceData.table must be a FeatureTable (load_feature_table builds one)")
    n = len(table.y)
    X = np.asarray(table.X)
    if X.dtype != np.float32 or X.ndim != 2 or X.shape != (n, len(table.feature_names)):
        _fail(f"{name}: X must be float32 [rows, features] matching feature_names; got "
              f"{X.dtype} {X.shape} for {n} rows and {len(table.feature_names)} names")
    if n == 0 or not np.isfinite(X).all():
        _fail(f"{name}: the table must have rows and finite features")
    if set(np.unique(table.y).tolist()) != {0, 1}:
        _fail(f"{name}: labels must be 0/1 with both classes, got {np.unique(table.y)[:10]}")
    groups = np.asarray(table.groups).astype(str)
    if groups.shape != (n,) or (np.char.strip(groups) == "").any():
        _fail(f"{name}: groups must hold one non-empty patient id per row")
    if table.slice_idx is not None and len(table.slice_idx) != n:
        _fail(f"{name}: slice_idx must have one entry per row")
    if not isinstance(data.info, dict):
        _fail(f"{name}: SourceData.info must be a dict (it goes to protocol.json)")
    if not (data.info.get("slice_level_splits") or data.info.get("grouping")) \
            and table.n_patients >= n:
        _fail(f"{name}: every row is its own patient; deliver patient ids (splits are by "
              "patient), or say info['slice_level_splits'] = True so the report flags it "
              "(or state the grouping assumption in info['grouping'] when one row is one "
              "patient by design)")
    if not isinstance(data.info.get("excluded_cases", []), list):
        _fail(f"{name}: info['excluded_cases'] must be a list of {{patient_id, reason}}")
    try:
        check_splittable(table)
    except DataError as exc:
        _fail(f"{name}: the example options give a table no study can split: {exc}")


def check_table(source: DataSource | type[DataSource] | str,
                options: Mapping[str, Any]) -> None:
    """``load`` into an empty workdir returns a usable feature table (module docstring, 2)."""
    s = _resolve(source)
    with tempfile.TemporaryDirectory() as tmp:
        _check_table(s.name, _load(s, options, Path(tmp) / "work"))


def _snapshot(source: DataSource, options: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """``{file: (size, mtime_ns)}`` of everything under the source's path options."""
    seen: dict[str, tuple[int, int]] = {}
    for key in source.path_options:
        value = options.get(key)
        if not isinstance(value, str) or not value:
            continue
        root = Path(value)
        files = [root] if root.is_file() else sorted(root.rglob("*")) if root.is_dir() else []
        for path in files[:MAX_WATCHED_FILES]:
            if path.is_file():
                stat = path.stat()
                seen[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return seen


def check_inputs_unchanged(source: DataSource | type[DataSource] | str,
                           options: Mapping[str, Any]) -> None:
    """Loading changes no file under a path option (a source writes only in ``workdir``)."""
    s = _resolve(source)
    before = _snapshot(s, options)
    with tempfile.TemporaryDirectory() as tmp:
        _load(s, options, Path(tmp) / "work")
    after = _snapshot(s, options)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    if changed:
        _fail(f"{s.name}: loading changed its inputs (write only inside workdir): "
              f"{', '.join(changed[:5])}")


def check_determinism(source: DataSource | type[DataSource] | str,
                      options: Mapping[str, Any]) -> None:
    """The same options give the same rows in a fresh workdir and the same fingerprint when
    loaded again into the same workdir (a resumed study)."""
    s = _resolve(source)
    with tempfile.TemporaryDirectory() as tmp:
        first = _load(s, options, Path(tmp) / "a").table
        other = _load(s, options, Path(tmp) / "b").table
        again = _load(s, options, Path(tmp) / "a").table
    if first.feature_names != other.feature_names:
        _fail(f"{s.name}: feature names differ between two loads")
    for field in ("X", "y", "groups", "slice_idx"):
        a, b = getattr(first, field), getattr(other, field)
        if (a is None) != (b is None) or (a is not None and not np.array_equal(a, b)):
            _fail(f"{s.name}: {field} differs between two loads of the same options")
    if first.sha256 != other.sha256:
        _fail(f"{s.name}: the same data loaded into another workdir has another fingerprint "
              f"(table.sha256 {first.sha256[:12]} -> {other.sha256[:12]}); a study resumed "
              "through another path to its folder would be refused (hash the values, e.g. "
              "spikebench.datasets.tables.values_sha256, not the file)")
    if first.sha256 != again.sha256:
        _fail(f"{s.name}: loading again into the same workdir changed the table's sha256 "
              f"({first.sha256[:12]} -> {again.sha256[:12]}); a resumed study would refuse "
              "its results folder (write the table only when it is missing or stale)")


def _expect_data_error(name: str, source: DataSource, options: Mapping[str, Any],
                       names: str, what: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            _load(source, options, Path(tmp) / "work")
        except DataError as exc:
            if names not in str(exc):
                _fail(f"{name}: {what}: the DataError must name {names!r}; it says: {exc}")
            return
        except Exception as exc:
            _fail(f"{name}: {what} raised {type(exc).__name__} ({exc}); raise DataError naming "
                  "the file and the fix instead")
    _fail(f"{name}: {what} was accepted; it must raise DataError naming {names!r}")


def check_missing_input(source: DataSource | type[DataSource] | str,
                        options: Mapping[str, Any]) -> None:
    """A path option pointing at nothing is a ``DataError`` naming that path."""
    s = _resolve(source)
    with tempfile.TemporaryDirectory() as tmp:
        for key in s.path_options:
            missing = str(Path(tmp) / "no-such-input")
            _expect_data_error(s.name, s, {**options, key: missing}, missing,
                               f"[data].{key} pointing at nothing")


def check_broken_inputs(source: DataSource | type[DataSource] | str,
                        broken: Sequence[BrokenInput]) -> None:
    """Each broken input is one ``DataError`` naming its file; a skippable one loads under
    ``on_error = "skip"`` and is listed in ``info["excluded_cases"]``."""
    s = _resolve(source)
    for case in broken:
        _expect_data_error(s.name, s, case.options, case.names, f"broken input {case.names!r}")
        if not case.skippable:
            continue
        if "on_error" not in s.Options.model_fields:
            _fail(f"{s.name}: {case.names!r} is marked skippable but Options has no on_error")
        with tempfile.TemporaryDirectory() as tmp:
            data = _load(s, {**case.options, "on_error": "skip"}, Path(tmp) / "work")
        _check_table(s.name, data)
        excluded = data.info.get("excluded_cases", [])
        if not any(case.names in str(entry) for entry in excluded):
            _fail(f"{s.name}: with on_error='skip', {case.names!r} must be listed in "
                  f"info['excluded_cases'] ({{patient_id, reason}}); got {excluded}")


def source_checks(source: DataSource | type[DataSource] | str, options: Mapping[str, Any], *,
                  broken: Sequence[BrokenInput] = ()
                  ) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(name, check)`` pairs, each ``check()`` raising ``AssertionError`` on failure."""
    s = _resolve(source)
    yield "declarations", functools.partial(check_declarations, s, options)
    yield "table", functools.partial(check_table, s, options)
    yield "inputs_unchanged", functools.partial(check_inputs_unchanged, s, options)
    yield "determinism", functools.partial(check_determinism, s, options)
    yield "missing_input", functools.partial(check_missing_input, s, options)
    yield "broken_inputs", functools.partial(check_broken_inputs, s, broken)


def check_source(source: DataSource | type[DataSource] | str, options: Mapping[str, Any], *,
                 broken: Sequence[BrokenInput] = ()) -> None:
    """Prove a data source keeps the contract: run every check of the module docstring.

    Parameters
    ----------
    source : DataSource or type or str
        An instance, a class or a registered name.
    options : Mapping
        The ``[data]`` keys of a small valid cohort (paths absolute).
    broken : sequence of BrokenInput, optional
        Broken inputs the source must refuse with one clear ``DataError`` (or skip under
        ``on_error = "skip"``).

    Raises
    ------
    AssertionError
        Listing every failed check.

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from pathlib import Path
    >>> from spikebench.datasets.sources.conformance import check_source
    >>> tmp = Path(tempfile.mkdtemp())
    >>> pd.DataFrame({"patient_id": list("aabbccdd"), "label": [0, 1] * 4,
    ...               "f_0": range(8)}).to_csv(tmp / "t.csv", index=False)
    >>> check_source("table", {"path": str(tmp / "t.csv")})  # passes: returns None
    """
    s = _resolve(source)
    failures = []
    for name, check in source_checks(s, options, broken=broken):
        try:
            check()
        except AssertionError as exc:
            failures.append(f"- {name}: {exc}")
        except Exception as exc:  # e.g. options that do not validate: report, run the rest
            failures.append(f"- {name}: raised {type(exc).__name__}: {exc}")
    if failures:
        raise AssertionError(f"data source {s.name!r} fails {len(failures)} conformance "
                             "check(s):\n" + "\n".join(failures))


__all__ = ["BrokenInput", "check_source", "source_checks"]
