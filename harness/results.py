"""The tables of a results folder: the one source every report reads (benchopt-style parquet).

Paths and writes belong to :class:`spikebench.harness.folder.ResultsFolder`; this module
defines what the tables hold::

    results.parquet      one row per cell × fold: RESULT_COLUMNS, then val_<metric>, test_<metric>
                         for every metric of spikebench.harness.metrics.METRICS
    predictions.parquet  per test slice: PREDICTION_COLUMNS (prob = P(lesion)); lesion_mm2 when
                         the data source measured it
    curves.parquet       active learning: CURVE_COLUMNS
    trials.parquet       every Optuna trial of every cell: backend, rule, fold, number, state,
                         value(s), params_*, duration_seconds, pareto (bool)
    models/*.pt          refit networks (plain tensors, loaded with weights_only=True)
    splits.json          {"scheme": ..., "folds": [{repeat, fold, study, tune_train, tune_val,
                         train, val, test}]}  (patient ids)
"""

from __future__ import annotations

import json
from typing import Any

from spikebench.harness.metrics import METRICS, PATIENT_METRICS, SLICE_METRICS

#: Identity and cost columns of results.parquet (metrics follow as ``val_*`` and ``test_*``).
RESULT_COLUMNS = (
    "study",          # study name from the spec
    "backend",        # backend name, or "reference" for the non-spiking reference rules
    "rule",           # rule name
    "kind",           # "snn" | "reference"
    "status",         # "ok" | "skipped" | "failed"
    "reason",         # why skipped / failed ("" when ok)
    "repeat",         # repeat index (-1 for a skipped / failed cell's single row)
    "fold",           # outer fold within the repeat (nested-cv; else 0)
    "seed",           # training seed of this refit
    "params",         # JSON of the parameters used for the refit
    "n_trials",       # complete Optuna trials behind those parameters (0: not tuned)
    "best_trial",     # number of the Optuna trial the parameters came from (-1: not tuned)
    "best_val",       # that trial's objective value
    "train_steps",    # time steps T the network was trained with
    "device",         # "cpu" / "cuda:0"
    "epochs",         # epochs actually run in the refit
    "train_seconds",  # wall time of the refit (one-time costs excluded: warmup_seconds)
    "warmup_seconds", # one-time cost paid before the refit in its process (kernel build...)
    "threshold",      # decision threshold of the thresholded metrics, chosen on validation
    "train_seconds_per_epoch",
    "infer_ms_per_sample",  # test inference wall time per slice
    "spikes_per_sample",    # all layers' spikes per test slice at train_steps
    "acs_per_sample",       # accumulates per test slice (synaptic events of binary spikes)
    "macs_per_sample",      # multiply-accumulates per test slice (real-valued inputs)
    "synops_per_sample",    # synaptic operations per test slice (acs + macs, spiking rows)
    "labels_used",          # labels the rule consumed (active learning; else n_train_slices)
    "n_train_patients", "n_val_patients", "n_test_patients",
    "n_train_slices", "n_val_slices", "n_test_slices",
)
PREFIXED_METRICS = tuple(f"{p}_{m}" for p in ("val", "test") for m in METRICS)
PREDICTION_COLUMNS = (
    "backend", "rule", "repeat", "fold", "seed", "steps", "train_steps",
    "patient_id", "slice_idx", "label", "prob",
)
CURVE_COLUMNS = (
    "backend", "rule", "repeat", "fold", "strategy", "labels_used", "val_balanced_accuracy",
    "val_pr_auc",
)


def _complete(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with every schema column present (missing ones None / NaN), schema order."""
    full = {c: row.get(c) for c in RESULT_COLUMNS}
    for name in PREFIXED_METRICS:
        full[name] = row.get(name, float("nan"))
    full.update({k: v for k, v in row.items() if k not in full})
    return full


def result_row(plan: Any, fold: Any, result: Any, measured: dict[str, Any],
               provenance: dict[str, Any], sizes: dict[str, int]) -> dict[str, Any]:
    """The results.parquet row of one refit (``result``: a FitResult; ``measured``: test
    metrics and cost counters from :func:`spikebench.harness.fit.evaluate_test`)."""
    model = result.model
    epochs = model.info.get("epochs") or 1
    info_params = model.info.get("params") if plan.kind == "reference" else None
    row = {
        "study": plan.study, "backend": plan.backend, "rule": plan.rule, "kind": plan.kind,
        "status": "ok", "reason": "", "repeat": fold.repeat, "fold": fold.fold,
        "seed": result.seed,
        "params": json.dumps(info_params or result.params, default=str),
        **provenance,
        "train_steps": int(getattr(model, "train_steps", 1)), "device": str(plan.device),
        "epochs": epochs, "train_seconds": result.train_seconds,
        "warmup_seconds": result.warmup_seconds,
        "train_seconds_per_epoch": result.train_seconds / epochs,
        "labels_used": model.info.get("labels_used", sizes["n_train_slices"]),
        **sizes, **result.val_metrics, **measured,
    }
    return _complete(row)


def failure_row(plan: Any, reason: str, status: str) -> dict[str, Any]:
    """The single row of a cell that was skipped or failed."""
    return _complete({"study": plan.study, "backend": plan.backend, "rule": plan.rule,
                      "kind": plan.kind, "status": status, "reason": reason, "repeat": -1,
                      "fold": 0})


__all__ = ["CURVE_COLUMNS", "METRICS", "PATIENT_METRICS", "PREDICTION_COLUMNS",
           "PREFIXED_METRICS", "RESULT_COLUMNS", "SLICE_METRICS", "failure_row", "result_row"]
