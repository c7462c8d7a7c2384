"""Non-spiking reference models, fitted on the same patient-level splits as the spiking cells.

- ``logistic_regression``: scikit-learn ``LogisticRegression(class_weight="balanced")``,
  ``P = σ(wᵀx + b)``; the inverse regularisation ``C`` is picked from :data:`LOGISTIC_C` by
  validation PR-AUC (average precision).
- ``mlp``: a one-hidden-layer perceptron ``P = softmax(W₂ ReLU(W₁ x + b₁) + b₂)₁`` in PyTorch,
  trained with Adam on the class-weighted cross-entropy, early-stopped on validation PR-AUC.

Both ignore ``steps`` (they are not spiking) and report their cost as multiply-accumulates per
sample in ``info["macs_per_sample"]``; their ``activity`` is NaN.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from spikebench.harness.rules.base import Split, TrainedModel, class_weights

#: Inverse regularisation strengths tried for the logistic regression.
LOGISTIC_C = (0.01, 0.1, 1.0, 10.0)
#: The MLP's hidden width, epochs, patience, batch size and learning rate.
MLP_HIDDEN, MLP_EPOCHS, MLP_PATIENCE, MLP_BATCH, MLP_LR = 32, 200, 20, 64, 3e-3


class ReferenceModel(TrainedModel):
    """A fitted non-spiking model: ``predict`` maps ``X`` to ``P(lesion)``."""

    train_steps = 1

    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], info: dict[str, Any]) -> None:
        self._predict, self.info = predict, info

    def predict_proba(self, X: np.ndarray, *, steps: int | None = None) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        return np.asarray(self._predict(np.asarray(X, dtype=np.float32)), dtype=np.float64)


def _pr_auc(y: np.ndarray, prob: np.ndarray) -> float:
    from spikebench.harness.metrics import score

    value = score("pr_auc", y, prob)
    if math.isnan(value):  # one class in val: fall back to balanced accuracy
        value = score("balanced_accuracy", y, prob)
    return value


def fit_logistic_regression(train: Split, val: Split, seed: int) -> ReferenceModel:
    from sklearn.linear_model import LogisticRegression

    best: tuple[float, Any, float] | None = None
    for c in LOGISTIC_C:
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=2000, random_state=seed)
        clf.fit(train.X, train.y)
        value = _pr_auc(val.y, clf.predict_proba(val.X)[:, 1])
        if best is None or value > best[0] + 1e-12:
            best = (value, clf, c)
    assert best is not None
    value, clf, c = best
    n_features = train.X.shape[1]
    return ReferenceModel(lambda X: clf.predict_proba(X)[:, 1], {
        "params": {"C": c, "class_weight": "balanced"}, "epochs": 1, "best_val": value,
        "labels_used": len(train), "macs_per_sample": float(n_features),
    })


def fit_mlp(train: Split, val: Split, seed: int) -> ReferenceModel:
    import copy

    import torch
    from torch import nn

    n_features = train.X.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(nn.Linear(n_features, MLP_HIDDEN), nn.ReLU(),
                            nn.Linear(MLP_HIDDEN, 2))
    x = torch.as_tensor(train.X, dtype=torch.float32)
    y = torch.as_tensor(train.y, dtype=torch.long)
    xv = torch.as_tensor(val.X, dtype=torch.float32)
    weight = torch.as_tensor(class_weights(train.y))
    opt = torch.optim.Adam(net.parameters(), lr=MLP_LR, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    rng = np.random.default_rng(seed)

    def predict(X: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            logits = net(torch.as_tensor(X, dtype=torch.float32))
            return torch.softmax(logits.double(), 1)[:, 1].numpy()

    best, best_state, stale, epochs = -math.inf, copy.deepcopy(net.state_dict()), 0, 0
    for epoch in range(MLP_EPOCHS):
        order = torch.as_tensor(rng.permutation(len(x)))
        for start in range(0, len(x), MLP_BATCH):
            idx = order[start:start + MLP_BATCH]
            loss = loss_fn(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        epochs = epoch + 1
        value = _pr_auc(val.y, predict(xv.numpy()))
        if value > best + 1e-9:
            best, best_state, stale = value, copy.deepcopy(net.state_dict()), 0
        else:
            stale += 1
            if stale >= MLP_PATIENCE:
                break
    net.load_state_dict(best_state)
    net.eval()
    return ReferenceModel(predict, {
        "params": {"hidden": MLP_HIDDEN, "lr": MLP_LR, "batch_size": MLP_BATCH,
                   "patience": MLP_PATIENCE},
        "epochs": epochs, "best_val": best, "labels_used": len(train),
        "macs_per_sample": float(n_features * MLP_HIDDEN + MLP_HIDDEN * 2),
    })


#: Reference name -> ``fit(train, val, seed) -> TrainedModel``.
REFERENCES: dict[str, Callable[[Split, Split, int], ReferenceModel]] = {
    "logistic_regression": fit_logistic_regression,
    "mlp": fit_mlp,
}


def fit_reference(name: str, train: Split, val: Split, seed: int) -> ReferenceModel:
    """Fit the reference model ``name`` (a key of :data:`REFERENCES`) on ``train``, selecting
    on ``val``; the sealed test split is never involved."""
    if name not in REFERENCES:
        raise ValueError(f"unknown reference {name!r}; known: {', '.join(sorted(REFERENCES))}")
    return REFERENCES[name](train, val, seed)


__all__ = ["REFERENCES", "ReferenceModel", "fit_reference"]
