"""Logistic regression: the linear, non-spiking reference every SNN cell is compared with.

``P(lesion) = σ(wᵀx + b)``, fitted by scikit-learn's ``LogisticRegression`` with balanced class
weights (L2 penalty ``‖w‖² / 2C``). The inverse regularisation ``C`` is chosen from the grid
``C`` on the validation score (:meth:`~spikebench.harness.rules.FitContext.score_validation`),
the same selection-on-validation every rule's early stopping uses. No backend, no time steps:
``steps`` is ignored; the cost is ``F`` multiply-accumulates per sample.
"""

from __future__ import annotations

import dataclasses

from spikebench.harness.rules.base import FitContext, Rule, Split
from spikebench.harness.rules.early_stopping import EarlyStopping
from spikebench.harness.rules.reference_model import ReferenceModel
from spikebench.harness.space import Fixed, Param


@dataclasses.dataclass(frozen=True)
class LogisticRegressionParams:
    """The grid of inverse regularisations ``C`` to select from on validation (a single
    value, e.g. one Optuna choice, is a grid of one)."""

    C: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)


class LogisticRegressionRule(Rule[LogisticRegressionParams]):
    """Balanced logistic regression, ``C`` selected on validation (module docstring)."""

    name = "logistic_regression"
    summary = "reference: balanced logistic regression, C chosen on validation"
    needs = frozenset()
    kind = "reference"
    params_type = LogisticRegressionParams

    def search_space(self) -> dict[str, Param]:
        return {"C": Fixed([0.01, 0.1, 1.0, 10.0])}

    def fit(self, train: Split, val: Split, params: LogisticRegressionParams, ctx: FitContext
            ) -> ReferenceModel:
        from sklearn.linear_model import LogisticRegression

        stopper = EarlyStopping(patience=None, min_delta=1e-12)
        for c in params.C:
            clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000,
                                     random_state=ctx.seed)
            clf.fit(train.X, train.y)
            stopper.update(ctx.score_validation(clf.predict_proba(val.X)[:, 1]), (clf, c))
        clf, c = stopper.best_state
        return ReferenceModel(lambda X: clf.predict_proba(X)[:, 1], {
            "params": {"C": c, "class_weight": "balanced"}, "epochs": None,  # a solver, no epochs
            "best_val": stopper.best, "labels_used": len(train),
            "macs_per_sample": float(train.X.shape[1]),
        })
