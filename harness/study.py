"""Run a study: data → folds → cell plans → tuning → refits → collected tables.

:func:`run_study` is the whole data flow in order (see ``docs/architecture.md``):

1. the spec's data source delivers the feature table (:mod:`~spikebench.harness.data`);
2. the protocol scheme cuts it into folds by patient (:mod:`~spikebench.harness.protocol`);
3. every backend × rule cell becomes a :class:`~spikebench.harness.plan.CellPlan`;
4. each cell is tuned by Optuna on each of its studies (:mod:`~spikebench.harness.tuning`);
5. the best configuration is refit per fold and tested once (:mod:`~spikebench.harness.refit`);
6. the per-job files are collected into the tables reports read
   (:class:`~spikebench.harness.folder.ResultsFolder`).

Every step resumes: tuning runs only missing trials, refits only missing or outdated rows.
``workers`` > 1 runs steps 4–5 in that many processes; other machines join through an RDB
storage.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spikebench.errors import SpecError, SpikebenchError
from spikebench.harness.data import StudyData, load_study_data
from spikebench.harness.folder import ResultsFolder, spec_identity
from spikebench.harness.plan import CellPlan, inputs_available, plan_cells
from spikebench.harness.protocol import Fold, make_folds
from spikebench.harness.spec import StudySpec, load_spec, parse_spec

if TYPE_CHECKING:
    import multiprocessing.process
    from types import FrameType

    import optuna
    import pandas as pd
    from optuna.storages import BaseStorage


@dataclasses.dataclass(frozen=True)
class Session:
    """What one process needs to work on a study: explicit values, no hidden state."""

    spec: StudySpec
    folder: ResultsFolder
    storage_url: str
    data: StudyData
    folds: list[Fold]
    plans: list[CellPlan]


def folds_of(spec: StudySpec, data: StudyData) -> list[Fold]:
    """The protocol's folds for ``data`` under ``spec``'s ``[split]`` settings."""
    s = spec.split
    return make_folds(data.y, data.groups, scheme=s.scheme, repeats=s.repeats,
                      test_fraction=s.test_fraction, val_fraction=s.val_fraction, seed=s.seed,
                      outer_folds=s.outer_folds, refit_seeds=s.n_refits,
                      inner_folds=s.inner_folds, split=data.split)


def check_tuning_metric(spec: StudySpec, data: StudyData, folds: list[Fold]) -> None:
    """Refuse a patient-level tuning metric on validation sets too small for it: with a few
    patients per class it takes a handful of values (often 1.0) and tuning picks among ties."""
    if not spec.study.metric.startswith("patient_"):
        return
    from spikebench.harness.splits import patient_labels

    labels = patient_labels(data.y, data.groups)
    need = spec.study.min_val_patients_per_class
    for fold, val in ((f, v) for f in folds for _, v in f.tuning_splits):
        counts = [sum(labels[p] == c for p in val) for c in (0, 1)]
        if min(counts) < need:
            raise SpecError(
                f"[study].metric = {spec.study.metric!r}: the tuning validation set of fold "
                f"{fold.key} has {counts[0]} patients without and {counts[1]} with lesions "
                f"(< {need} per class), so the metric cannot discriminate between trials. "
                "Tune on a slice-level metric (metric = \"pr_auc\"), raise [split].val_fraction, "
                "or lower [study].min_val_patients_per_class")


def open_session(spec: StudySpec, out: Path, storage_url: str, *, trials: int | None = None,
                 progress: bool = False) -> Session:
    """Load data, cut folds and plan cells for ``spec`` in results folder ``out``."""
    folder = ResultsFolder(out)
    data = load_study_data(spec, folder.data_dir, progress=progress)
    folds = folds_of(spec, data)
    check_tuning_metric(spec, data, folds)
    plans = [inputs_available(p, data.feature_names)
             for p in plan_cells(spec, folds, trials=trials)]
    return Session(spec, folder, storage_url, data, folds, plans)


def work(session: Session, *, worker: int = 0, progress: bool = False) -> None:
    """Tune every cell this process can help with, then do the missing refits."""
    from spikebench.harness.refit import Refitter, run_refits
    from spikebench.harness.storage.journal import StorageError
    from spikebench.harness.tuning import tune

    search = session.spec.search
    storage = _open(session)
    identity = study_identity(session)
    refitter = Refitter(session.folder, session.data, storage, search,
                        session.spec.study.eval_steps)
    failed: set[str] = set()  # cells whose tuning failed in this run (a rerun retries them)
    for plan in session.plans:
        if plan.skip_reason:
            if not session.folder.has(session.folder.cell_failure(plan.key)):
                refitter.record_failure(plan, plan.skip_reason, status="skipped")
            continue
        if not plan.tuned:
            continue
        try:
            for fold in plan.studies().values():
                tune(plan, fold, session.data, storage, search, worker=worker,
                     progress=progress, identity=identity)
            session.folder.clear_failure(plan.key)  # tuned now: an earlier failure is retried
        except StorageError:
            raise  # the storage, not this cell, is at fault: stop the run
        except SpikebenchError as exc:
            failed.add(plan.key)
            refitter.record_failure(plan, str(exc))
    runnable = [p for p in session.plans if p.key not in failed or p.kind == "reference"]
    run_refits(refitter, runnable, poll_seconds=search.poll_seconds, progress=progress)


def study_identity(session: Session) -> dict[str, str]:
    """The run's identity as every Optuna study of it records it (optuna-dashboard shows it):
    the hashes of identity.json and the protocol scheme."""
    return {"spec_sha256": spec_identity(session.spec)[0],
            "data_sha256": str(session.data.info.get("sha256", "")),
            "scheme": session.spec.split.scheme}


def _open(session: Session) -> BaseStorage:
    from spikebench.harness.storage import open_storage

    s = session.spec.search
    return open_storage(session.storage_url, heartbeat_interval=s.heartbeat_interval,
                        grace_period=s.grace_period, max_retry=s.max_retry)


def _worker_main(raw_spec: dict[str, Any], out: str, storage: str, trials: int | None,
                 worker: int, threads: int, progress: bool = False, parent: int = 0) -> None:
    """A local worker process: dies with its parent, leaves Ctrl-C to the parent (which ends
    it), and prints nothing but progress and its one-line error."""
    import optuna
    import torch

    _die_with_parent(parent)
    _exit_quietly_on_sigterm()
    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from spikebench.harness.storage import storage_lost_as_error

    try:
        spec = parse_spec(raw_spec)
        with storage_lost_as_error(storage):
            work(open_session(spec, Path(out), storage, trials=trials), worker=worker,
                 progress=progress)
    except SpikebenchError as exc:
        import sys

        print(f"spikebench: error (worker {worker}): {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
    except OSError as exc:
        import sys

        from spikebench.oserror import describe_os_error

        print(f"spikebench: error (worker {worker}): {describe_os_error(exc)}",
              file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _exit_quietly_on_sigterm() -> None:
    """The parent ends workers with SIGTERM (after Ctrl-C): unwind (``finally`` blocks,
    finalizers: no leaked semaphores, no half-written file) and exit without a traceback."""
    import signal

    def stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (no orphaned workers after a
    SIGKILL of the parent); exit at once if the parent is already gone."""
    import signal

    if parent and os.getppid() != parent:
        os._exit(1)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers end when their parent's pipe does
        return
    if parent and os.getppid() != parent:
        os._exit(1)


