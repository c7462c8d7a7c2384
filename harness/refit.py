"""Refit and test: the best configuration of each cell × fold, trained and tested once per
refit seed.

For a tuned cell, the parameters are the best trial of the fold's study (plus the space's
fixed values); for a reference rule, its default parameters. The refit calls
:func:`~spikebench.harness.fit.fit_and_score` on the fold's train / validation patients, then
predicts the fold's test patients once (:func:`~spikebench.harness.fit.evaluate_test`) and
writes the row (:class:`~spikebench.harness.results.ResultRow`), the test predictions (at
several time steps), the learning curves and the model — each file atomically, under a claim,
so concurrent workers never duplicate a job and a crash never loses one. A row remembers the
trial it came from: after more trials change the best one, the row is redone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from spikebench.errors import SpikebenchError
from spikebench.harness.data import StudyData, View, make_view
from spikebench.harness.fit import (
    Evaluation,
    FitResult,
    eval_steps,
    evaluate_test,
    fit_and_score,
    split_sizes,
)
from spikebench.harness.folder import ResultsFolder
from spikebench.harness.plan import CellPlan
from spikebench.harness.protocol import Fold
from spikebench.harness.results import Provenance, ResultRow, RowStatus, SplitSizes
from spikebench.harness.retries import TRIAL_ERRORS, describe, run_with_retries

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

    from spikebench.harness.spec import SearchTable


class Refitter:
    """Does the refit jobs of one study in one process (all state is passed in explicitly)."""

    def __init__(self, folder: ResultsFolder, data: StudyData, storage: BaseStorage,
                 search: SearchTable, eval_multiples: list[float]) -> None:
        self.folder, self.data, self.storage, self.search = folder, data, storage, search
        self.eval_multiples = eval_multiples

    def chosen_params(self, plan: CellPlan, fold: Fold) -> tuple[dict[str, Any], Provenance]:
        """``(params, provenance)`` for the refit of ``plan`` on ``fold``."""
        from spikebench.harness.space import Fixed, default_values
        from spikebench.harness.tuning import best_trial

        if not plan.tuned:
            return default_values(plan.space), Provenance(n_trials=0, best_trial=-1,
                                                          best_val=float("nan"))
        best, n_complete = best_trial(plan, fold, self.storage, self.search)
        params = {k: v.value for k, v in plan.space.items() if isinstance(v, Fixed)}
        params.update(best.params)
        return params, Provenance(n_trials=n_complete, best_trial=best.number,
                                  best_val=float(best.values[0]))

    def is_done(self, plan: CellPlan, fold: Fold) -> bool:
        """The row exists and came from the study's current best trial."""
        row = self.folder.read_row(self.folder.row(plan.key, fold.key))
        if row is None:
            return False
        if not plan.tuned:
            return True
        try:
            _, provenance = self.chosen_params(plan, fold)
        except SpikebenchError:
            return True  # nothing better to refit with
        return int(row.get("best_trial", -2)) == provenance["best_trial"]

    def refit(self, plan: CellPlan, fold: Fold) -> None:
        """Refit ``plan`` on ``fold``, test once, write row, predictions, curves, model."""
        import pandas as pd

        params, provenance = self.chosen_params(plan, fold)
        view = make_view(self.data, fold.train, fold.val, fold.test, inputs=plan.inputs)
        seed = plan.refit_seed(fold)
        result = fit_and_score(plan, view, params, seed)
        model = result.model
        measured = evaluate_test(model, view, result.threshold)
        row = result_row(plan, fold, result, measured, provenance, split_sizes(view))
        key = fold.key
        self.write_predictions(plan, fold, result, view)
        curves = model.info.get("curves")
        if curves:
            frame = pd.DataFrame(curves)
            for col, value in (("refit", fold.refit), ("fold", fold.fold),
                               ("repeat", fold.repeat),
                               ("rule", plan.rule), ("backend", plan.backend)):
                frame.insert(0, col, value)
            self.folder.write_frame(self.folder.curves(plan.key, key), frame)
        self.save_model(plan, fold, result, view, provenance)
        self.folder.write_frame(self.folder.row(plan.key, key), pd.DataFrame([row.record()]))
        self.folder.cell_failure(plan.key).unlink(missing_ok=True)  # superseded

    def write_predictions(self, plan: CellPlan, fold: Fold, result: FitResult, view: View
                          ) -> None:
        """Test-slice probabilities at the training T and its multiples (references: once)."""
        import pandas as pd

        model, test = result.model, view.test
        train_steps = int(getattr(model, "train_steps", 1))
        steps: list[int | None] = ([None] if plan.kind == "reference"
                                   else list(eval_steps(model, self.eval_multiples)))
        frames = []
        for t in steps:
            frame = pd.DataFrame({
                "backend": plan.backend, "rule": plan.rule, "repeat": fold.repeat,
                "fold": fold.fold, "refit": fold.refit, "seed": result.seed,
                "steps": t or train_steps,
                "train_steps": train_steps, "patient_id": test.groups,
                "slice_idx": view.test_slice_idx, "label": test.y,
                "prob": model.predict_proba(test.X, steps=t)})
            if view.test_lesion_mm2 is not None:
                frame["lesion_mm2"] = view.test_lesion_mm2
            frames.append(frame)
        self.folder.write_frame(self.folder.predictions(plan.key, fold.key),
                                pd.concat(frames, ignore_index=True))

    def save_model(self, plan: CellPlan, fold: Fold, result: FitResult, view: View,
                   provenance: Provenance | None = None) -> None:
        """The refit network (if the rule exports one) with what reproduces its predictions
        and its decisions: parameters, encoder settings, the feature standardisation, the
        decision threshold chosen on validation and where the network came from."""
        exported = result.model.export()
        if exported is None:
            return
        from spikebench.backends.serialize import save_network

        spec, weights = exported
        params = result.params
        meta = {"params": params, "repeat": fold.repeat, "fold": fold.fold,
                "refit": fold.refit, "cell": plan.key,
                "standardisation": {"mean": np.asarray(view.mean, dtype=float).tolist(),
                                    "std": np.asarray(view.std, dtype=float).tolist(),
                                    "feature_names": list(self.data.feature_names)},
                "encoder": {k: params[k] for k in ("encoding", "gain", "steps") if k in params},
                "readout": params.get("loss", ""),
                "study": plan.study, "seed": result.seed, "threshold": float(result.threshold),
                "threshold_rule": plan.threshold_rule,
                "best_trial": int(provenance["best_trial"]) if provenance else -1}
        save_network(self.folder.model(plan.key, fold.key), spec, weights, meta)

    def record_failure(self, plan: CellPlan, reason: str, status: RowStatus = "failed") -> None:
        """The single row of a cell that was skipped or failed, with the reason."""
        import pandas as pd

        row = failure_row(plan, reason, status)
        self.folder.write_frame(self.folder.cell_failure(plan.key), pd.DataFrame([row.record()]))


