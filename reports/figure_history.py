"""Optimisation history per cell: every trial's objective value and the running best.

A cell has one Optuna study per protocol study key: one under ``holdout``, one per repeat ×
outer fold under ``nested-cv``, one per repeat under ``repeated-splits``. Trial numbers restart
at 0 in each study and a running best only means something within one study, so the running
best is computed per study and a panel with several studies draws one thin line per study plus
the bold median over studies (a panel with one study looks as it always did).

``trials.parquet`` (``spikebench.harness.study.trials_frame``) names each trial's ``study``
(the protocol's study key, ``r1/fold3``; empty for a cell's single study). Folders written
before that column named only the outer ``fold``: there the studies of a fold are told apart by
where the trial numbers restart in the table's row order (``trials_frame`` writes study after
study, repeat 0 first, so the n-th run of numbers within a fold is repeat n). Folders written
before the ``fold`` column render too.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .plotting import cell_label, grid_shape, new_figure

#: Columns that, when present, identify a trial's Optuna study within its cell.
STUDY_COLUMNS = ("study", "repeat", "fold")
TRIAL_COLOUR = "#0072B2"
BEST_COLOUR = "#D55E00"
#: Legend labels (shared by every panel so the figure has one legend).
TRIAL, BEST, EACH_STUDY, MEDIAN = ("trial", "best so far", "best so far, each study",
                                   "median over studies")


def objective_column(trials: pd.DataFrame) -> str | None:
    """``value`` (single objective) or ``values_0`` (first objective of a multi-objective
    study), whichever holds numbers."""
    for col in ("value", "values_0"):
        if col in trials.columns and pd.to_numeric(trials[col], errors="coerce").notna().any():
            return col
    return None


def study_labels(trials: pd.DataFrame) -> pd.Series:
    """One label per trial naming its Optuna study within the cell (``r1/fold3``, say).

    Uses ``study`` / ``repeat`` / ``fold`` when present; trials that share those (or a table
    without them) are split where ``number`` stops increasing in row order, each run of
    numbers being one study (the module docstring says why that run is the repeat).
    """
    keys = ["backend", "rule", *(c for c in STUDY_COLUMNS if c in trials.columns)]
    numbers = pd.to_numeric(trials["number"], errors="coerce")
    restarts = (numbers.groupby([trials[k] for k in keys], sort=False, dropna=False)
                .transform(lambda s: (s.diff() <= 0).cumsum()).astype(int))
    if "study" in trials.columns:
        label = trials["study"].astype(str)
        return label.where(restarts == 0, label + "#" + restarts.astype(str))
    repeat = _as_text(trials["repeat"]) if "repeat" in trials.columns else restarts.astype(str)
    label = "r" + repeat
    if "repeat" in trials.columns:
        label = label.where(restarts == 0, label + "#" + restarts.astype(str))
    if "fold" in trials.columns:
        label = label + "/fold" + _as_text(trials["fold"])
    return label


def _as_text(column: pd.Series) -> pd.Series:
    """Integer-looking values as ``3`` rather than ``3.0`` (parquet may store floats)."""
    numeric = pd.to_numeric(column, errors="coerce")
    if numeric.notna().all():
        return numeric.astype("int64").astype(str)
    return column.astype(str)


def data(trials: pd.DataFrame | None) -> pd.DataFrame:
    """Complete trials with columns backend, rule, study, number, objective, best_so_far.

    ``number`` is the Optuna trial number within its study and ``best_so_far`` the running
    maximum of ``objective`` within that study, in trial order.
    """
    if trials is None or trials.empty:
        return pd.DataFrame()
    col = objective_column(trials)
    if col is None:
        return pd.DataFrame()
    # studies are told apart before incomplete trials are dropped: every study starts at 0
    frame = trials.assign(study=study_labels(trials))
    if "state" in frame:
        frame = frame[frame["state"].astype(str).str.upper().str.contains("COMPLETE")]
    frame = frame.assign(objective=pd.to_numeric(frame[col], errors="coerce"))
    frame = frame.dropna(subset=["objective"]).sort_values("number", kind="stable")
    frame["best_so_far"] = frame.groupby(["backend", "rule", "study"],
                                         sort=False)["objective"].cummax()
    return frame[["backend", "rule", "study", "number", "objective", "best_so_far"]]


def median_best(cell: pd.DataFrame) -> pd.DataFrame:
    """Median over studies of one cell's best-so-far at each trial number (number, best_so_far,
    n_studies). A study counts from its first complete trial on and, once its trials end, with
    the best it reached."""
    wide = (cell.pivot_table(index="number", columns="study", values="best_so_far",
                             aggfunc="max").sort_index().ffill())
    out = pd.DataFrame({"number": wide.index, "best_so_far": wide.median(axis=1).to_numpy(),
                        "n_studies": wide.notna().sum(axis=1).to_numpy()})
    return out[out["n_studies"] > 0].reset_index(drop=True)


def has_several_studies(frame: pd.DataFrame) -> bool:
    """True when some cell of ``data``'s frame holds more than one Optuna study."""
    if frame.empty:
        return False
    return bool((frame.groupby(["backend", "rule"])["study"].nunique() > 1).any())