def threads_per_worker(workers: int) -> int:
    """Torch threads per local worker process: the cores shared evenly."""
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


def run_study(
    spec: StudySpec | str | Path,
    out: str | Path,
    *,
    trials: int | None = None,
    storage: str | None = None,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Run (or resume) the study ``spec`` into the results folder ``out``; returns ``out``.

    ``spec`` is a :class:`StudySpec` or the path of a TOML spec; ``trials`` overrides
    ``[search].trials`` (a larger value resumes tuning and redoes refits whose best trial
    changed); ``storage`` is an Optuna storage URL (default: a journal file in ``out``, or
    ``$SPIKEBENCH_STORAGE``). ``workers`` > 1 starts that many local worker processes, each
    with ``cores // workers`` torch threads; ``run_study`` calls on other machines join
    through the same RDB ``storage``. A folder holding another study is refused.
    """
    import optuna
    import torch

    from spikebench.harness.storage import (
        JOURNAL,
        check_storage,
        open_storage,
        storage_lost_as_error,
        storage_url,
    )

    if workers < 1:
        raise SpecError(f"--workers must be >= 1, got {workers}")
    if trials is not None and trials < 1:
        raise SpecError(f"--trials must be >= 1, got {trials}")
    spec_text = None
    if not isinstance(spec, StudySpec):
        spec = load_spec(spec)
    spec_text = spec_toml(spec)
    folder = ResultsFolder(out)
    url = storage_url(folder.journal, spec.search.storage, storage)
    check_storage(url)  # a bad storage or device is refused before the folder is made
    if not url.startswith(JOURNAL):  # an RDB storage that cannot hold studies, too
        open_storage(url, heartbeat_interval=spec.search.heartbeat_interval,
                     grace_period=spec.search.grace_period, max_retry=spec.search.max_retry)
    from spikebench.harness.plan import resolve_device

    resolve_device(spec.study.device)
    _check_inputs(spec)
    folder.create()
    folder.check_spec(spec)  # another spec is refused before the data is loaded
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    with folder.guard_data():  # a bound folder's data/ is as it was unless it is this study
        session = open_session(spec, folder.root, url, trials=trials, progress=progress)
        folder.bind(spec, session.data.info["sha256"], session.data.info.get("file_sha256", ""))
    folder.write_spec(spec_text)
    folder.write_splits({"scheme": spec.split.scheme,
                         "folds": [f.as_dict() for f in session.folds]})
    from spikebench.harness.protocol_record import protocol_record

    protocol = protocol_record(session, url, started, workers=workers)
    folder.write_protocol(protocol)
    with storage_lost_as_error(url):  # a server gone mid-study: one line, nothing lost
        _open(session)  # create the storage once before workers race to it
        threads = threads_per_worker(workers)
        if workers == 1:
            torch.set_num_threads(threads)
            work(session, progress=progress)
        else:
            _spawn(spec, folder.root, url, trials, workers, threads, progress)
            torch.set_num_threads(os.cpu_count() or 1)
            work(session, progress=progress)  # anything a dead worker left behind
        collect(session)
    protocol = protocol_record(session, url, started, workers=workers)
    protocol["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    folder.write_protocol(protocol)
    return folder.root


def _check_inputs(spec: StudySpec) -> None:
    """The data source's input paths exist (a missing file or a loop of symbolic links is
    refused before the results folder is made)."""
    from spikebench.harness.spec import data_options

    source, _ = data_options(spec)
    for key in source.path_options:
        value = spec.data.options.get(key)
        if isinstance(value, str) and value and not os.path.exists(value):
            why = ("a loop of symbolic links" if os.path.islink(value) else "does not exist")
            raise SpecError(f"[data].{key} = {value!r}: {why}; check the path (relative paths "
                            "are taken from the spec file's folder)")


def _spawn(spec: StudySpec, out: Path, url: str, trials: int | None, workers: int,
           threads: int, progress: bool) -> None:
    """Run ``workers`` local worker processes to the end. They ignore Ctrl-C (SIGINT is
    ignored while they start, and the disposition is inherited): the parent gets the
    KeyboardInterrupt, ends them and exits quietly; a SIGKILLed parent takes them along."""
    import multiprocessing as mp
    import signal

    ctx = mp.get_context("spawn")
    raw = spec.model_dump(mode="python")
    procs = [ctx.Process(target=_worker_main, daemon=True,
                         args=(raw, str(out), url, trials, i, threads, progress and i == 0,
                               os.getpid()))
             for i in range(workers)]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for p in procs:
            p.start()
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        for p in procs:
            p.join()
    finally:
        _end(procs)
    failed = [p.exitcode for p in procs if p.exitcode == 2]
    if failed:
        from spikebench.harness.storage.journal import StorageError

        raise StorageError(f"{len(failed)} of {workers} worker processes stopped with the error "
                           "printed above; fix it and rerun the same command to resume")


def _end(procs: Sequence[multiprocessing.process.BaseProcess]) -> None:
    """Terminate worker processes still running (after Ctrl-C or an error in the parent)."""
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.kill()
            p.join()


def spec_toml(spec: StudySpec) -> str:
    """The resolved spec as TOML (what ran; a storage URL's password is never written)."""
    from spikebench.harness.storage import redact

    raw = spec.model_dump(mode="json", exclude_none=True)
    raw["search"]["storage"] = redact(raw["search"].get("storage", ""))
    text = _toml(raw)
    tomllib.loads(text)  # written only if it reads back
    return text


def _toml(raw: dict[str, Any], prefix: str = "") -> str:
    import json

    scalars, tables = [], []
    for key, value in raw.items():
        if isinstance(value, dict):
            tables.append(_toml(value, f"{prefix}{key}."))
        else:
            scalars.append(f"{key} = {json.dumps(value)}")
    head = [f"[{prefix[:-1]}]"] if prefix and scalars else []
    return "\n".join(head + scalars + [""]) + "\n".join(t for t in tables if t)


def collect(session: Session) -> None:
    """Rebuild results / predictions / curves / trials tables from the per-job files."""
    from spikebench.io import write_parquet

    session.folder.collect()
    write_parquet(session.folder.table("trials"), trials_frame(session))


def trials_frame(session: Session) -> pd.DataFrame:
    """Every trial of every cell and study as one table (reports read this, not storage)."""
    import pandas as pd

    storage = _open(session)
    multi = bool(session.spec.search.minimize)
    frames = []
    for plan in session.plans:
        if not plan.tuned:
            continue
        for name, fold in plan.studies().items():
            study = load_existing(storage, name)
            if study is None:
                continue
            df = _study_frame(study, multi)
            if df is None:
                continue
            df.insert(0, "study", fold.study)  # the Optuna study within the cell ("" = one)
            df.insert(0, "fold", fold.fold)
            df.insert(0, "rule", plan.rule)
            df.insert(0, "backend", plan.backend)
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _study_frame(study: optuna.Study, multi: bool) -> pd.DataFrame | None:
    value = "values" if multi else "value"
    df = study.trials_dataframe(attrs=("number", value, "params", "state", "duration",
                                       "user_attrs", "datetime_start"))
    if df.empty:
        return None
    # objective columns keep their positional names (value / values_0, values_1) whatever
    # metric names the study carries for the dashboard
    names = study.metric_names or []
    df = df.rename(columns={f"value_{n}": "value" for n in names[:1] if not multi}
                   | {f"values_{n}": f"values_{i}" for i, n in enumerate(names) if multi})
    df["state"] = df["state"].astype(str)
    if "duration" in df:
        df["duration_seconds"] = df.pop("duration").dt.total_seconds()
    pareto = {t.number for t in study.best_trials} if multi else (
        {study.best_trial.number} if any(df["state"] == "COMPLETE") else set())
    df["pareto"] = df["number"].isin(pareto)
    return df


def load_existing(storage: BaseStorage, name: str) -> optuna.Study | None:
    """The Optuna study ``name`` if the storage has it, else None."""
    import optuna

    names = {s.study_name for s in optuna.get_all_study_summaries(storage=storage)}
    if name not in names:
        return None
    return optuna.load_study(study_name=name, storage=storage)
