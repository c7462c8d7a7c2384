"""Metrics agree with scikit-learn and the patient score is the max slice probability."""

from __future__ import annotations

import math

import numpy as np
from sklearn import metrics as skm

from spikebench.harness.metrics import all_metrics, patient_scores, score
from spikebench.harness.results import METRICS


def test_slice_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    pred = (p >= 0.5).astype(int)
    assert score("balanced_accuracy", y, p) == skm.balanced_accuracy_score(y, pred)
    assert score("roc_auc", y, p) == skm.roc_auc_score(y, p)
    assert score("pr_auc", y, p) == skm.average_precision_score(y, p)
    assert score("mcc", y, p) == skm.matthews_corrcoef(y, pred)


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
