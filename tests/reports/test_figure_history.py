"""The optimisation-history figure: one running best per Optuna study, never across studies.

Under nested CV each outer fold (and repeat) of a cell is its own Optuna study whose trial
numbers start at 0 again; a running best pooled over them would jump between studies. A
holdout cell (one study) and a folder written before the fold column draw one line as before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from spikebench.reports import figure_history


def _study(values: list[float], **columns: object) -> list[dict]:
    """Trials 0..n-1 of one study of cell custom / surrogate (a NaN value: a pruned trial)."""
    return [{"backend": "custom", "rule": "surrogate", **columns, "number": k, "value": v,
             "state": "PRUNED" if np.isnan(v) else "COMPLETE"} for k, v in enumerate(values)]


def _assert_running_best_within(frame: pd.DataFrame) -> None:
    for _, g in frame.groupby(["backend", "rule", "study"]):
        g = g.sort_values("number")
        assert g["best_so_far"].is_monotonic_increasing
        assert np.allclose(g["best_so_far"], g["objective"].cummax())


def test_two_folds_with_overlapping_trial_numbers_get_a_running_best_each():
    # fold 0 finds 0.9 early; fold 1 never beats 0.6: pooled, its line would sit at 0.9
    trials = pd.DataFrame(_study([0.7, 0.9, 0.8, 0.85], fold=0)
                          + _study([0.5, np.nan, 0.6, 0.55], fold=1))
    frame = figure_history.data(trials)
    assert frame["study"].nunique() == 2
    _assert_running_best_within(frame)
    fold1 = frame[frame["study"] == "r0/fold1"]
    assert fold1["number"].tolist() == [0, 2, 3]  # numbered within its own study
    assert fold1["best_so_far"].tolist() == [0.5, 0.6, 0.6]
    assert figure_history.has_several_studies(frame)
    caption = figure_history.caption(frame)
    assert "each study" in caption and "median" in caption


def test_repeats_of_a_fold_are_separate_studies_even_without_a_repeat_column():
    # trials.parquet names the fold only; nested CV with 2 repeats writes r0/fold0, r0/fold1,
    # r1/fold0, r1/fold1 in that order
    trials = pd.DataFrame(_study([0.9, 0.95], fold=0) + _study([0.6, 0.7], fold=1)
                          + _study([0.4, 0.5], fold=0) + _study([0.3, 0.35], fold=1))
    frame = figure_history.data(trials)
    assert sorted(frame["study"].unique()) == ["r0/fold0", "r0/fold1", "r1/fold0", "r1/fold1"]
    _assert_running_best_within(frame)
    assert frame.loc[frame["study"] == "r1/fold0", "best_so_far"].tolist() == [0.4, 0.5]


def test_median_over_studies_follows_each_study_to_its_end():
    trials = pd.DataFrame(_study([0.2, 0.4, 0.6], fold=0) + _study([0.5, 0.5], fold=1)
                          + _study([0.1, 0.3, 0.3], fold=2))
    median = figure_history.median_best(figure_history.data(trials))
    assert median["number"].tolist() == [0, 1, 2]
    # at trial 2 fold 1 has ended and counts with its final best 0.5
    assert median["best_so_far"].tolist() == [0.2, 0.4, 0.5]
    assert median["n_studies"].tolist() == [3, 3, 3]


def test_holdout_cell_draws_one_running_best_as_before():
    trials = pd.DataFrame(_study([0.6, np.nan, 0.7, 0.65, 0.8], fold=0))
    frame = figure_history.data(trials)
    assert frame["study"].nunique() == 1
    assert frame["best_so_far"].tolist() == [0.6, 0.7, 0.7, 0.8]
    assert not figure_history.has_several_studies(frame)
    fig = figure_history.draw(frame, "validation PR-AUC")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["trial", "best so far"]
    assert "median" not in fig.get_suptitle()


def test_a_table_without_fold_columns_still_renders():
    rows = _study([0.5, 0.7, 0.6])
    rows += [{**r, "rule": "tempotron"} for r in _study([0.4, 0.45])]
    trials = pd.DataFrame(rows)
    assert "fold" not in trials
    frame = figure_history.data(trials)
    assert len(frame) == 5 and frame.groupby(["backend", "rule"])["study"].nunique().eq(1).all()
    _assert_running_best_within(frame)
    assert figure_history.draw(frame) is not None


def test_many_folds_keep_a_short_legend_outside_the_panels():
    rows = [r for k in range(6) for r in _study(list(np.linspace(0.5, 0.6 + k / 50, 5)), fold=k)]
    fig = figure_history.draw(figure_history.data(pd.DataFrame(rows)))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["trial", "best so far, each study", "median over studies"]
    assert all(ax.get_legend() is None for ax in fig.axes)
    assert "6 studies" in fig.axes[0].get_title()
