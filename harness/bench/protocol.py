"""Time to result: what every cell of a spec costs, measured on its own cohort.

:func:`trial_times` tunes every backend × rule cell of a spec (and, for ``bench --protocol``,
every reference: they are tuned with the same budget) on the protocol's first tuning fold,
through the same code path as ``spikebench study run`` (``open_session`` → the study's own
sampler, pruner and objective), and reads each trial from the Optuna storage: its wall time
(``datetime_start`` → ``datetime_complete``), its state (complete or pruned) and how many
epochs it reported. The cells take turns, one trial each per round, so that load from other
processes on a shared machine spreads over all of them; everything runs in this process with
``threads`` torch threads (1 = what each of 2 workers gets on 2 cores).

**Which trials.** The first trials of a study are never pruned (the median pruner waits for
``n_startup_trials`` finished trials) and are sampled at random (the sampler's start-up); the
later ones are TPE's and the pruner may stop them. :func:`sample_size` therefore runs past both
start-ups (``max(sampler start-up, pruner start-up) + extra`` trials, at most the spec's budget)
and every trial is recorded with its number, so :mod:`~spikebench.harness.bench.estimate`
prices a study's early trials and its later ones each from their own sample.

**Refits.** After the trials, each cell's best configuration is refit ``refits`` times on the
first outer fold as ``study run`` refits it (``Refitter.refit``: fit on the outer training
patients, test, write the row, predictions, curves and model) and timed; the protocol runs
``outer folds × repeats × refit seeds`` of them per cell (``len(plan.folds)``).

**One-time costs** are measured too: preparing the features (``prepare_s``), loading them
again as each worker does (``reopen_s``), starting a worker process (``process_start_s``:
a fresh interpreter importing torch, Optuna and the harness) and each backend's warm-up, paid
here before the first trial so that no trial carries it (``first_warmup_s``, a first build of
the C++ kernels included) and measured again in a fresh process (``warmup_s``: what each
worker of the run pays once the kernels are built).
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spikebench.errors import SpikebenchError
from spikebench.harness.spec import SearchTable, StudySpec, load_spec

if TYPE_CHECKING:
    from optuna.storages import BaseStorage
    from optuna.trial import FrozenTrial

    from spikebench.harness.plan import CellPlan
    from spikebench.harness.study import Session


def pruner_startup(search: SearchTable) -> int:
    """Trials of a study the pruner never stops: the median pruner's ``n_startup_trials``;
    0 for hyperband (it may stop any trial); every trial without a pruner or with two
    objectives (multi-objective studies report no epochs)."""
    if search.minimize or search.pruner == "none":
        return search.trials
    if search.pruner == "median":
        return int(search.pruner_options.get("n_startup_trials", 4))
    return 0


def sample_size(spec: StudySpec, extra: int = 3) -> int:
    """Trials per cell for ``bench --protocol``: past the sampler's and the pruner's start-up
    by ``extra`` trials, at most the study's budget (``[search].trials``).

    Examples
    --------
    >>> from spikebench.harness.spec import parse_spec
    >>> spec = parse_spec({"data": {"source": "phantom"}, "search": {"trials": 50}})
    >>> sample_size(spec)  # TPE starts with 10 random trials, the median pruner with 4
    13
    """
    from spikebench.harness.samplers import startup_trials

    search = spec.search
    startup = startup_trials(search.startup_trials, search.trials)
    pruner = pruner_startup(search)
    return min(search.trials, max(startup, pruner if pruner < search.trials else 0) + extra)


def restricted(spec: StudySpec, backends: Sequence[str] | None, rules: Sequence[str] | None,
               references: bool) -> StudySpec:
    """``spec`` with only ``backends`` × ``rules`` in its grid (default: all) and its
    references kept (``references``) or dropped."""
    grid = spec.grid.model_copy(update={"backends": list(backends or spec.grid.backends),
                                        "rules": list(rules or spec.grid.rules)})
    refs = list(spec.study.references) if references else []
    space = {k: v for k, v in spec.space.items() if k in grid.rules or k in refs}
    study = spec.study.model_copy(update={"references": refs})
    return spec.model_copy(update={"grid": grid, "space": space, "study": study})


class _Cell:
    """One cell tuned trial by trial on its first tuning fold, with its own sampler."""

    def __init__(self, plan: CellPlan, session: Session, storage: BaseStorage) -> None:
        self.plan, self.session = plan, session
        self.fold = next(iter(plan.studies().values()))
        self.refit_seconds: list[float] = []
        self.refit_problem = ""
        if plan.tuned:
            from spikebench.harness.tuning import make_objective, open_study

            search = session.spec.search
            self.study = open_study(plan, self.fold, storage, search)
            self.objective = make_objective(plan, self.fold, session.data, search)

    def run_until(self, trials: int) -> None:
        """Run trials until the study holds ``trials`` finished ones (one more per round)."""
        from optuna.trial import TrialState

        from spikebench.harness.tuning import TRIAL_ERRORS

        if not self.plan.tuned:
            return
        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        for _ in range(3 * trials + 3):  # failed trials are retried a few times
            done = sum(t.state in finished for t in self.study.get_trials(deepcopy=False))
            if done >= trials:
                return
            self.study.optimize(self.objective, n_trials=1, catch=TRIAL_ERRORS)

    def time_refits(self, refitter: Any, count: int) -> None:
        """Refit the best configuration on the first ``count`` folds, timing each."""
        for fold in self.plan.folds[:count]:
            started = time.perf_counter()
            try:
                refitter.refit(self.plan, fold)
            except SpikebenchError as exc:  # e.g. every sampled trial was pruned
                self.refit_problem = str(exc)
                return
            self.refit_seconds.append(time.perf_counter() - started)

    def summary(self, startup: int) -> dict[str, Any]:
        """What the cell measured (module docstring; fields read by the estimate)."""
        plan = self.plan
        out: dict[str, Any] = {
            "kind": plan.kind, "studies": len(plan.studies()) if plan.tuned else 0,
            "trials_per_study": plan.trials if plan.tuned else 0, "refits": len(plan.folds),
            "pruner_startup": startup, "refit_seconds": self.refit_seconds,
            "refit_s": statistics.fmean(self.refit_seconds) if self.refit_seconds else None}
        if self.refit_problem:
            out["refit_problem"] = self.refit_problem
        if plan.tuned:
            out.update(trial_stats(self.study.get_trials(deepcopy=False), startup))
        return out


def trial_stats(trials: Sequence[FrozenTrial], startup: int) -> dict[str, Any]:
    """What the estimate reads of a study's ``trials``: per finished trial its seconds,
    number, pruned or not and epochs reported; their mean and spread, the pruned share (all,
    and among trials numbered ``startup`` or later), the mean epochs of complete and of pruned
    trials and the count of failed trials."""
    from optuna.trial import TrialState

    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and t.datetime_start is not None and t.datetime_complete is not None]
    seconds = [(t.datetime_complete - t.datetime_start).total_seconds()  # type: ignore[operator]
               for t in done]
    pruned = [t.state == TrialState.PRUNED for t in done]
    epochs = [max(t.intermediate_values) + 1 if t.intermediate_values else None for t in done]
    late = [p for p, t in zip(pruned, done) if t.number >= startup]
    return {
        "trial_seconds": seconds, "trial_index": [t.number for t in done],
        "trial_pruned": pruned, "trial_epochs": epochs,
        "mean_s": statistics.fmean(seconds) if seconds else None,
        "sd_s": statistics.stdev(seconds) if len(seconds) > 1 else (0.0 if seconds else None),
        "pruned": sum(pruned), "pruned_share": sum(pruned) / len(done) if done else None,
        "pruned_share_late": sum(late) / len(late) if late else None,
        "epochs_complete": _mean([e for e, p in zip(epochs, pruned) if not p]),
        "epochs_pruned": _mean([e for e, p in zip(epochs, pruned) if p]),
        "failed": sum(t.state == TrialState.FAIL for t in trials)}


def load_average() -> list[float] | None:
    """The machine's 1, 5 and 15 minute load averages (None where the OS has none): recorded
    with every measurement, since other work on a shared machine slows it."""
    import os

    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _mean(values: Sequence[int | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


_FRESH = """
import json, sys, time
t = time.perf_counter()
import torch, optuna, spikebench.harness.study
from spikebench.harness.fit import warm_up
start = time.perf_counter() - t
print(json.dumps({"process_start_s": start,
                  "warmup_s": {b: warm_up(b, sys.argv[1]) for b in sys.argv[2:]}}))