def result_row(plan: CellPlan, fold: Fold, result: FitResult, measured: Evaluation,
               provenance: Provenance, sizes: SplitSizes) -> ResultRow:
    """The results.parquet row of one refit (``measured``: what
    :func:`spikebench.harness.fit.evaluate_test` measured on the fold's test rows)."""
    model = result.model
    epochs = model.info.get("epochs")  # None: the rule does not train in epochs
    info_params = model.info.get("params") if plan.kind == "reference" else None
    activity = dict(measured.activity)  # the counters with a column of their own, then others
    return ResultRow(
        study=plan.study, backend=plan.backend, rule=plan.rule, kind=plan.kind, status="ok",
        repeat=fold.repeat, fold=fold.fold, refit=fold.refit, seed=result.seed,
        params=json.dumps(info_params or result.params, default=str),
        **provenance,
        train_steps=int(getattr(model, "train_steps", 1)), device=str(plan.device),
        epochs=epochs, train_seconds=result.train_seconds,
        warmup_seconds=result.warmup_seconds, threshold=measured.threshold,
        train_seconds_per_epoch=result.train_seconds / epochs if epochs else None,
        infer_ms_per_sample=measured.infer_ms_per_sample,
        spikes_per_sample=activity.pop("spikes_per_sample", None),
        acs_per_sample=activity.pop("acs_per_sample", None),
        macs_per_sample=activity.pop("macs_per_sample", None),
        synops_per_sample=activity.pop("synops_per_sample", None),
        labels_used=model.info.get("labels_used", sizes["n_train_slices"]),
        **sizes, metrics={**result.val_metrics, **measured.metrics},
        extra={**activity, "track": plan.track})


