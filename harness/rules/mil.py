"""Attention-based multiple-instance learning: a patient score straight from its slices.

A patient is a bag of slice crops ``x_1 … x_K``. Each slice is embedded by the CNN trunk of
:mod:`spikebench.harness.rules.cnn` (``h_k``, ``hidden`` wide); gated attention (Ilse,
Tomczak & Welling 2018, "Attention-based deep multiple instance learning", eq. 9) pools them::

    a_k = exp(wᵀ (tanh(V h_k) ⊙ σ(U h_k))) / Σ_j exp(wᵀ (tanh(V h_j) ⊙ σ(U h_j)))
    z   = Σ_k a_k h_k
    P(patient has a lesion) = σ(cᵀ z + d)

trained with the class-weighted binary cross-entropy against the bag label (a patient is
positive when any of its slices is), Adam, early stopping on the validation score. During
training each bag is a random subset of at most ``bag_slices`` slices (memory stays bounded on
real volumes); prediction uses every slice.

What the harness sees: ``P(lesion)`` of each slice *is its patient's bag score*, so the
patient-level metrics (a patient's score is its maximum slice probability) read the MIL score
itself and compare it with the max-aggregated slice scores of the CNN reference; slice-level
metrics of this rule are not meaningful (every slice of a patient has the same score). The
bags are read from the rows' patient ids (``X.groups`` of the lazy crop rows), so this rule
needs the image track's rows. Cost per sample: the CNN's multiply-accumulates per slice plus
the attention's ``2·hidden·attention + attention`` per slice.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from spikebench.errors import RuleError
from spikebench.harness.optim import adam
from spikebench.harness.rules.base import FitContext, Rule, Split, class_weights
from spikebench.harness.rules.batches import predict_rows, read_rows
from spikebench.harness.rules.cnn import cnn_macs, cnn_trunk
from spikebench.harness.rules.early_stopping import fit_epochs
from spikebench.harness.rules.params import as_dict
from spikebench.harness.rules.reference_model import LazyReferenceModel
from spikebench.harness.space import Fixed, Float, Int, Param


def bags_of(X: Any) -> dict[str, np.ndarray]:
    """Row indices per patient, from the rows' ``groups`` (sorted by patient id)."""
    groups = getattr(X, "groups", None)
    if groups is None:
        raise RuleError("attention MIL needs each row's patient id (X.groups): it runs on the "
                        "image track's crop rows only")
    groups = np.asarray(groups).astype(str)
    return {g: np.flatnonzero(groups == g) for g in np.unique(groups)}


def gated_attention(hidden: int, attention: int) -> Any:
    """The pooling module of the module docstring: ``[K, hidden]`` → (logit, weights ``[K]``)."""
    import torch
    from torch import nn

    class GatedAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.V = nn.Linear(hidden, attention)
            self.U = nn.Linear(hidden, attention)
            self.w = nn.Linear(attention, 1)
            self.classifier = nn.Linear(hidden, 1)

        def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            scores = self.w(torch.tanh(self.V(h)) * torch.sigmoid(self.U(h))).squeeze(-1)
            a = torch.softmax(scores, 0)
            return self.classifier(a @ h).squeeze(-1), a

    return GatedAttention()


def attention_macs(hidden: int, attention: int) -> float:
    """Multiply-accumulates per slice of the attention scores (``V``, ``U``: ``2·hidden·
    attention``; ``w``: ``attention``); the per-bag classifier is not counted per slice."""
    return float(2 * hidden * attention + attention)


def bag_labels(bags: Mapping[str, np.ndarray], y: np.ndarray) -> np.ndarray:
    """A bag is positive when any of its slices is (in the order of ``bags``)."""
    return np.array([int(y[rows].max()) for rows in bags.values()])


def train_bags(X: Any, bags: Mapping[str, np.ndarray], bag_y: np.ndarray,
               bag_logit: Callable[[np.ndarray], Any], opt: Any, *, weights: np.ndarray,
               rng: np.random.Generator, cap: int, per_step: int,
               check: Callable[[Any], None] | None = None,
               after_step: Callable[[], None] | None = None) -> None:
    """One epoch of bag training shared by the MIL rules: bags in random order, ``per_step``
    bags per optimiser step, each a random subset of at most ``cap`` slices (read in
    ascending order), class-weighted BCE of ``bag_logit(rows)`` against the bag label.
    Gradients are accumulated bag by bag, so only one bag's graph is held in memory;
    ``check(loss)`` sees each bag's loss before its backward pass and ``after_step()`` runs
    after each optimiser step (divergence guards)."""
    import torch
    from torch import nn

    names = list(bags)
    order = rng.permutation(len(names))
    for start in range(0, len(order), per_step):
        step = order[start:start + per_step]
        opt.zero_grad()
        for b in step:
            rows = bags[names[b]]
            if len(rows) > cap:
                rows = np.sort(rng.choice(rows, cap, replace=False))
            logit = bag_logit(read_rows(X, rows))
            target = torch.tensor(float(bag_y[b]), device=logit.device)
            loss = nn.functional.binary_cross_entropy_with_logits(logit, target)
            if check is not None:
                check(loss)
            (loss * float(weights[bag_y[b]]) / len(step)).backward()
        opt.step()
        if after_step is not None:
            after_step()


