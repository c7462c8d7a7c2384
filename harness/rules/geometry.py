"""The leak detector: a reference that sees only what the liver mask tells, never the image.

The liver ROI of every slice comes from the ground-truth segmentation (``label > 0``). If a
model given only the ROI's area and the slice's relative position in the liver predicts lesions
well, the image features may be carrying the segmentation rather than the image, and the
report says so. The model is :class:`~spikebench.harness.rules.logistic_regression.
LogisticRegressionRule` on the standardised area ``a`` and position ``z`` expanded to
``(a, z, a², z², a·z)`` (lesions sit mid-liver, where the ROI is large), ``C`` chosen on
validation. The harness passes these two columns as ``X`` (``inputs = "geometry"``).
"""

from __future__ import annotations

import numpy as np

from spikebench.harness.rules.base import FitContext, Split
from spikebench.harness.rules.logistic_regression import (
    LogisticRegressionParams,
    LogisticRegressionRule,
)
from spikebench.harness.rules.reference_model import ReferenceModel


def quadratic(X: np.ndarray) -> np.ndarray:
    """``(a, z) -> (a, z, a², z², a·z)``."""
    a, z = X[:, 0], X[:, 1]
    return np.stack([a, z, a * a, z * z, a * z], 1).astype(np.float32)


class GeometryRule(LogisticRegressionRule):
    """Logistic regression on ROI area and slice position (module docstring)."""

    name = "geometry"
    summary = "reference / leak detector: ROI area and slice position only (no image)"
    inputs = "geometry"

    def fit(self, train: Split, val: Split, params: LogisticRegressionParams, ctx: FitContext
            ) -> ReferenceModel:
        expand = lambda s: Split(quadratic(s.X), s.y, s.groups)  # noqa: E731
        inner = super().fit(expand(train), expand(val), params, ctx)
        model = ReferenceModel(lambda X: inner.predict_proba(quadratic(X)), inner.info)
        model.info["macs_per_sample"] = 5.0
        return model
