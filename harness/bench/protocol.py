"""Time to result: mean Optuna trial time per rule and backend on a spec's cohort, and the full
protocol's wall time extrapolated from a fixed small budget of it.

:func:`trial_times` tunes every backend × rule cell of a spec for ``trials`` trials on the
protocol's first tuning fold (the same code path as ``spikebench study run``: ``open_session`` →
``tune``) and reads each trial's wall time from the Optuna storage (``datetime_start`` →
``datetime_complete``; pruned trials count, as they do in a real run). Within a rule the
backends take turns, one trial each per round, so that load from other processes on a shared
machine spreads over all of them; everything runs in this process with ``threads`` torch
threads (1 = what each of 2 workers gets on 2 cores).

:func:`extrapolate` turns those means into the full protocol's time on this machine::

    cell time  = studies × trials × mean trial + refits × refit time
    refit time ≈ mean trial × n_outer_train / n_tune_train        (one fit on more patients)
    total      = Σ cells + references;   with W workers: total / (W × efficiency(W))

``studies`` and ``refits`` come from the spec's folds (nested CV: one tuning study and one refit
per outer fold and repeat), ``efficiency`` from :data:`WORKER_EFFICIENCY` (measured with
``spikebench bench --study SPEC --throughput``: 1 vs 2 processes); more workers than cores gain
nothing. The estimate is an upper bound in one respect: the few measured trials are the
sampler's start-up trials, which the median pruner never stops, while a 50-trial study prunes
some later ones.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spikebench.harness.bench.throughput import _one_cell
from spikebench.harness.spec import StudySpec, load_spec

#: Parallel efficiency per worker count on 2 cores: trials/min of W one-thread workers ÷ W × the
#: one-thread rate. Measured on the 131-patient phantom cohort (custom/surrogate, journal
#: storage, 12 trials): 2 workers ran 15.6 trials/min, one thread alone 12.3 (mean trial
#: 4.87 s from ``bench --study``): 15.6 / (2 × 12.3) = 0.63. Workers share 2 cores' memory
#: bandwidth and caches, and the last trials of a budget run alone.
WORKER_EFFICIENCY = {1: 1.0, 2: 0.63}


class _Cell:
    """One backend × rule cell tuned trial by trial on its first tuning fold."""

    def __init__(self, spec: StudySpec, prepared: Path, work: Path) -> None:
        from spikebench.harness.storage import open_storage
        from spikebench.harness.study import open_session

        shutil.copytree(prepared, work / "data")
        self.spec, self.url = spec, f"journal:{work / 'optuna.journal'}"
        self.session = open_session(spec, work, self.url)
        self.plan = self.session.plans[0]
        self.fold = next(iter(self.plan.studies().values())) if not self.plan.skip_reason \
            else None
        self.storage = open_storage(self.url)
        if self.fold is not None:  # one sampler per cell, as tune() keeps it across trials
            from spikebench.harness.tuning import make_objective, open_study

            self.study = open_study(self.plan, self.fold, self.storage, spec.search)
            self.objective = make_objective(self.plan, self.fold, self.session.data,
                                            spec.search)

    def run_until(self, trials: int) -> None:
        """Run trials until the study holds ``trials`` finished ones (one more per round)."""
        from optuna.trial import TrialState

        from spikebench.harness.tuning import TRIAL_ERRORS

        if self.fold is None:
            return
        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        for _ in range(3 * trials + 3):  # failed trials are retried a few times
            done = sum(t.state in finished for t in self.study.get_trials(deepcopy=False))
            if done >= trials:
                return
            self.study.optimize(self.objective, n_trials=1, catch=TRIAL_ERRORS)

    def summary(self) -> dict[str, Any]:
        import optuna

        if self.fold is None:
            return {"skipped": self.plan.skip_reason}
        study = optuna.load_study(study_name=self.plan.study_name(self.fold),
                                  storage=self.storage)
        seconds = [(t.datetime_complete - t.datetime_start).total_seconds()
                   for t in study.trials
                   if t.datetime_complete is not None and t.datetime_start is not None]
        states = [t.state.name for t in study.trials]
        fold = self.fold
        return {"trial_seconds": seconds,
                "mean_s": statistics.fmean(seconds) if seconds else None,
                "pruned": states.count("PRUNED"), "failed": states.count("FAIL"),
                "studies": len(self.plan.studies()), "n_tune_train": len(fold.tune_train),
                "n_outer_train": len(fold.tune_train) + len(fold.tune_val),
                "refits": len(self.session.folds)}


def trial_times(spec_path: str | Path, *, trials: int = 3, backends: Sequence[str] | None = None,
                rules: Sequence[str] | None = None, threads: int = 1,
                cache: str | Path | None = None) -> dict[str, Any]:
    """Mean trial time of every backend × rule cell of ``spec_path`` (module docstring).

    ``cache``: a folder that keeps the extracted features between runs (default: a temporary
    one, so the features are extracted once per call).

    Returns ``{"cells": {"backend/rule": {...}}, "trials", "threads", "spec", "search_trials"}``.
    """
    import optuna
    import torch

    from spikebench.harness.study import open_session

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec = load_spec(spec_path)
    backends = list(backends or spec.grid.backends)
    rules = list(rules or spec.grid.rules)
    old = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    result: dict[str, Any] = {"spec": str(spec_path), "trials": trials, "threads": threads,
                              "search_trials": spec.search.trials, "cells": {}}
    try:
        with tempfile.TemporaryDirectory(prefix="spikebench-trial-times-") as tmp:
            prepared = Path(cache) if cache is not None else Path(tmp) / "prepared"
            started = time.perf_counter()
            open_session(_one_cell(spec, backends[0], rules[0]), prepared, "")  # features once
            result["prepare_s"] = time.perf_counter() - started
            prepared = prepared / "data"
            for rule in rules:
                cells = {b: _Cell(_one_cell(spec, b, rule), prepared, Path(tmp) / f"{b}-{rule}")
                         for b in backends}
                for k in range(1, trials + 1):  # round-robin: load hits every backend alike
                    for cell in cells.values():
                        cell.run_until(k)
                for b, cell in cells.items():
                    result["cells"][f"{b}/{rule}"] = cell.summary()
    finally:
        torch.set_num_threads(old)
    return result


def format_trial_times(result: dict[str, Any]) -> str:
    """Per rule: mean trial seconds per backend, the fastest marked, ratio to custom."""
    cells = result["cells"]
    rules = list(dict.fromkeys(k.split("/")[1] for k in cells))
    backends = list(dict.fromkeys(k.split("/")[0] for k in cells))
    lines = [f"mean trial time (s), {result['trials']} trials per cell, first tuning fold, "
             f"{result['threads']} torch thread(s); * = fastest in the rule",
             f"{'rule':12s} " + " ".join(f"{b:>16s}" for b in backends)]
    for rule in rules:
        means = {b: cells.get(f"{b}/{rule}", {}).get("mean_s") for b in backends}
        best = min((m for m in means.values() if m is not None), default=None)
        row = []
        for b in backends:
            m = means[b]
            row.append(f"{'-':>16s}" if m is None else
                       f"{m:>15.2f}{'*' if m == best else ' '}")
        lines.append(f"{rule:12s} " + " ".join(row))
    custom = {r: cells.get(f"custom/{r}", {}).get("mean_s") for r in rules}
    surrogate = custom.get("surrogate")
    if surrogate:
        lines.append("custom, rule ÷ surrogate: " + ", ".join(
            f"{r} {m / surrogate:.2f}×" for r, m in custom.items() if m is not None))
    return "\n".join(lines)


def extrapolate(result: dict[str, Any], *, workers: Sequence[int] = (1, 2),
                references_s: float = 0.0) -> dict[str, Any]:
    """The full protocol's wall time from :func:`trial_times` (module docstring)."""
    n_trials = int(result["search_trials"])
    per_cell: dict[str, float] = {}
    for key, c in result["cells"].items():
        if c.get("mean_s") is None:
            continue
        refit = c["mean_s"] * c["n_outer_train"] / max(c["n_tune_train"], 1)
        per_cell[key] = c["studies"] * n_trials * c["mean_s"] + c["refits"] * refit
    total = sum(per_cell.values()) + references_s
    by_workers = {w: total / (w * WORKER_EFFICIENCY.get(w, WORKER_EFFICIENCY[max(
        WORKER_EFFICIENCY)])) for w in workers}
    return {"per_cell_s": per_cell, "total_s": total, "by_workers_s": by_workers,
            "search_trials": n_trials}


def format_protocol(result: dict[str, Any], est: dict[str, Any]) -> str:
    lines = [f"full protocol extrapolated from {result['trials']} trials per cell "
             f"({est['search_trials']} trials per study in the spec):",
             f"{'cell':28s} {'hours':>8s}"]
    for key, s in sorted(est["per_cell_s"].items(), key=lambda kv: -kv[1]):
        lines.append(f"{key:28s} {s / 3600:>8.2f}")
    lines.append(f"{'total (1 worker)':28s} {est['total_s'] / 3600:>8.2f}")
    for w, s in est["by_workers_s"].items():
        lines.append(f"{f'{w} worker(s)':28s} {s / 3600:>8.2f}")
    return "\n".join(lines)