"""


def fresh_process_costs(backends: Sequence[str], device: str = "cpu") -> dict[str, Any]:
    """What a spawned worker pays before its first trial: a fresh interpreter importing torch,
    Optuna and the harness (``process_start_s``, the interpreter's own start included) and
    each backend's warm-up there (``warmup_s``: loading the cached C++ kernels, first-call
    compilation), measured in a child process after this one has built what it builds."""
    import json

    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _FRESH, device, *backends], check=False,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    try:
        costs = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    except (ValueError, IndexError):  # the child failed: its wall time is all there is
        return {"process_start_s": wall, "warmup_s": {b: 0.0 for b in backends}}
    costs["process_start_s"] = wall - sum(costs["warmup_s"].values())
    return costs


def trial_times(spec_path: str | Path | StudySpec, *, trials: int | None = 3,
                backends: Sequence[str] | None = None, rules: Sequence[str] | None = None,
                threads: int = 1, cache: str | Path | None = None, references: bool = False,
                refits: int = 0, extra: int = 3) -> dict[str, Any]:
    """Measure every cell of ``spec_path`` (module docstring).

    Parameters
    ----------
    spec_path : path or StudySpec
        The study spec.
    trials : int, optional
        Trials per cell; None: :func:`sample_size` with ``extra``.
    backends, rules : sequence of str, optional
        Restrict the grid (default: the spec's).
    threads : int
        Torch threads of this process while it measures.
    cache : path, optional
        A folder that keeps the prepared features between runs (default: a temporary one).
    references : bool
        Also measure the spec's references (tuned like every cell).
    refits : int
        Refits to time per cell (0: none).

    Returns
    -------
    dict
        ``spec``, ``trials``, ``threads``, ``search_trials``, ``load_before`` and
        ``load_after`` (:func:`load_average`), ``prepare_s``, ``reopen_s``,
        ``first_warmup_s`` (per backend, in this process: a C++ kernel build included), with
        ``refits`` also ``process_start_s`` and ``warmup_s`` (per backend, in a fresh
        process: :func:`fresh_process_costs`) and ``cells``: per ``backend/rule``
        the trials' seconds, numbers, states and epochs, their mean and spread, the pruned
        share, the mean epochs of complete and pruned trials, the refit seconds and the
        protocol's counts (``studies``, ``trials_per_study``, ``refits``,
        ``pruner_startup``), or ``skipped`` with the reason.
    """
    import optuna
    import torch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = spec_path if isinstance(spec_path, StudySpec) else load_spec(spec_path)
    spec = restricted(spec, backends, rules, references)
    from spikebench.harness.plan import resolve_device

    resolve_device(spec.study.device)  # a device this machine lacks: refused before any work
    n = sample_size(spec, extra) if trials is None else trials
    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    result: dict[str, Any] = {"spec": str(spec_path) if not isinstance(spec_path, StudySpec)
                              else spec.study.name, "trials": n, "threads": threads,
                              "search_trials": spec.search.trials, "cells": {}}
    result["load_before"] = load_average()
    try:
        with tempfile.TemporaryDirectory(prefix="spikebench-trial-times-") as tmp:
            _measure(spec, Path(tmp), Path(cache) if cache is not None else None, n, refits,
                     result)
    finally:
        torch.set_num_threads(old)
    result["load_after"] = load_average()
    if refits:  # the protocol's estimate: what each worker process pays once
        result.update(fresh_process_costs(list(result["first_warmup_s"]),
                                          result.get("device", "cpu")))
    return result


def _measure(spec: StudySpec, tmp: Path, cache: Path | None, trials: int, refits: int,
             result: dict[str, Any]) -> None:
    from spikebench.harness.fit import warm_up
    from spikebench.harness.plan import REFERENCE
    from spikebench.harness.refit import Refitter
    from spikebench.harness.storage import open_storage
    from spikebench.harness.study import open_session

    prepared = cache if cache is not None else tmp / "prepared"
    started = time.perf_counter()
    open_session(spec, prepared, "")  # the features, once
    result["prepare_s"] = time.perf_counter() - started
    shutil.copytree(prepared / "data", tmp / "work" / "data")
    url = f"journal:{tmp / 'optuna.journal'}"
    started = time.perf_counter()
    session = open_session(spec, tmp / "work", url)
    result["reopen_s"] = time.perf_counter() - started
    devices = {p.backend: p.device for p in session.plans
               if p.backend != REFERENCE and not p.skip_reason}
    result["first_warmup_s"] = {b: warm_up(b, d) for b, d in devices.items()}  # once each
    result["device"] = session.plans[0].device if session.plans else "cpu"  # one per spec
    storage = open_storage(url)
    cells = {}
    for plan in session.plans:
        if plan.skip_reason:
            result["cells"][plan.label] = {"skipped": plan.skip_reason}
        else:
            cells[plan.label] = _Cell(plan, session, storage)
    for k in range(1, trials + 1):  # round-robin: load hits every cell alike
        for cell in cells.values():
            cell.run_until(k)
    refitter = Refitter(session.folder, session.data, storage, spec.search,
                        spec.study.eval_steps)
    startup = pruner_startup(spec.search)
    for label, cell in cells.items():
        cell.time_refits(refitter, refits)
        result["cells"][label] = cell.summary(startup)


def format_trial_times(result: dict[str, Any]) -> str:
    """Per rule: mean trial seconds per backend, the fastest marked, ratio to custom."""
    cells = {k: c for k, c in result["cells"].items() if c.get("mean_s") is not None}
    rules = list(dict.fromkeys(k.split("/")[1] for k in cells))
    backends = list(dict.fromkeys(k.split("/")[0] for k in cells))
    lines = [f"mean trial time (s), {result['trials']} trials per cell, first tuning fold, "
             f"{result['threads']} torch thread(s); * = fastest in the rule",
             f"{'rule':20s} " + " ".join(f"{b:>16s}" for b in backends)]
    for rule in rules:
        means = {b: cells.get(f"{b}/{rule}", {}).get("mean_s") for b in backends}
        best = min((m for m in means.values() if m is not None), default=None)
        row = []
        for b in backends:
            m = means[b]
            row.append(f"{'-':>16s}" if m is None else
                       f"{m:>15.2f}{'*' if m == best else ' '}")
        lines.append(f"{rule:20s} " + " ".join(row))
    custom = {r: cells.get(f"custom/{r}", {}).get("mean_s") for r in rules}
    surrogate = custom.get("surrogate")
    if surrogate:
        lines.append("custom, rule ÷ surrogate: " + ", ".join(
            f"{r} {m / surrogate:.2f}×" for r, m in custom.items() if m is not None))
    return "\n".join(lines)