def predict_bags(X: Any, embed: Callable[[np.ndarray], np.ndarray], head: Any) -> np.ndarray:
    """Every row's bag score ``σ(head(h))``: slices embedded chunk by chunk by ``embed``
    (float32 rows → ``[n, hidden]`` numpy), pooled per patient by ``head``."""
    import torch

    device = next(head.parameters()).device
    out = np.zeros(len(X))
    with torch.no_grad():
        for rows in bags_of(X).values():
            h = predict_rows(X.rows(rows) if hasattr(X, "rows") else X[rows], embed)
            logit = head(torch.as_tensor(h, dtype=torch.float32, device=device))[0]
            out[rows] = float(torch.sigmoid(logit.double()))
    return out


@dataclasses.dataclass(frozen=True)
class AttentionMILParams:
    """The parameters of :class:`AttentionMIL` (its :meth:`~AttentionMIL.search_space`)."""

    channels: int = 8
    hidden: int = 32
    attention: int = 16
    bag_slices: int = 48
    bags_per_step: int = 4
    epochs: int = 40
    patience: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4


class AttentionMIL(Rule[AttentionMILParams]):
    """CNN slice embeddings + gated attention pooling per patient (module docstring)."""

    name = "cnn_mil"
    summary = "reference (image track): CNN + attention-MIL head, one score per patient"
    needs = frozenset()
    kind = "reference"
    inputs = "images"
    params_type = AttentionMILParams

    def search_space(self) -> dict[str, Param]:
        return {"channels": Int(4, 16, log=True), "hidden": Int(16, 64, log=True),
                "attention": Int(8, 32, log=True), "bag_slices": Fixed(48),
                "bags_per_step": Fixed(4), "epochs": Fixed(40), "patience": Fixed(8),
                "lr": Float(1e-4, 3e-3, log=True), "weight_decay": Float(1e-6, 1e-2, log=True)}

    def fit(self, train: Split, val: Split, params: AttentionMILParams, ctx: FitContext
            ) -> LazyReferenceModel:
        import torch
        from torch import nn

        channels, hidden = params.channels, params.hidden
        attention = params.attention
        size, c_in = int(train.X.shape[-1]), int(train.X.shape[1])
        bags = bags_of(train.X)
        bag_y = bag_labels(bags, train.y)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            trunk = cnn_trunk(c_in, size, channels, hidden)
            head = gated_attention(hidden, attention)
        net = nn.ModuleDict({"trunk": trunk, "head": head})
        weights = class_weights(bag_y)
        opt = adam(net.parameters(), lr=params.lr,
                   weight_decay=params.weight_decay)
        rng = np.random.default_rng(ctx.seed)
        cap, per_step = params.bag_slices, params.bags_per_step

        def bag_logit(rows: np.ndarray) -> Any:
            return head(trunk(torch.as_tensor(rows)))[0]

        def predict(X: Any) -> np.ndarray:
            net.eval()
            return predict_bags(X, lambda r: trunk(torch.as_tensor(r)).numpy(), head)

        def train_epoch(epoch: int) -> None:
            train_bags(train.X, bags, bag_y, bag_logit, opt, weights=weights, rng=rng,
                       cap=cap, per_step=per_step)

        epochs, best = fit_epochs(
            net, epochs=params.epochs, patience=params.patience,
            train_epoch=train_epoch,
            score=lambda: ctx.score_validation(predict(val.X)))
        # the CNN's per-slice cost without its 2-way classifier, plus the attention per slice
        macs = (cnn_macs(size, c_in, channels, hidden) - 2 * hidden
                + attention_macs(hidden, attention))
        return LazyReferenceModel(predict, {
            "params": as_dict(params), "epochs": epochs, "best_val": best,
            "labels_used": len(train), "bags": len(bags), "macs_per_sample": float(macs),
        })
