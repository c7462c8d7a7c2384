"""The protocol's expected wall time from measured trials: a schedule model with an interval.

Input: what :func:`spikebench.harness.bench.protocol.trial_times` measured per cell (the
duration of every sampled trial and whether it came before or after the pruner's start-up
trials, the time of one refit, the cell's number of studies, trials per study and refits) and
the measured one-time costs (feature preparation, a worker's start, each backend's warm-up).

**The schedule model** is how ``spikebench study run --workers W`` runs (``harness/study.py``,
``harness/tuning.py``, ``harness/refit.py``): every worker walks the cells in plan order; the
W workers share the trials of one Optuna study (each takes the next trial when it is free:
greedy list scheduling) and wait until the study holds its budget of finished trials before
they move to the next study (a barrier per study: the last trials run while other workers
wait); then the refit jobs (cell × outer fold × repeat × refit seed), in plan order, go to
whichever worker is free (list scheduling again, no barrier). The pruner never stops the first
``pruner_startup`` trials of a study, so trial ``i`` of a study is drawn from the cell's
measured trials before the pruner's start-up (``i < pruner_startup``) or after it.

**Cores.** W one-process workers on C cores: each trial takes ``slowdown(W, C)`` times its
measured duration. Up to C workers this is the measured contention of concurrent workers
(memory bandwidth, caches; :data:`CONTENTION`); beyond C the workers time-share the cores, so
the factor grows by ``W / C``. The trials are measured with the bench's torch threads (default
1, what each of 2 workers gets on 2 cores); ``study run --workers 1`` gives its one worker all
C threads, so the 1-worker figure is pessimistic when the bench ran with fewer threads.

**The interval** is a two-stage bootstrap: each replicate resamples every cell's measured trial
durations (per phase) and refit times with replacement (the uncertainty of the means), draws
every trial of the protocol from that resample (the run's own randomness), schedules them as
above and adds the one-time costs. The point estimate is the replicates' median, the interval
their 2.5–97.5 % percentiles. It covers sampling noise of the measured durations only: a
machine whose speed drifts, TPE choosing slower configurations than the sampled ones, or a
pruner that acts differently on the whole budget are outside it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Per-trial time factor when 2 or more one-thread workers run concurrently, up to one worker
#: per core. Derived from ``spikebench bench --study SPEC --throughput`` on the 131-patient
#: phantom cohort (custom/surrogate, journal storage, 12 trials, 2 cores): 2 workers ran
#: 15.6 trials/min, one one-thread process alone 12.3, i.e. 1 / 0.63 = 1.59 per trial including
#: the 12-trial run's tail (about 1/13 of its span), so 1.59 × 12 / 13 = 1.47 per trial.
#: ``bench --protocol SPEC --contention X`` overrides it (for example from a ``--check`` run).
CONTENTION = 1.47


def slowdown(workers: int, cores: int, contention: float = CONTENTION) -> float:
    """Per-trial time factor of ``workers`` one-process workers on ``cores`` cores.

    Parameters
    ----------
    workers, cores : int
        Worker processes and CPU cores (both >= 1).
    contention : float
        Factor of 2..``cores`` concurrent workers (:data:`CONTENTION`).

    Returns
    -------
    float
        1 for one worker; ``contention`` up to one worker per core; beyond,
        ``contention × workers / cores`` (time-sharing).

    Examples
    --------
    >>> slowdown(1, 2), slowdown(2, 2, 1.5), slowdown(4, 2, 1.5)
    (1.0, 1.5, 3.0)
    """
    if workers < 1 or cores < 1:
        raise ValueError(f"workers and cores must be >= 1, got {workers}, {cores}")
    if workers == 1:
        return 1.0
    return contention * max(1.0, workers / cores)


@dataclasses.dataclass(frozen=True)
class CellCost:
    """What the schedule needs of one cell (module docstring)."""

    label: str
    #: Measured trial durations (s) before and after the pruner's start-up trials.
    early: tuple[float, ...]
    late: tuple[float, ...]
    #: Trials of a study the pruner never stops.
    pruner_startup: int
    studies: int
    trials: int
    #: Measured refit durations (s) and the protocol's number of refits.
    refit: tuple[float, ...]
    refits: int

    @classmethod
    def from_measured(cls, label: str, cell: Mapping[str, Any]) -> CellCost:
        """The cost of a cell as :func:`~spikebench.harness.bench.protocol.trial_times`
        recorded it (``trial_seconds``, ``trial_index``, ``pruner_startup``, ``studies``,
        ``trials_per_study``, ``refit_seconds``, ``refits``)."""
        seconds = [float(s) for s in cell.get("trial_seconds", [])]
        index = list(cell.get("trial_index", range(len(seconds))))
        p = int(cell.get("pruner_startup", 0))
        early = tuple(s for s, i in zip(seconds, index) if i < p)
        late = tuple(s for s, i in zip(seconds, index) if i >= p)
        refit = tuple(float(s) for s in cell.get("refit_seconds", []))
        if not refit and seconds:  # no refit measured: one trial's time stands for it
            refit = (float(np.mean(seconds)),)
        return cls(label=label, early=early, late=late, pruner_startup=p,
                   studies=int(cell.get("studies", 0)),
                   trials=int(cell.get("trials_per_study", 0)),
                   refit=refit, refits=int(cell.get("refits", 0)))

    def phases(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(early, late)`` samples, each standing in for the other when it is empty."""
        early = self.early or self.late
        late = self.late or self.early
        return early, late

    def expected_seconds(self) -> float:
        """One worker, point arithmetic: ``studies × (P × mean early + (n − P) × mean late)
        + refits × mean refit``."""
        early, late = self.phases()
        p = min(self.pruner_startup, self.trials)
        tuning = 0.0
        if self.trials and early:
            tuning = self.studies * (p * float(np.mean(early))
                                     + (self.trials - p) * float(np.mean(late)))
        refit = self.refits * float(np.mean(self.refit)) if self.refit else 0.0
        return tuning + refit


