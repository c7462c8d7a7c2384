"""Logistic regression: the linear, non-spiking reference every SNN cell is compared with.

``P(lesion) = σ(wᵀx + b)``, fitted by scikit-learn's ``LogisticRegression`` with balanced class
weights (L2 penalty ``‖w‖² / 2C``). The inverse regularisation ``C`` is tuned by Optuna like
every other cell's hyper-parameters (log-uniform on [1e-4, 1e2], the same trial budget, the same
inner validation patients; a spec may narrow it, e.g. ``[space.logistic_regression]
C = [0.01, 0.1, 1.0]``, choices). No backend, no time steps: ``steps`` is ignored; the cost is
``F`` multiply-accumulates per sample.
"""

from __future__ import annotations

import dataclasses

from spikebench.harness.rules.base import FitContext, Rule, Split
from spikebench.harness.rules.reference_model import ReferenceModel
from spikebench.harness.space import Float, Param


@dataclasses.dataclass(frozen=True)
class LogisticRegressionParams:
    """The inverse regularisation of the L2 penalty."""

    C: float = 1.0


class LogisticRegressionRule(Rule[LogisticRegressionParams]):
    """Balanced logistic regression, ``C`` selected on validation (module docstring)."""

    name = "logistic_regression"
    summary = "reference: balanced logistic regression, C tuned like every cell"
    needs = frozenset()
    kind = "reference"
    params_type = LogisticRegressionParams

    def search_space(self) -> dict[str, Param]:
        return {"C": Float(1e-4, 1e2, log=True)}

    def fit(self, train: Split, val: Split, params: LogisticRegressionParams, ctx: FitContext
            ) -> ReferenceModel:
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=params.C, class_weight="balanced", max_iter=2000,
                                 random_state=ctx.seed)
        clf.fit(train.X, train.y)
        best = ctx.score_validation(clf.predict_proba(val.X)[:, 1])
        return ReferenceModel(lambda X: clf.predict_proba(X)[:, 1], {
            "params": {"C": params.C, "class_weight": "balanced"},
            "epochs": None,  # a solver, no epochs
            "best_val": best, "labels_used": len(train),
            "macs_per_sample": float(train.X.shape[1]),
        })
