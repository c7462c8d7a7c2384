"""A one-hidden-layer perceptron: the non-linear, non-spiking reference.

``P(lesion) = softmax(W₂ ReLU(W₁ x + b₁) + b₂)₁``, trained with Adam on the class-weighted
cross-entropy and early-stopped on the validation score like every rule
(:class:`~spikebench.harness.rules.early_stopping.EarlyStopping`). No backend, no time steps.
Cost per sample: ``F·H + 2·H`` multiply-accumulates (the two dense layers; the one definition
the reports use).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from spikebench.harness.optim import adam
from spikebench.harness.rules.base import FitContext, Rule, Split, class_weights
from spikebench.harness.rules.early_stopping import fit_epochs, minibatch_epoch
from spikebench.harness.rules.params import as_dict
from spikebench.harness.rules.reference_model import ReferenceModel
from spikebench.harness.space import Fixed, Float, Int, Param


def mlp_macs(n_features: int, hidden: int) -> float:
    """Multiply-accumulates per sample of an ``F → H → 2`` perceptron: ``F·H + 2·H``."""
    return float(n_features * hidden + hidden * 2)


@dataclasses.dataclass(frozen=True)
class MLPParams:
    """The parameters of :class:`MLP` (its :meth:`~MLP.search_space`)."""

    hidden: int = 32
    epochs: int = 200
    patience: int = 20
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4


class MLP(Rule[MLPParams]):
    """One-hidden-layer perceptron (module docstring)."""

    name = "mlp"
    summary = "reference: one-hidden-layer perceptron, early-stopped on validation"
    needs = frozenset()
    kind = "reference"
    params_type = MLPParams

    def search_space(self) -> dict[str, Param]:
        return {"hidden": Int(8, 128, log=True), "epochs": Fixed(200), "patience": Fixed(20),
                "batch_size": Fixed(64), "lr": Float(3e-4, 3e-2, log=True),
                "weight_decay": Float(1e-6, 1e-2, log=True)}

    def fit(self, train: Split, val: Split, params: MLPParams, ctx: FitContext
            ) -> ReferenceModel:
        import torch
        from torch import nn

        hidden, batch = params.hidden, params.batch_size
        n_features = train.X.shape[1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            net = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        x = torch.as_tensor(train.X, dtype=torch.float32)
        y = torch.as_tensor(train.y, dtype=torch.long)
        opt = adam(net.parameters(), lr=params.lr,
                   weight_decay=params.weight_decay)
        loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(class_weights(train.y)))
        rng = np.random.default_rng(ctx.seed)

        def predict(X: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                logits = net(torch.as_tensor(X, dtype=torch.float32))
                return torch.softmax(logits.double(), 1)[:, 1].numpy()

        def train_epoch(epoch: int) -> None:
            minibatch_epoch(opt, len(x), batch, rng, lambda idx: loss_fn(
                net(x[torch.as_tensor(idx)]), y[torch.as_tensor(idx)]))

        epochs, best = fit_epochs(
            net, epochs=params.epochs, patience=params.patience,
            train_epoch=train_epoch,
            score=lambda: ctx.score_validation(predict(val.X)))
        return ReferenceModel(predict, {
            "params": as_dict(params), "epochs": epochs, "best_val": best,
            "labels_used": len(train), "macs_per_sample": mlp_macs(n_features, hidden),
        })
