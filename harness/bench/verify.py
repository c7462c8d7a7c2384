"""``spikebench bench --protocol SPEC --verify``: the estimate checked against a real run.

A reduced protocol of the spec (its grid and references, nested CV with
:data:`REDUCED` ``outer_folds`` outer folds, one repeat, one refit seed, ``trials`` trials per
study, on a small phantom cohort) is first measured as ``bench --protocol`` measures
(:func:`~spikebench.harness.bench.protocol.trial_times`, with the torch threads each of the run's
workers gets) and its wall time predicted (:func:`~spikebench.harness.bench.estimate.estimate`);
then the same reduced spec runs for real with ``spikebench study run``'s code
(:func:`~spikebench.harness.study.run_study`, ``workers`` local worker processes) in a temporary
folder, and its wall time is measured. The ratio predicted ÷ measured says how far the model's
arithmetic, schedule and one-time costs are from what the harness does, at this size; it does
not validate the figures of a long run, whose trials the sampled ones must stand for.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spikebench.harness.spec import StudySpec, load_spec

#: The reduced protocol: outer folds, trials per study, phantom patients and slice size.
REDUCED: dict[str, Any] = {"outer_folds": 2, "trials": 8, "cases": 16, "shape": [64, 64]}


def reduced_spec(spec: StudySpec, *, outer_folds: int = REDUCED["outer_folds"],
                 trials: int = REDUCED["trials"], cases: int = REDUCED["cases"],
                 shape: Sequence[int] = REDUCED["shape"]) -> StudySpec:
    """``spec``'s grid, references, search settings and spaces on a small phantom cohort
    under nested CV with ``outer_folds`` folds, one repeat and one refit seed, ``trials``
    trials per study, a journal storage of its own and a study name of its own.

    Examples
    --------
    >>> from spikebench.studies import resolve_spec
    >>> small = reduced_spec(load_spec(resolve_spec("demo")))
    >>> small.split.outer_folds, small.split.n_refits, small.search.trials, small.data.source
    (2, 1, 8, 'phantom')
    """
    options = spec.data.options
    data: dict[str, Any] = {"source": "phantom", "cases": cases, "shape": list(shape),
                            "phantom_seed": 0}
    if options.get("images"):  # image rules need crops
        data.update({k: options[k] for k in ("images", "crop") if k in options})
    split = spec.split.model_copy(update={"scheme": "nested-cv", "outer_folds": outer_folds,
                                          "repeats": 1, "refit_seeds": 1})
    search = spec.search.model_copy(update={"trials": trials, "storage": ""})
    study = spec.study.model_copy(update={"name": f"{spec.study.name}-verify"})
    raw = spec.model_dump(mode="python")
    raw.update(data=data, split=split.model_dump(), search=search.model_dump(),
               study=study.model_dump())
    from spikebench.harness.spec import parse_spec

    return parse_spec(raw, "reduced protocol")


def verify(spec_path: str | Path, *, workers: int = 1, backends: Sequence[str] | None = None,
           rules: Sequence[str] | None = None, sample: int | None = None,
           cores: int | None = None, contention: float | None = None,
           **reduced: Any) -> dict[str, Any]:
    """Predict and then measure the wall time of the reduced protocol (module docstring).

    Parameters
    ----------
    spec_path : path
        The study spec whose grid and settings are reduced.
    workers : int
        Local worker processes of the real run (and of the prediction).
    backends, rules : sequence of str, optional
        Restrict the grid (default: the spec's).
    sample : int, optional
        Trials measured per cell (default: past both start-ups by 2).
    cores : int, optional
        CPU cores of the schedule model (default: this machine's).
    contention : float, optional
        Per-trial factor of concurrent workers (default:
        :data:`~spikebench.harness.bench.estimate.CONTENTION`).
    **reduced
        ``outer_folds``, ``trials``, ``cases``, ``shape`` of :func:`reduced_spec`.

    Returns
    -------
    dict
        ``reduced`` (the settings), ``workers``, ``measurement`` (what was sampled),
        ``estimate``, ``cells`` (:func:`compare_cells`), ``load`` (the machine's load
        averages before and after the run), ``predicted_s`` (with ``low_s``/``high_s``),
        ``measured_s``, ``ratio`` = predicted ÷ measured and :func:`implied_slowdown`.
    """
    from spikebench.harness.bench import estimate as est
    from spikebench.harness.bench.protocol import load_average, restricted, trial_times
    from spikebench.harness.study import run_study, threads_per_worker

    spec = reduced_spec(restricted(load_spec(spec_path), backends, rules, True), **reduced)
    measured = trial_times(spec, trials=sample, extra=2, threads=threads_per_worker(workers),
                           references=True, refits=1)
    estimate = est.estimate(measured, workers=(workers,), cores=cores,
                            contention=est.CONTENTION if contention is None else contention)
    total = estimate["total"][str(workers)]
    load = {"before_run": load_average()}
    with tempfile.TemporaryDirectory(prefix="spikebench-verify-") as tmp:
        started = time.perf_counter()
        run_study(spec, Path(tmp) / "run", workers=workers, progress=False)
        wall = time.perf_counter() - started
        load["after_run"] = load_average()
        cells = compare_cells(measured, Path(tmp) / "run")
    return {"reduced": {**REDUCED, **reduced, "repeats": 1, "refit_seeds": 1},
            "workers": workers, "measurement": measured, "estimate": estimate, "cells": cells,
            "load": load,
            "predicted_s": total["point_s"], "low_s": total["low_s"],
            "high_s": total["high_s"], "measured_s": wall, "ratio": total["point_s"] / wall,
            **implied_slowdown(cells, workers, estimate["cores"], total["slowdown"])}


def implied_slowdown(cells: dict[str, Any], workers: int, cores: int, assumed: float
                     ) -> dict[str, Any]:
    """How much longer the run's trials took than the sampled ones (summed over cells):
    ``run_trial_factor``; with ``workers`` > 1 the ``implied_contention`` that factor means
    (:func:`~spikebench.harness.bench.estimate.slowdown` solved for it), to pass as
    ``--contention``; ``assumed_slowdown`` is the factor the prediction used."""
    predicted = sum(c["predicted_trials_s"] for c in cells.values() if "run_trials_s" in c)
    ran = sum(c["run_trials_s"] for c in cells.values() if "run_trials_s" in c)
    if predicted <= 0:
        return {}
    out: dict[str, Any] = {"run_trial_factor": ran / predicted, "assumed_slowdown": assumed}
    if workers > 1:
        out["implied_contention"] = ran / predicted / max(1.0, workers / cores)
    return out


def compare_cells(measured: dict[str, Any], run: Path) -> dict[str, Any]:
    """Per cell: the sum of its trials' durations predicted (one worker, point arithmetic)
    and as the run's ``trials.parquet`` recorded them, with the run's trial count and pruned
    share (where the difference between prediction and run comes from)."""
    import pandas as pd

    from spikebench.harness.bench.estimate import CellCost
    from spikebench.harness.folder import ResultsFolder

    path = ResultsFolder(run).table("trials")
    trials = pd.read_parquet(path) if path.exists() else pd.DataFrame()
    out: dict[str, Any] = {}
    for label, cell in measured["cells"].items():
        if "skipped" in cell:
            continue
        cost = CellCost.from_measured(label, cell)
        refit = cost.refits * (sum(cost.refit) / len(cost.refit)) if cost.refit else 0.0
        entry: dict[str, Any] = {"predicted_trials_s": cost.expected_seconds() - refit}
        if not trials.empty:
            backend, rule = label.split("/")
            mine = trials[(trials["backend"] == backend) & (trials["rule"] == rule)]
            done = mine[mine["state"].isin(["COMPLETE", "PRUNED"])]
            entry.update(run_trials=len(done),
                         run_trials_s=float(done["duration_seconds"].sum()),
                         run_pruned_share=float((done["state"] == "PRUNED").mean())
                         if len(done) else None)
        out[label] = entry
    return out


def format_verify(result: dict[str, Any]) -> str:
    """Per cell the trials' summed time predicted and in the run; then the predicted and
    measured wall time of the reduced protocol and their ratio."""
    r = result["reduced"]
    lines = [f"{'cell':30s} {'trials s: predicted':>20s} {'run':>8s} {'run trials':>11s} "
             f"{'run pruned':>11s}"]
    for label, c in result.get("cells", {}).items():
        share = c.get("run_pruned_share")
        lines.append(f"{label:30s} {c['predicted_trials_s']:>20.1f} "
                     f"{c.get('run_trials_s', float('nan')):>8.1f} "
                     f"{c.get('run_trials', 0):>11d} "
                     f"{'-' if share is None else f'{100 * share:.0f}%':>11s}")
    lines += [f"reduced protocol ({r['outer_folds']} outer folds, {r['trials']} trials per "
              f"study, {r['cases']} phantom patients, {result['workers']} worker(s)):",
              f"  predicted {result['predicted_s']:.0f} s [{result['low_s']:.0f}-"
              f"{result['high_s']:.0f}], measured {result['measured_s']:.0f} s, "
              f"predicted / measured = {result['ratio']:.2f}"]
    if "run_trial_factor" in result:
        lines.append(f"  the run's trials took {result['run_trial_factor']:.2f} x the sampled "
                     f"ones (the prediction assumed {result['assumed_slowdown']:.2f})"
                     + (f"; implied --contention {result['implied_contention']:.2f}"
                        if "implied_contention" in result else ""))
    m, load = result.get("measurement", {}), result.get("load", {})
    marks = [(what, v) for what, v in (("measurement", m.get("load_before")),
                                       ("run", load.get("before_run")),
                                       ("end", load.get("after_run"))) if v]
    if marks:
        lines.append("  machine load (1-min average) at the start of the " + ", ".join(
            f"{what} {v[0]:.1f}" for what, v in marks) + f" on {os.cpu_count()} cores")
    return "\n".join(lines)