def caption(frame: pd.DataFrame, objective: str = "validation objective") -> str:
    """The report's caption: what the points and lines are, per study when there are several."""
    text = f"Optuna optimisation history per cell ({objective})."
    if has_several_studies(frame):
        text += (" A cell tuned in several Optuna studies (one per repeat × outer fold under "
                 "nested CV, one per repeat under repeated splits) shows the best so far within "
                 "each study as a thin line, trials numbered within their study, and the median "
                 "of those lines over studies in bold.")
    return text


def _draw_single(ax: Axes, g: pd.DataFrame) -> None:
    """One study: its trials and its best-so-far step line."""
    ax.scatter(g["number"], g["objective"], s=14, color=TRIAL_COLOUR, alpha=0.6, label=TRIAL)
    ax.step(g["number"], g["best_so_far"], where="post", color=BEST_COLOUR, label=BEST)


def _draw_studies(ax: Axes, g: pd.DataFrame) -> None:
    """Several studies: faint trials, a thin best-so-far line each, the bold median line
    (one colour for all folds, so the legend stays short however many folds there are)."""
    ax.scatter(g["number"], g["objective"], s=8, color=TRIAL_COLOUR, alpha=0.3, label=TRIAL)
    for i, (_, s) in enumerate(g.groupby("study", sort=False)):
        ax.step(s["number"], s["best_so_far"], where="post", color=BEST_COLOUR, lw=0.8,
                alpha=0.45, label=EACH_STUDY if i == 0 else "_nolegend_")
    med = median_best(g)
    ax.step(med["number"], med["best_so_far"], where="post", color=BEST_COLOUR, lw=2.4,
            label=MEDIAN)


def _legend(fig: Figure, axes: list[Axes]) -> None:
    """One legend below the panels (inside one it would hide some points), each label once."""
    entries: dict[str, Artist] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    fig.legend(list(entries.values()), list(entries), loc="outside lower center",
               ncols=len(entries), fontsize=8)


def draw(frame: pd.DataFrame, objective: str = "validation objective") -> Figure | None:
    """Small multiples, one panel per cell (shared y axis); see the module docstring."""
    if frame.empty:
        return None
    cells = list(dict.fromkeys(zip(frame["backend"], frame["rule"])))
    n_rows, n_cols = grid_shape(len(cells))
    fig = new_figure(4.2 * n_cols, 2.7 * n_rows)
    axes = fig.subplots(n_rows, n_cols, sharey=True, squeeze=False)
    several = has_several_studies(frame)
    for ax, (backend, rule) in zip(axes.flat, cells):
        g = frame[(frame["backend"] == backend) & (frame["rule"] == rule)]
        n_studies = g["study"].nunique()
        (_draw_studies if n_studies > 1 else _draw_single)(ax, g)
        title = cell_label(backend, rule)
        ax.set_title(f"{title} ({n_studies} studies)" if n_studies > 1 else title, fontsize=10)
        ax.set_xlabel("trial within its study" if several else "trial")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel(objective)
    for ax in list(axes.flat)[len(cells):]:
        ax.set_visible(False)
    _legend(fig, list(axes.flat)[:len(cells)])
    fig.suptitle("Optimisation history (validation, complete trials"
                 + ("; thin: best so far per study, bold: median over studies)" if several
                    else ")"))
    return fig
