"""Metrics agree with scikit-learn and the patient score is the max slice probability."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from spikebench.harness.metrics import SLICE_METRICS, all_metrics, patient_scores, score
from spikebench.harness.results import METRICS


def _sklearn(name: str, y: np.ndarray, p: np.ndarray) -> float:
    pred = (p >= 0.5).astype(int)
    if name == "balanced_accuracy" and len(np.unique(y)) < 2:
        return skm.accuracy_score(y, pred)
    return {
        "accuracy": lambda: skm.accuracy_score(y, pred),
        "balanced_accuracy": lambda: skm.balanced_accuracy_score(y, pred),
        "roc_auc": lambda: skm.roc_auc_score(y, p),
        "pr_auc": lambda: skm.average_precision_score(y, p),
        "f1": lambda: skm.f1_score(y, pred, zero_division=0.0),
        "mcc": lambda: skm.matthews_corrcoef(y, pred),
    }[name]()


def test_slice_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    for name in SLICE_METRICS:
        assert score(name, y, p) == pytest.approx(_sklearn(name, y, p), abs=1e-12), name


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.sampled_from(
    [0.0, 0.1, 0.25, 0.5, 0.5, 0.7, 0.9, 1.0, 0.333, 0.4999999])), min_size=1, max_size=60),
    st.sampled_from(SLICE_METRICS))
def test_own_metrics_equal_sklearn_with_ties_and_one_class(rows, name):
    """The NumPy implementations are scikit-learn's definitions (the oracle), ties in the
    scores, single-class label sets (NaN for ranking metrics) and tiny inputs included."""
    y = np.array([r[0] for r in rows])
    p = np.array([r[1] for r in rows])
    ours = score(name, y, p)
    if name in ("roc_auc", "pr_auc") and len(np.unique(y)) < 2:
        assert math.isnan(ours)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ours == pytest.approx(_sklearn(name, y, p), abs=1e-12)


def test_labels_other_than_0_and_1_and_nan_scores_are_refused_by_name():
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        score("roc_auc", np.array([0, 2, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        score("pr_auc", np.array([0, 1, 1]), np.array([0.1, np.nan, 0.3]))


def test_patient_score_is_max_slice_probability():
    y = np.array([0, 1, 0, 0, 0, 0])
    p = np.array([0.2, 0.9, 0.4, 0.1, 0.3, 0.35])
    g = np.array(["a", "a", "b", "b", "c", "c"])
    labels, scores = patient_scores(y, p, g)
    assert labels.tolist() == [1, 0, 0]
    assert scores.tolist() == [0.9, 0.4, 0.35]
    assert score("patient_roc_auc", y, p, g) == 1.0


def test_all_metrics_names_and_undefined_is_nan():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.7, 0.4])
    out = all_metrics(y, p, np.array(["a", "b", "c", "c"]), "test_")
    assert set(out) == {f"test_{m}" for m in METRICS}
    one_class = all_metrics(np.zeros(3, int), np.array([0.1, 0.2, 0.9]), np.array(list("abc")))
    assert math.isnan(one_class["roc_auc"]) and math.isnan(one_class["patient_pr_auc"])