def failure_row(plan: CellPlan, reason: str, status: RowStatus) -> ResultRow:
    """The single row of a cell that was skipped or failed."""
    return ResultRow(study=plan.study, backend=plan.backend, rule=plan.rule, kind=plan.kind,
                     status=status, reason=reason, repeat=-1, fold=0,
                     extra={"track": plan.track})



def refit_jobs(plans: list[CellPlan]) -> list[tuple[CellPlan, Fold]]:
    """Every (cell, fold) refit job of the runnable cells."""
    return [(plan, fold) for plan in plans if not plan.skip_reason for fold in plan.folds]


def run_refits(refitter: Refitter, plans: list[CellPlan], *, poll_seconds: float = 0.5,
               progress: bool = False) -> None:
    """Do every refit job not yet done. Jobs another live process holds are waited for; a
    cell whose refit fails gets one failure row and its other folds are skipped."""
    import time

    from spikebench.harness.progress import WaitNotice, bar

    todo = refit_jobs(plans)
    failed: set[str] = set()
    notice = WaitNotice()
    with bar(progress and bool(todo), len(todo), "refit + test") as b:
        while todo:
            waiting = []
            for plan, fold in todo:
                if plan.key in failed:
                    b.update(1)
                    continue
                with refitter.folder.claim(f"{plan.key}__{fold.key}") as mine:
                    if not mine:
                        waiting.append((plan, fold))
                        continue
                    _run_job(refitter, plan, fold, failed)
                b.update(1)
            todo = waiting
            if todo:
                notice.tick(_waiting_for(todo))
                time.sleep(poll_seconds)


def _waiting_for(jobs: list[tuple[CellPlan, Fold]]) -> Callable[[float], str]:
    """The "still waiting" message of :func:`run_refits` for refits other workers hold."""
    names = ", ".join(f"{plan.label} {fold.key}".strip() for plan, fold in jobs[:4])
    more = f" and {len(jobs) - 4} more" if len(jobs) > 4 else ""
    return lambda waited: (
        f"waiting {waited:.0f} s for {len(jobs)} refit(s) another worker is running "
        f"({names}{more}); a refit's claim ends when the worker holding it ends")


def _run_job(refitter: Refitter, plan: CellPlan, fold: Fold, failed: set[str]) -> None:
    """One refit; a failure that may pass (out of memory, a lost connection, a killed worker)
    is retried up to ``[search].max_retry`` times, then the cell's failure row names the real
    error (a rerun of the study retries it)."""
    if refitter.is_done(plan, fold):
        return
    try:
        run_with_retries(lambda: refitter.refit(plan, fold), refitter.search.max_retry)
    except TRIAL_ERRORS as exc:
        if plan.kind == "reference" and isinstance(exc, SpikebenchError):
            raise
        failed.add(plan.key)
        reason = str(exc) if isinstance(exc, SpikebenchError) else describe(exc)
        refitter.record_failure(plan, f"refit {fold.key}: {reason}")


__all__ = ["Refitter", "failure_row", "refit_jobs", "result_row", "run_refits"]
