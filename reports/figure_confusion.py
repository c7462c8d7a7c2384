"""Slice-level confusion matrices at threshold 0.5 per cell, counts pooled over repeats."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .plotting import cell_label, grid_shape, new_figure
from .scoring import THRESHOLD


def data(predictions: pd.DataFrame | None) -> pd.DataFrame:
    """Columns backend, rule, tn, fp, fn, tp (slices of all repeats)."""
    if predictions is None or predictions.empty:
        return pd.DataFrame()
    pos = predictions["label"].to_numpy() == 1
    hit = predictions["prob"].to_numpy(float) >= THRESHOLD
    frame = predictions[["backend", "rule"]].assign(
        tn=~pos & ~hit, fp=~pos & hit, fn=pos & ~hit, tp=pos & hit)
    return frame.groupby(["backend", "rule"], sort=False)[["tn", "fp", "fn", "tp"]].sum(
    ).astype(int).reset_index()


def draw(frame: pd.DataFrame) -> Figure | None:
    """Small multiples; each square shows the count and the share of its true-class row."""
    if frame.empty:
        return None
    n_rows, n_cols = grid_shape(len(frame), 4)
    fig = new_figure(3.0 * n_cols, 2.9 * n_rows)
    axes = fig.subplots(n_rows, n_cols, squeeze=False, sharex=True, sharey=True)
    for ax, row in zip(axes.flat, frame.itertuples(index=False)):
        m = np.array([[row.tn, row.fp], [row.fn, row.tp]], dtype=float)
        share = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(2):
            for j in range(2):
                ax.text(j, i, f"{int(m[i, j])}\n{share[i, j]:.0%}", ha="center", va="center",
                        color="white" if share[i, j] > 0.6 else "black", fontsize=9)
        ax.set_title(cell_label(str(row.backend), str(row.rule)), fontsize=9)
    for k, ax in enumerate(axes.flat):
        c = k % n_cols
        ax.set_xticks([0, 1], ["no lesion", "lesion"], fontsize=8)
        ax.set_yticks([0, 1], ["no lesion", "lesion"], fontsize=8)
        if c == 0:
            ax.set_ylabel("true", fontsize=8)
        # x labels on the last panel of each column (the one above an empty slot included)
        if k + n_cols >= len(frame):
            ax.set_xlabel("predicted", fontsize=8)
            ax.tick_params(axis="x", labelbottom=True)
        if k >= len(frame):
            ax.set_visible(False)
    fig.suptitle(f"Slice confusion matrices (threshold {THRESHOLD}, all repeats)")
    return fig
