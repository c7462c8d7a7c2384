"""The tables of a results folder: the one source every report reads (benchopt-style parquet).

Paths and writes belong to :class:`spikebench.harness.folder.ResultsFolder`; this module
defines what the tables hold::

    results.parquet      one row per cell × fold × refit (ResultRow): RESULT_COLUMNS, then
                         val_<metric>, test_<metric> for every metric of
                         spikebench.harness.metrics.METRICS
    predictions.parquet  per test slice: PREDICTION_COLUMNS (prob = P(lesion)); lesion_mm2 when
                         the data source measured it
    curves.parquet       active learning: CURVE_COLUMNS
    trials.parquet       every Optuna trial of every cell: backend, rule, fold, number, state,
                         value(s), params_*, duration_seconds, pareto (bool)
    models/*.pt          refit networks (plain tensors, loaded with weights_only=True)
    splits.json          {"scheme": ..., "folds": [{repeat, fold, refit, study, tune_train,
                         tune_val, train, val, test}]}  (patient ids)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Literal, TypedDict

from spikebench.harness.metrics import METRICS, PATIENT_METRICS, SLICE_METRICS

#: A row's status: a refit that was tested ("ok"), or the single row of a cell that could not
#: run ("skipped": the reason is known before any work) or whose refit failed ("failed").
RowStatus = Literal["ok", "skipped", "failed"]


class Provenance(TypedDict):
    """Where the parameters of a refit came from (results.parquet columns)."""

    #: complete Optuna trials behind the parameters (0: not tuned)
    n_trials: int
    #: number of the Optuna trial the parameters came from (-1: not tuned)
    best_trial: int
    #: that trial's objective value (NaN: not tuned)
    best_val: float


class SplitSizes(TypedDict):
    """Patients and slices per split of one fold (results.parquet columns)."""

    n_train_patients: int
    n_val_patients: int
    n_test_patients: int
    n_train_slices: int
    n_val_slices: int
    n_test_slices: int


@dataclasses.dataclass(frozen=True)
class ResultRow:
    """One row of results.parquet: a refit of one cell × fold tested once, or the single row
    of a cell that was skipped or failed (identity and status only; the rest None / NaN).

    Its fields up to ``n_test_slices`` are the table's leading columns (:data:`RESULT_COLUMNS`,
    in this order); :meth:`record` adds ``val_<metric>`` and ``test_<metric>`` for every metric
    (:data:`PREFIXED_METRICS`, NaN when absent) and then the ``extra`` columns.
    """

    study: str                       # study name from the spec
    backend: str                     # backend name, or "reference" for the reference rules
    rule: str                        # rule name
    kind: str                        # "snn" | "reference"
    status: RowStatus                # "ok" | "skipped" | "failed"
    reason: str = ""                 # why skipped / failed ("" when ok)
    repeat: int = -1                 # repeat index (-1 for a skipped / failed cell's row)
    fold: int = 0                    # outer fold within the repeat (nested-cv; else 0)
    refit: int = 0                   # refit of the fold's configuration (another seed)
    seed: int | None = None          # training seed of this refit
    params: str | None = None        # JSON of the parameters used for the refit
    n_trials: int | None = None      # complete Optuna trials behind them (0: not tuned)
    best_trial: int | None = None    # Optuna trial they came from (-1: not tuned)
    best_val: float | None = None    # that trial's objective value
    train_steps: int | None = None   # time steps T the network was trained with
    device: str | None = None        # "cpu" / "cuda:0"
    epochs: int | None = None        # epochs run in the refit (None: not trained in epochs)
    train_seconds: float | None = None   # wall time of the refit (one-time costs excluded)
    warmup_seconds: float | None = None  # one-time cost paid before it (kernel build...)
    threshold: float | None = None   # decision threshold of the thresholded metrics (validation)
    train_seconds_per_epoch: float | None = None  # None for a rule without epochs
    infer_ms_per_sample: float | None = None  # test inference wall time per slice
    spikes_per_sample: float | None = None    # all layers' spikes per test slice at train_steps
    acs_per_sample: float | None = None       # accumulates per test slice (binary spike inputs)
    macs_per_sample: float | None = None      # multiply-accumulates per test slice
    synops_per_sample: float | None = None    # synaptic operations per test slice (acs + macs)
    labels_used: int | None = None  # labels the rule consumed (active learning; else n_train)
    n_train_patients: int | None = None
    n_val_patients: int | None = None
    n_test_patients: int | None = None
    n_train_slices: int | None = None
    n_val_slices: int | None = None
    n_test_slices: int | None = None
    #: ``val_<metric>`` and ``test_<metric>`` scores
    metrics: Mapping[str, float] = dataclasses.field(default_factory=dict)
    #: columns beyond the schema, after the metrics: cost counters a rule adds
    #: (``pool_adds_per_sample``), the report ``track``
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The parquet row: :data:`RESULT_COLUMNS`, :data:`PREFIXED_METRICS`, then ``extra``."""
        row = {name: getattr(self, name) for name in RESULT_COLUMNS}
        row.update({name: self.metrics.get(name, math.nan) for name in PREFIXED_METRICS})
        row.update({k: v for k, v in self.extra.items() if k not in row})
        return row


#: Identity and cost columns of results.parquet, in order (metrics follow as ``val_*`` and
#: ``test_*``): the fields of :class:`ResultRow` (see the comments there).
RESULT_COLUMNS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(ResultRow) if f.name not in ("metrics", "extra"))
PREFIXED_METRICS = tuple(f"{p}_{m}" for p in ("val", "test") for m in METRICS)
PREDICTION_COLUMNS = (
    "backend", "rule", "repeat", "fold", "refit", "seed", "steps", "train_steps",
    "patient_id", "slice_idx", "label", "prob",
)
CURVE_COLUMNS = (
    "backend", "rule", "repeat", "fold", "refit", "strategy", "labels_used",
    "val_balanced_accuracy", "val_pr_auc",
)


__all__ = ["CURVE_COLUMNS", "METRICS", "PATIENT_METRICS", "PREDICTION_COLUMNS",
           "PREFIXED_METRICS", "RESULT_COLUMNS", "SLICE_METRICS", "Provenance", "ResultRow",
           "RowStatus", "SplitSizes"]
