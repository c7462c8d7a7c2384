"""Training time per epoch per backend (bars per rule, mean ± std over repeats, log scale).

Only rows that trained in epochs have a time per epoch: a rule that does not (a solver fit such
as logistic regression, or the geometry reference built on it) records ``epochs`` as empty in
results.parquet and is left out here, as in the cost table's "train (s / epoch)" column.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .plotting import PALETTE, log_axis, new_figure, wrap


def data(main: pd.DataFrame) -> pd.DataFrame:
    """Columns backend, rule, mean, std of ``train_seconds_per_epoch`` (the main table's
    ``train_seconds_per_epoch_mean`` / ``_std``), for the cells that have one."""
    if main.empty or "train_seconds_per_epoch_mean" not in main:
        return pd.DataFrame()
    frame = main[main["train_seconds_per_epoch_mean"].notna()]
    return pd.DataFrame({"backend": frame["backend"], "rule": frame["rule"],
                         "mean": frame["train_seconds_per_epoch_mean"],
                         "std": frame["train_seconds_per_epoch_std"]})


def draw(frame: pd.DataFrame) -> Figure | None:
    """Grouped bars: one group per backend holding only the rules it ran; colour = rule."""
    if frame.empty:
        return None
    backends = list(dict.fromkeys(frame["backend"]))
    rules = list(dict.fromkeys(frame["rule"]))
    colour = {r: PALETTE[k % len(PALETTE)] for k, r in enumerate(rules)}
    width = 0.8 / max(frame.groupby("backend").size().max(), 1)
    fig = new_figure(min(11.0, max(5.5, 1.6 * len(backends) + 3.0)), 3.9)
    ax = fig.add_subplot()
    labelled: set[str] = set()
    for i, backend in enumerate(backends):
        g = frame[frame["backend"] == backend]
        for k, rec in enumerate(g.itertuples(index=False)):
            x = i + (k - (len(g) - 1) / 2) * width
            ax.bar(x, rec.mean, width * 0.95, yerr=0 if pd.isna(rec.std) else rec.std,
                   capsize=2, color=colour[rec.rule],
                   label=None if rec.rule in labelled else rec.rule)
            labelled.add(rec.rule)
    ax.set_xticks(range(len(backends)), [wrap(b, 14) for b in backends])
    log_axis(ax, "y", values=np.r_[frame["mean"], frame["mean"] + frame["std"].fillna(0)])
    ax.set_ylabel("training seconds per epoch (log scale)")
    ax.set_title("Training time per epoch (mean ± std over refits)")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside right center", fontsize=8, title="rule")
    return fig
