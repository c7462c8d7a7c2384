"""Slice-level confusion matrices per cell, at the tables' decision thresholds.

Each slice is called positive when its probability reaches the decision threshold of the model
that predicted it (``prob >= threshold``, the threshold chosen on validation and recorded in its
results row: what the tables' accuracy, balanced accuracy, F1 and MCC use). The counts pool the
test slices of every repeat (and outer fold and refit); each panel's title quotes the cell's
accuracy and balanced accuracy as the main table states them (mean over repeats, see
:mod:`spikebench.reports.per_repeat`), which pooled counts reproduce only when every repeat
tests the same slices.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .per_repeat import repeat_summary
from .plotting import cell_label, grid_shape, new_figure
from .scoring import THRESHOLD

#: The metrics each panel quotes from the table.
QUOTED = ("accuracy", "balanced_accuracy")
COUNTS = ("tn", "fp", "fn", "tp")


def data(predictions: pd.DataFrame | None) -> pd.DataFrame:
    """Columns backend, rule, tn, fp, fn, tp (slices of all repeats, each thresholded at its
    model's ``threshold``; 0.5 for predictions without one), accuracy, balanced_accuracy (the
    main table's means over repeats) and thresholds (the distinct thresholds used, as text)."""
    if predictions is None or predictions.empty:
        return pd.DataFrame()
    if "threshold" not in predictions.columns:
        predictions = predictions.assign(threshold=THRESHOLD)
    pos = predictions["label"].to_numpy() == 1
    hit = predictions["prob"].to_numpy(float) >= predictions["threshold"].to_numpy(float)
    frame = predictions[["backend", "rule"]].assign(
        tn=~pos & ~hit, fp=~pos & hit, fn=pos & ~hit, tp=pos & hit)
    counts = frame.groupby(["backend", "rule"], sort=False)[list(COUNTS)].sum().astype(int)
    quoted = repeat_summary(predictions, QUOTED).pivot_table(
        index=["backend", "rule"], columns="metric", values="mean", sort=False)
    thresholds = predictions.groupby(["backend", "rule"], sort=False)["threshold"].agg(
        lambda t: _threshold_text(t.to_numpy(float)))
    out = counts.join(quoted).join(thresholds.rename("thresholds")).reset_index()
    return out[["backend", "rule", *COUNTS, *QUOTED, "thresholds"]]


def _threshold_text(values: np.ndarray) -> str:
    """``0.43`` for one threshold, ``0.38–0.52`` for a range over models."""
    low, high = float(np.min(values)), float(np.max(values))
    return f"{low:.2f}" if np.isclose(low, high) else f"{low:.2f}–{high:.2f}"


def draw(frame: pd.DataFrame) -> Figure | None:
    """Small multiples; each square shows the count and the share of its true-class row; the
    title quotes the table's accuracy and balanced accuracy and the threshold(s) used."""
    if frame.empty:
        return None
    n_rows, n_cols = grid_shape(len(frame), 3)
    fig = new_figure(3.1 * n_cols, 3.1 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True, sharey=True)
    for ax, row in zip(axes.flat, frame.itertuples(index=False)):
        m = np.array([[row.tn, row.fp], [row.fn, row.tp]], dtype=float)
        share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{int(m[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                        color="white" if share[i, j] > 0.6 else "black", fontsize=10)
        ax.set_title(f"{cell_label(str(row.backend), str(row.rule))}\n"
                     f"acc. {row.accuracy:.3f}, bal. {row.balanced_accuracy:.3f}; "
                     f"t = {row.thresholds}", fontsize=9)
    for k, ax in enumerate(axes.flat):
        c = k % n_cols
        ax.set_xticks([0, 1], ["no lesion", "lesion"])
        ax.set_yticks([0, 1], ["no lesion", "lesion"])
        if c == 0:
            ax.set_ylabel("true")
        # x labels on the last panel of each column (the one above an empty slot included)
        if k + n_cols >= len(frame):
            ax.set_xlabel("predicted")
            ax.tick_params(axis="x", labelbottom=True)
        if k >= len(frame):
            ax.set_visible(False)
    fig.suptitle("Slice confusion matrices at the validation-chosen thresholds t")
    return fig
