"""Study throughput: trials per minute with 1 and N local worker processes on the same spec.

Throughput is measured from the first trial's start to the last trial's end as recorded in the
Optuna storage, so process start-up (importing torch) does not count; each worker gets
``cores // workers`` torch threads, as ``spikebench study run --workers`` gives it. The storage
is the one a study would use (``$SPIKEBENCH_STORAGE``, else the spec's ``[search].storage``,
else a journal file), so PostgreSQL scaling is measured by pointing either at a database; each
worker count then gets a fresh study name there.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from spikebench.harness.folder import ResultsFolder
from spikebench.harness.spec import StudySpec, load_spec, parse_spec


def _tune_worker(raw: dict[str, Any], out: str, url: str, trials: int, worker: int,
                 threads: int) -> None:
    import optuna
    import torch

    from spikebench.harness.storage import open_storage
    from spikebench.harness.study import open_session
    from spikebench.harness.tuning import tune

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = parse_spec(raw)
    session = open_session(spec, Path(out), url, trials=trials)
    plan = session.plans[0]
    fold = next(iter(plan.studies().values()))
    tune(plan, fold, session.data, open_storage(url), spec.search, worker=worker)


def _one_cell(spec: StudySpec, backend: str | None, rule: str | None) -> StudySpec:
    grid = spec.grid.model_copy(update={"backends": [backend or spec.grid.backends[0]],
                                        "rules": [rule or spec.grid.rules[0]]})
    space = {k: v for k, v in spec.space.items() if k in grid.rules}
    study = spec.study.model_copy(update={"references": []})
    return spec.model_copy(update={"grid": grid, "space": space, "study": study})


def _renamed(spec: StudySpec, name: str) -> StudySpec:
    """``spec`` with study name ``name`` (a fresh Optuna study on a shared storage)."""
    return spec.model_copy(update={"study": spec.study.model_copy(update={"name": name})})


def study_throughput(spec_path: str | Path, *, trials: int = 40,
                     workers: tuple[int, ...] = (1, 2),
                     backend: str | None = None, rule: str | None = None) -> dict[str, Any]:
    """Tune one cell of ``spec_path`` with each worker count; returns trials/minute per count
    and the speed-up of each count over one worker."""
    import optuna

    from spikebench.harness.storage import open_storage, redact, storage_url
    from spikebench.harness.study import open_session, threads_per_worker
    from spikebench.harness.tuning import open_study

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = _one_cell(load_spec(spec_path), backend, rule)
    # a name of its own: on a shared database the runs never meet a real study
    spec = _renamed(spec, f"{spec.study.name}-throughput-{uuid.uuid4().hex[:8]}")
    result: dict[str, Any] = {"trials": trials, "per_workers": {}}
    with tempfile.TemporaryDirectory(prefix="spikebench-throughput-") as tmp:
        prepared = Path(tmp) / "prepared"
        session = open_session(spec, prepared, "")  # phantom + features, once
        cell = session.plans[0]
        if cell.skip_reason:
            raise ValueError(cell.skip_reason)
        fold = next(iter(cell.studies().values()))
        result["cell"] = cell.label
        ctx = mp.get_context("spawn")
        for n in workers:
            out = Path(tmp) / f"w{n}"
            shutil.copytree(prepared, out)
            url = storage_url(ResultsFolder(out).journal, spec.search.storage)
            result["storage"] = redact(url.split(":", 1)[0] if url.startswith("journal:")
                                       else url)
            open_study(cell, fold, open_storage(url), spec.search)  # create before the race
            raw = spec.model_dump(mode="python")
            started = time.perf_counter()
            procs = [ctx.Process(target=_tune_worker,
                                 args=(raw, str(out), url, trials, i, threads_per_worker(n)))
                     for i in range(n)]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            wall = time.perf_counter() - started
            study = optuna.load_study(study_name=cell.study_name(fold), storage=open_storage(url))
            done = [t for t in study.trials if t.datetime_complete is not None]
            ends = [t.datetime_complete for t in done if t.datetime_complete is not None]
            starts = [t.datetime_start for t in done if t.datetime_start is not None]
            span = (max(ends) - min(starts)).total_seconds()
            optuna.delete_study(study_name=study.study_name, storage=open_storage(url))
            result["per_workers"][n] = {"trials_per_minute": 60 * len(done) / span,
                                        "trials": len(done), "span_s": span, "wall_s": wall}
    base = result["per_workers"][workers[0]]["trials_per_minute"]
    for n in workers:
        result["per_workers"][n]["speedup"] = result["per_workers"][n]["trials_per_minute"] / base
    return result


def format_throughput(result: dict[str, Any]) -> str:
    lines = [f"study throughput, cell {result['cell']}, {result['trials']} trials, storage "
             f"{result.get('storage', 'journal')}",
             f"{'workers':>8} {'trials/min':>11} {'speed-up':>9} {'span s':>8} {'wall s':>8}"]
    for n, r in result["per_workers"].items():
        lines.append(f"{n:>8} {r['trials_per_minute']:>11.1f} {r['speedup']:>8.2f}x "
                     f"{r['span_s']:>8.1f} {r['wall_s']:>8.1f}")
    return "\n".join(lines)