def _stage1(sample: Sequence[float], replicates: int, rng: np.random.Generator) -> np.ndarray:
    """``[replicates, k]``: ``sample`` (``k`` values) resampled with replacement per replicate
    (the uncertainty of its mean; shared by every study of the cell within a replicate)."""
    values = np.asarray(sample, dtype=float)
    if values.size == 0:
        return np.zeros((replicates, 0))
    return values[rng.integers(0, values.size, (replicates, values.size))]


def _draw(first: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``[replicates, size]`` values drawn from each replicate's resample ``first``."""
    if size == 0 or first.shape[1] == 0:
        return np.zeros((first.shape[0], size))
    picks = rng.integers(0, first.shape[1], (first.shape[0], size))
    return np.take_along_axis(first, picks, axis=1)


def _list_schedule(free: np.ndarray, durations: np.ndarray) -> np.ndarray:
    """Greedy list scheduling, per replicate: each job (a column of ``durations``, in order)
    goes to the worker free first; ``free`` is ``[replicates, workers]`` and is updated."""
    rows = np.arange(free.shape[0])
    if free.shape[1] == 1:
        free[:, 0] += durations.sum(axis=1)
        return free
    for j in range(durations.shape[1]):
        w = np.argmin(free, axis=1)
        free[rows, w] += durations[:, j]
    return free


def schedule(cells: Sequence[CellCost], workers: int, factor: float = 1.0, *,
             replicates: int = 400, seed: int = 0) -> np.ndarray:
    """Wall time (s) of tuning and refitting ``cells`` with ``workers`` workers, one value
    per bootstrap replicate (module docstring); trial and refit durations are multiplied by
    ``factor`` (:func:`slowdown`).

    Examples
    --------
    Two studies of 3 trials of 1 s and 2 refits of 2 s on 2 workers: each study ends after
    2 s (3 trials, the last alone), then the refits run side by side: 2 + 2 + 2 s.

    >>> cell = CellCost("c", (1.0,), (1.0,), 0, studies=2, trials=3, refit=(2.0,), refits=2)
    >>> float(schedule([cell], 2, replicates=3)[0])
    6.0
    """
    rng = np.random.default_rng(seed)
    now = np.zeros(replicates)
    refit_jobs = []
    for cell in cells:
        early, late = (_stage1(x, replicates, rng) for x in cell.phases())
        p = min(cell.pruner_startup, cell.trials)
        for _ in range(cell.studies if cell.trials and early.shape[1] else 0):
            durations = np.concatenate([_draw(early, p, rng),
                                        _draw(late, cell.trials - p, rng)], axis=1) * factor
            free = np.repeat(now[:, None], workers, axis=1)
            now = _list_schedule(free, durations).max(axis=1)  # barrier: the study's end
        if cell.refits and cell.refit:
            refits = _stage1(cell.refit, replicates, rng)
            refit_jobs.append(_draw(refits, cell.refits, rng) * factor)
    if refit_jobs:
        free = np.repeat(now[:, None], workers, axis=1)
        now = _list_schedule(free, np.concatenate(refit_jobs, axis=1)).max(axis=1)
    return now


def summary(values: np.ndarray) -> dict[str, float]:
    """``{"point_s", "low_s", "high_s"}``: the median and the 2.5–97.5 % percentiles."""
    low, point, high = np.percentile(values, [2.5, 50.0, 97.5])
    return {"point_s": float(point), "low_s": float(low), "high_s": float(high)}


def overhead_seconds(result: Mapping[str, Any], workers: int) -> float:
    """One-time costs of a run with ``workers`` workers: the data preparation, a worker's
    start (loading the prepared data; with more than one worker also starting a process that
    imports torch) and the backends' warm-ups, paid once per worker process but in parallel."""
    prepare = float(result.get("prepare_s", 0.0))
    start = float(result.get("reopen_s", 0.0))
    if workers > 1:
        start += float(result.get("process_start_s", 0.0))
    warm = sum(float(s) for s in result.get("warmup_s", {}).values())
    return prepare + start + warm


def estimate(result: Mapping[str, Any], *, workers: Sequence[int] = (1, 2),
             cores: int | None = None, contention: float = CONTENTION,
             replicates: int = 400, seed: int = 0) -> dict[str, Any]:
    """Expected wall time of the protocol measured in ``result`` (module docstring).

    Parameters
    ----------
    result : mapping
        What :func:`~spikebench.harness.bench.protocol.trial_times` returned.
    workers : sequence of int
        Worker counts to predict for.
    cores : int, optional
        CPU cores (default: this machine's).
    contention : float
        Per-trial factor of concurrent workers (:func:`slowdown`).
    replicates, seed : int
        Bootstrap replicates and their seed.

    Returns
    -------
    dict
        ``cores``, ``contention``, ``model`` (one line), ``cells`` (per cell: ``expected_s``
        for one worker by point arithmetic, its ``share`` of all cells' and, per worker
        count, ``{"point_s", "low_s", "high_s"}`` of the cell run alone), ``total`` (per
        worker count: the same for the whole protocol including ``overhead_s``).
    """
    import os

    cores = int(cores or os.cpu_count() or 1)
    costs = [CellCost.from_measured(k, c) for k, c in result["cells"].items()
             if c.get("trial_seconds") or c.get("refit_seconds")]
    cells: dict[str, Any] = {}
    total: dict[str, Any] = {}
    for w in dict.fromkeys(int(x) for x in workers):
        factor = slowdown(w, cores, contention)
        for cell in costs:
            entry = cells.setdefault(cell.label, {"expected_s": cell.expected_seconds()})
            entry[str(w)] = summary(schedule([cell], w, factor, replicates=replicates,
                                             seed=seed))
        overhead = overhead_seconds(result, w)
        runs = schedule(costs, w, factor, replicates=replicates, seed=seed) + overhead
        total[str(w)] = {**summary(runs), "overhead_s": overhead, "slowdown": factor}
    whole = sum(c["expected_s"] for c in cells.values())
    for entry in cells.values():  # where the time goes: each cell's part of the one-worker sum
        entry["share"] = entry["expected_s"] / whole if whole > 0 else None
    return {"cores": cores, "contention": contention, "replicates": replicates,
            "model": "per study: trials list-scheduled over W workers, barrier at its end; "
                     "then refits list-scheduled; trial time x slowdown(W, cores)",
            "cells": cells, "total": total}


def _interval(entry: Mapping[str, float], unit: float) -> str:
    return (f"{entry['point_s'] / unit:.2f} [{entry['low_s'] / unit:.2f}-"
            f"{entry['high_s'] / unit:.2f}]")


def format_estimate(result: Mapping[str, Any], est: Mapping[str, Any]) -> str:
    """The measured cells and the expected wall time per cell and in total, in hours."""
    workers = list(est["total"])
    unit = 3600.0 if max(v["point_s"] for v in est["total"].values()) > 3600 else 60.0
    name = "h" if unit == 3600 else "min"
    lines = [f"expected protocol wall time ({name}, median [95 % interval]) from "
             f"{result['trials']} sampled trials per cell; {est['cores']} cores, "
             f"contention {est['contention']:.2f}",
             f"{'cell':28s} {'trial s':>12s} {'pruned':>7s} {'epochs c/p':>11s} "
             f"{'refit s x n':>13s} " + " ".join(f"{f'{w} worker(s)':>20s}" for w in workers)]
    for key, cell in result["cells"].items():
        if key not in est["cells"]:
            lines.append(f"{key:28s} {cell.get('skipped') or 'no measurement'}")
            continue
        mean, sd = cell.get("mean_s"), cell.get("sd_s")
        trial = "-" if mean is None else f"{mean:.2f}±{sd or 0:.2f}"
        pruned = cell.get("pruned_share")
        epochs = f"{_num(cell.get('epochs_complete'))}/{_num(cell.get('epochs_pruned'))}"
        refit = f"{_num(cell.get('refit_s'))}x{cell.get('refits', 0)}"
        lines.append(f"{key:28s} {trial:>12s} "
                     f"{'-' if pruned is None else f'{100 * pruned:.0f}%':>7s} {epochs:>11s} "
                     f"{refit:>13s} " + " ".join(
                         f"{_interval(est['cells'][key][w], unit):>20s}" for w in workers))
    lines.append(f"{'total (with one-time costs)':28s} {'':>12s} {'':>7s} {'':>11s} {'':>13s} "
                 + " ".join(f"{_interval(est['total'][w], unit):>20s}" for w in workers))
    lines.append("one-time costs: " + ", ".join(
        f"{w} worker(s) {est['total'][w]['overhead_s']:.0f} s" for w in workers)
        + "; per-trial slowdown: " + ", ".join(
        f"{w}: {est['total'][w]['slowdown']:.2f}" for w in workers))
    return "\n".join(lines)


def _num(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.1f}"
