"""The results folder: the one source every report reads (benchopt-style parquet tables).

A study folder ``DIR`` holds::

    DIR/spec.toml            the spec the study ran (copy)
    DIR/protocol.json        data source + sha256, patients/slices per split, repeats, seeds,
                             package versions, machine (see :func:`write_json`)
    DIR/splits.json          {"<repeat>": {"train": [...], "val": [...], "test": [...]}}
    DIR/optuna.journal       Optuna storage (default; or an RDB URL named in protocol.json)
    DIR/rows/*.parquet       one file per backend × rule × repeat (written atomically, idempotent)
    DIR/results.parquet      all rows (:data:`RESULT_COLUMNS` + metrics), rebuilt from rows/
    DIR/predictions.parquet  per test slice: backend, rule, repeat, seed, steps, train_steps,
                             patient_id, slice_idx, label, prob   (prob = P(lesion))
    DIR/curves.parquet       active learning: backend, rule, repeat, strategy, labels_used,
                             val_balanced_accuracy, val_pr_auc
    DIR/trials.parquet       every Optuna trial of every cell: backend, rule, number, state,
                             value(s), params_*, duration_seconds, pareto (bool)
    DIR/models/*.pt          refit networks (plain tensors, loaded with weights_only=True)

Writes go to a temporary file in the same folder and are renamed into place, so a crash never
leaves a half-written table and a rerun never duplicates a row.
"""

from __future__ import annotations

from spikebench.io import (  # noqa: F401  (re-exported for existing callers)
    atomic_write_bytes,
    concat_parquet,
    write_json,
    write_parquet,
)

#: Slice-level metrics (probability threshold 0.5 for the thresholded ones).
SLICE_METRICS = ("accuracy", "balanced_accuracy", "roc_auc", "pr_auc", "f1", "mcc")
#: Patient-level metrics: a patient's score is the maximum slice probability.
PATIENT_METRICS = ("patient_roc_auc", "patient_pr_auc")
METRICS = SLICE_METRICS + PATIENT_METRICS

#: Identity and cost columns of results.parquet (metrics follow as ``val_*`` and ``test_*``).
RESULT_COLUMNS = (
    "study",          # study name from the spec
    "backend",        # backend name, or "reference" for non-spiking reference rows
    "rule",           # rule name (or "logistic_regression" / "mlp" for references)
    "kind",           # "snn" | "reference"
    "status",         # "ok" | "skipped" | "failed"
    "reason",         # why skipped / failed ("" when ok)
    "repeat",         # split repeat index (-1 for a skipped cell's single row)
    "seed",           # training seed of this refit
    "params",         # JSON of the best parameters used for the refit
    "n_trials",       # complete Optuna trials behind those parameters
    "best_val",       # Optuna's best objective value
    "train_steps",    # time steps T the network was trained with
    "device",         # "cpu" / "cuda:0"
    "epochs",         # epochs actually run in the refit
    "train_seconds",  # wall time of the refit
    "train_seconds_per_epoch",
    "infer_ms_per_sample",  # test inference wall time per slice
    "spikes_per_sample",    # all layers' spikes per test slice at train_steps
    "synops_per_sample",    # synaptic operations per test slice (spikes × fan-out)
    "macs_per_sample",      # multiply-accumulates per test slice (non-spiking references)
    "labels_used",          # labels the rule consumed (active learning; else n_train_slices)
    "n_train_patients", "n_val_patients", "n_test_patients",
    "n_train_slices", "n_val_slices", "n_test_slices",
)
PREFIXED_METRICS = tuple(f"{p}_{m}" for p in ("val", "test") for m in METRICS)
PREDICTION_COLUMNS = (
    "backend", "rule", "repeat", "seed", "steps", "train_steps",
    "patient_id", "slice_idx", "label", "prob",
)
CURVE_COLUMNS = (
    "backend", "rule", "repeat", "strategy", "labels_used", "val_balanced_accuracy", "val_pr_auc",
)

