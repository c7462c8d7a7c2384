"""A small 2-D CNN on the liver crops: the non-spiking reference of the image track.

For a standardised crop ``x`` (``[1, S, S]``), with ``c`` = ``channels``::

    a_1 = MaxPool_2(ReLU(Conv_3(x)))          c channels,  S/2 × S/2
    a_2 = MaxPool_2(ReLU(Conv_3(a_1)))        2c channels, S/4 × S/4
    h   = ReLU(W_1 flatten(a_2) + b_1)        the slice embedding (``hidden`` wide)
    P(lesion) = softmax(W_2 h + b_2)_1

the same topology as the convolutional SNN (:mod:`spikebench.harness.rules.conv_surrogate`)
with ReLU units in place of LIF neurons. Trained with Adam on the class-weighted
cross-entropy, early-stopped on the validation score like every rule. Cost per sample: the
multiply-accumulates of the convolutions and dense layers (:meth:`~spikebench.backends.conv.
ConvNetworkSpec.conv_macs` of the same topology). The embedding ``h`` is what the attention-MIL
reference (:mod:`spikebench.harness.rules.mil`) pools over a patient's slices.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from spikebench.harness.optim import adam
from spikebench.harness.rules.base import FitContext, Rule, Split, class_weights
from spikebench.harness.rules.batches import predict_rows, read_rows
from spikebench.harness.rules.early_stopping import fit_epochs, minibatch_epoch
from spikebench.harness.rules.params import as_dict
from spikebench.harness.rules.reference_model import LazyReferenceModel
from spikebench.harness.space import Fixed, Float, Int, Param


def cnn_macs(image_size: int, in_channels: int, channels: int, hidden: int) -> float:
    """Multiply-accumulates per sample of the CNN (module docstring)."""
    from spikebench.backends.conv import ConvNetworkSpec

    spec = ConvNetworkSpec(image_size=image_size, in_channels=in_channels,
                           channels=(channels, 2 * channels), hidden=(hidden,))
    return spec.conv_macs()


def cnn_trunk(in_channels: int, image_size: int, channels: int, hidden: int) -> Any:
    """The convolutional trunk up to the embedding ``h`` (an ``nn.Sequential``)."""
    from torch import nn

    side = image_size // 4
    return nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(2 * channels * side * side, hidden), nn.ReLU())


@dataclasses.dataclass(frozen=True)
class CNNParams:
    """The parameters of :class:`CNN` (its :meth:`~CNN.search_space`)."""

    channels: int = 8
    hidden: int = 32
    epochs: int = 30
    patience: int = 6
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4


class CNN(Rule[CNNParams]):
    """Small 2-D CNN reference on crops (module docstring)."""

    name = "cnn"
    summary = "reference (image track): small 2-D CNN on liver crops, early-stopped"
    needs = frozenset()
    kind = "reference"
    inputs = "images"
    params_type = CNNParams

    def search_space(self) -> dict[str, Param]:
        return {"channels": Int(4, 16, log=True), "hidden": Int(16, 64, log=True),
                "epochs": Fixed(30), "patience": Fixed(6), "batch_size": Fixed(32),
                "lr": Float(3e-4, 1e-2, log=True), "weight_decay": Float(1e-6, 1e-2, log=True)}

    def fit(self, train: Split, val: Split, params: CNNParams, ctx: FitContext
            ) -> LazyReferenceModel:
        import torch
        from torch import nn

        channels, hidden = params.channels, params.hidden
        size, c_in = int(train.X.shape[-1]), int(train.X.shape[1])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            net = nn.Sequential(cnn_trunk(c_in, size, channels, hidden), nn.Linear(hidden, 2))
        y = torch.as_tensor(train.y, dtype=torch.long)
        opt = adam(net.parameters(), lr=params.lr,
                   weight_decay=params.weight_decay)
        loss_fn = nn.CrossEntropyLoss(weight=torch.as_tensor(class_weights(train.y)))
        rng = np.random.default_rng(ctx.seed)
        batch = params.batch_size

        def forward(rows: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                logits = net(torch.as_tensor(rows))
                return torch.softmax(logits.double(), 1)[:, 1].numpy()

        def predict(X: Any) -> np.ndarray:
            net.eval()
            return predict_rows(X, forward)

        def train_epoch(epoch: int) -> None:
            minibatch_epoch(opt, len(train), batch, rng, lambda idx: loss_fn(
                net(torch.as_tensor(read_rows(train.X, idx))), y[idx]))

        epochs, best = fit_epochs(
            net, epochs=params.epochs, patience=params.patience,
            train_epoch=train_epoch,
            score=lambda: ctx.score_validation(predict(val.X)))
        return LazyReferenceModel(predict, {
            "params": as_dict(params), "epochs": epochs, "best_val": best,
            "labels_used": len(train),
            "macs_per_sample": cnn_macs(size, c_in, channels, hidden),
        })
