"""Logistic regression: the linear, non-spiking reference every SNN cell is compared with.

``P(lesion) = σ(wᵀx + b)``, fitted by scikit-learn's ``LogisticRegression`` with balanced class
weights (L2 penalty ``‖w‖² / 2C``). The inverse regularisation ``C`` is chosen from the grid
``C`` on the validation score (:meth:`~spikebench.harness.rules.FitContext.score_validation`),
the same selection-on-validation every rule's early stopping uses. No backend, no time steps:
``steps`` is ignored; the cost is ``F`` multiply-accumulates per sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from spikebench.harness.rules.base import FitContext, Rule, Split, TrainedModel
from spikebench.harness.rules.early_stopping import EarlyStopping
from spikebench.harness.space import Fixed, Param


class ReferenceModel(TrainedModel):
    """A fitted non-spiking model: ``predict`` maps ``X`` to ``P(lesion)``; its cost is
    ``info["macs_per_sample"]`` multiply-accumulates."""

    train_steps = 1

    def __init__(self, predict: Any, info: dict[str, Any]) -> None:
        self._predict, self.info = predict, info

    def predict_proba(self, X: np.ndarray, *, steps: int | None = None) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        return np.asarray(self._predict(np.asarray(X, dtype=np.float32)), dtype=np.float64)

    def activity(self, X: np.ndarray, *, steps: int | None = None) -> dict[str, float]:
        nan = float("nan")
        macs = float(self.info["macs_per_sample"])
        return {"spikes_per_sample": nan, "acs_per_sample": 0.0, "macs_per_sample": macs,
                "synops_per_sample": nan}


class LogisticRegressionRule(Rule):
    """Balanced logistic regression, ``C`` selected on validation (module docstring)."""

    name = "logistic_regression"
    summary = "reference: balanced logistic regression, C chosen on validation"
    needs = frozenset()
    kind = "reference"

    def search_space(self) -> dict[str, Param]:
        return {"C": Fixed([0.01, 0.1, 1.0, 10.0])}

    def fit(self, train: Split, val: Split, params: Mapping[str, Any], ctx: FitContext
            ) -> ReferenceModel:
        from sklearn.linear_model import LogisticRegression

        grid = params["C"] if isinstance(params["C"], list | tuple) else [params["C"]]
        stopper = EarlyStopping(patience=None, min_delta=1e-12)
        for c in grid:
            clf = LogisticRegression(C=float(c), class_weight="balanced", max_iter=2000,
                                     random_state=ctx.seed)
            clf.fit(train.X, train.y)
            stopper.update(ctx.score_validation(clf.predict_proba(val.X)[:, 1]), (clf, c))
        clf, c = stopper.best_state
        return ReferenceModel(lambda X: clf.predict_proba(X)[:, 1], {
            "params": {"C": c, "class_weight": "balanced"}, "epochs": 1,
            "best_val": stopper.best, "labels_used": len(train),
            "macs_per_sample": float(train.X.shape[1]),
        })
