"""The fitted model of the non-spiking references (logistic regression, MLP, CNN, MIL).

A reference predicts with a plain function and costs ``info["macs_per_sample"]``
multiply-accumulates per sample (no spikes, no accumulates); it has no time steps, so
``steps`` is ignored.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from spikebench.harness.rules.base import TrainedModel


class ReferenceModel(TrainedModel):
    """A fitted non-spiking model: ``predict`` maps ``X`` (a float32 array) to ``P(lesion)``;
    its cost is ``info["macs_per_sample"]`` multiply-accumulates."""

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


class LazyReferenceModel(ReferenceModel):
    """A :class:`ReferenceModel` whose ``X`` may be lazy crop rows: ``predict`` reads them
    itself, chunk by chunk (:func:`~spikebench.harness.rules.batches.predict_rows`)."""

    def predict_proba(self, X: Any, *, steps: int | None = None) -> np.ndarray:
        return np.asarray(self._predict(X), dtype=np.float64)
