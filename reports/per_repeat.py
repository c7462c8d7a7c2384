"""A metric as the main table states it, recomputed from predictions for the figures.

The main table's test metrics are, per cell, the mean over repeats (and the std over repeats)
of each repeat's value, a repeat's value being the mean over its models (its outer folds and
refits: the units of :data:`~spikebench.reports.load.UNIT_KEYS`) of each model's metric on its
own test slices, thresholded at its own decision threshold (chosen on validation). A figure that
quotes a metric computes it here, from the same predictions, so it can only show the table's
number (the figures' test recomputes both).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .load import UNIT_KEYS
from .scoring import point_metrics

#: Columns of :func:`repeat_summary`'s frame after the ``by`` columns.
SUMMARY_COLUMNS = ("metric", "mean", "std", "n_repeats")


def unit_metrics(predictions: pd.DataFrame, metrics: tuple[str, ...],
                 by: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per model (the :data:`UNIT_KEYS` present, plus ``by``) and metric: columns
    backend, rule, repeat, ``by``..., metric, value. ``predictions`` carry each slice's
    ``threshold`` (:meth:`~spikebench.reports.load.StudyTables.primary_predictions`)."""
    keys = [k for k in UNIT_KEYS if k in predictions.columns] + list(by)
    rows = []
    for key, g in predictions.groupby(keys, sort=False):
        values = point_metrics(metrics, g)
        rows += [{**dict(zip(keys, key)), "metric": m, "value": v} for m, v in values.items()]
    return pd.DataFrame(rows)


def repeat_summary(predictions: pd.DataFrame | None, metrics: tuple[str, ...],
                   by: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per cell (backend, rule), ``by`` and metric: ``mean`` and ``std`` (ddof 1) over repeats
    of the mean over the repeat's models, and ``n_repeats`` — the main table's
    ``test_<metric>_mean`` / ``_std`` when the predictions are the table's."""
    if predictions is None or predictions.empty:
        return pd.DataFrame(columns=["backend", "rule", *by, *SUMMARY_COLUMNS])
    units = unit_metrics(predictions, metrics, by)
    cell = ["backend", "rule", *by, "metric"]
    with np.errstate(all="ignore"):
        per_repeat = units.groupby([*cell, "repeat"], sort=False)["value"].mean().reset_index()
        out = per_repeat.groupby(cell, sort=False)["value"].agg(
            mean="mean", std="std", n_repeats="count").reset_index()
    return out
