"""Attention-based multiple-instance learning on the convolutional SNN: a spiking patient score.

The attention-MIL head of :mod:`spikebench.harness.rules.mil` on the spiking slice embeddings
of :mod:`spikebench.harness.rules.conv_surrogate`. A patient is a bag of slice crops
``x_1 … x_K``; each slice, encoded as in ``conv_surrogate`` (``direct`` x[t] = g·x, ``rate``
x[t] ~ Bernoulli(σ(g·x))), drives the backend's convolutional LIF network (two convolutional
stages and one dense LIF layer of ``hidden`` neurons: the CNN trunk of ``cnn_mil`` with LIF
units, :class:`~spikebench.backends.conv.ConvNetworkSpec` with ``outputs = hidden``). The
slice embedding is that layer's activity over the ``T`` steps, chosen by ``readout``::

    rate:     h_k = (1/T) Σ_t S_k[t]          (firing rates, in [0, 1])
    membrane: h_k = (1/T) Σ_t H_k[t]          (mean charge)

and the gated attention of Ilse et al. (2018) pools the bag::

    a_k = softmax_k(wᵀ (tanh(V h_k) ⊙ σ(U h_k))),   P(patient) = σ(cᵀ Σ_k a_k h_k + d)

Trained end to end with surrogate gradients (BPTT through the LIF network) on the
class-weighted binary cross-entropy against the bag label (a patient is positive when any of
its slices is), Adam, early stopping on the validation score; each training bag is a random
subset of at most ``bag_slices`` slices, prediction reads every slice, chunk by chunk.
Training stops with :class:`~spikebench.harness.rules.base.DivergedError` on a non-finite
hyper-parameter, input pixel or loss, an exploding membrane, or non-finite weights after an
optimiser step (the guards of ``conv_surrogate``: a NaN in an early layer never spikes, so the
embedding and the loss may stay finite while its gradients are NaN).

What the harness sees: every slice's ``P(lesion)`` is its patient's bag score (as for
``cnn_mil``), so the patient-level metrics read the MIL score; slice-level metrics of this rule
are not meaningful. Costs per slice: the spikes, ACs and MACs of the convolutional SNN counted
as in ``conv_surrogate``, plus the attention scores' ``2·hidden·attention + attention``
multiply-accumulates (real-valued embeddings in, so MACs).
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

import numpy as np
import torch

from spikebench.backends.capabilities import Capability
from spikebench.harness.optim import adam
from spikebench.harness.rules.base import (
    FitContext,
    Rule,
    Split,
    class_weights,
)
from spikebench.harness.rules.checks import check_finite_params, check_parameters, check_training
from spikebench.harness.rules.conv_surrogate import (
    IMAGE_ENCODINGS,
    ConvNetParams,
    ConvSurrogate,
    ConvSurrogateModel,
    conv_spec,
    encode_crops,
)
from spikebench.harness.rules.early_stopping import fit_epochs
from spikebench.harness.rules.mil import (
    attention_macs,
    bag_labels,
    bags_of,
    gated_attention,
    predict_bags,
    train_bags,
)
from spikebench.harness.space import Categorical, Fixed, Param

#: ``membrane`` first (the default point): a small layer's rates are sparse early in
#: training (many silent neurons), which slows the attention head's learning.
READOUTS = ("membrane", "rate")
#: The conv-surrogate read-out of the same layer (what ``ConvSurrogateModel`` counts with).
_PARENT_LOSS = {"rate": "count", "membrane": "membrane"}


@dataclasses.dataclass(frozen=True)
class ConvSNNMILParams(ConvNetParams):
    """The parameters of :class:`ConvSNNMIL` (its :meth:`~ConvSNNMIL.search_space`): the
    convolutional network's, the embedding ``readout`` and the attention-MIL head's."""

    readout: str = "membrane"
    attention: int = 16
    bag_slices: int = 48
    bags_per_step: int = 4


def embedding_spec(X: Any, p: ConvSNNMILParams) -> Any:
    """The slice-embedding network of parameters ``p`` for crops shaped like ``X``: the
    ``conv_surrogate`` stages with one dense LIF layer of ``hidden`` neurons as the output
    (``ValueError`` for an unknown ``encoding`` or ``readout``)."""
    if p.encoding not in IMAGE_ENCODINGS or p.readout not in READOUTS:
        raise ValueError(f"encoding must be one of {IMAGE_ENCODINGS} and readout one of "
                         f"{READOUTS}, got {p.encoding!r}, {p.readout!r}")
    return dataclasses.replace(conv_spec(X, p), hidden=(), outputs=p.hidden)


class ConvMILModel(ConvSurrogateModel):
    """A trained convolutional LIF embedding network plus its gated-attention head."""

    params: ConvSNNMILParams

    def __init__(self, net: Any, head: Any, params: ConvSNNMILParams, device: Any,
                 info: dict) -> None:
        super().__init__(net, params, device, info, loss=_PARENT_LOSS[params.readout])
        self.head = head

    def embed(self, xb: torch.Tensor, steps: int, generator: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Slice embeddings ``[B, hidden]`` (module docstring) and the membrane ``[T, B, .]``
        of float32 crops ``xb`` ``[B, C, S, S]`` over ``steps`` steps."""
        p = self.params
        out = self.net(encode_crops(xb, p, steps, generator))
        h = out.spikes.mean(0) if p.readout == "rate" else out.membrane.mean(0)
        return h, out.membrane

    def predict_proba(self, X: Any, *, steps: int | None = None) -> np.ndarray:
        """Each row's bag score (the same for every slice of a patient)."""
        steps = steps or self.train_steps
        gen = torch.Generator(device=self.device).manual_seed(0)

        def embed_rows(rows: np.ndarray) -> np.ndarray:
            h, _ = self.embed(torch.as_tensor(rows, device=self.device), steps, gen)
            return h.float().cpu().numpy()

        return predict_bags(X, embed_rows, self.head)

    def activity(self, X: Any, *, steps: int | None = None) -> dict[str, float]:
        """The convolutional SNN's counters per slice plus the attention's MACs per slice."""
        out = super().activity(X, steps=steps)
        extra = attention_macs(self.params.hidden, self.params.attention)
        out["macs_per_sample"] += extra
        out["synops_per_sample"] += extra
        return out


class ConvSNNMIL(Rule[ConvSNNMILParams]):
    """Convolutional-SNN slice embeddings + gated attention per patient (module docstring)."""

    name = "conv_snn_mil"
    needs = frozenset({Capability.CONV_LIF, Capability.SURROGATE_GRADIENTS})
    summary = ("image track: convolutional SNN + attention-MIL head, one score per patient, "
               "surrogate-gradient BPTT")
    inputs = "images"
    params_type = ConvSNNMILParams

    def search_space(self) -> dict[str, Param]:
        """``conv_surrogate``'s space (network, LIF, code, optimiser) with the read-out
        ``readout`` in place of its loss and the attention-MIL head's settings."""
        space = ConvSurrogate().search_space()
        for name in ("loss", "batch_size"):
            del space[name]
        return space | {"readout": Categorical(READOUTS), "attention": Fixed(16),
                        "bag_slices": Fixed(48), "bags_per_step": Fixed(4)}

    def fit(self, train: Split, val: Split, params: ConvSNNMILParams, ctx: FitContext
            ) -> ConvMILModel:
        p, hidden = params, params.hidden
        check_finite_params(p)
        spec = embedding_spec(train.X, p)
        net = ctx.require_backend(self).build_conv(spec, device=ctx.device, seed=ctx.seed)
        device = next(net.parameters()).device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            head = gated_attention(hidden, p.attention).to(device)
        model = ConvMILModel(net, head, p, device, info={})
        both = torch.nn.ModuleDict({"net": cast(torch.nn.Module, net), "head": head})
        opt = adam(both.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        bags = bags_of(train.X)
        bag_y = bag_labels(bags, train.y)
        weights = class_weights(bag_y)
        gen = torch.Generator(device=device).manual_seed(ctx.seed)
        rng = np.random.default_rng(ctx.seed)
        steps = p.steps
        peak: list[torch.Tensor] = []

        def bag_logit(rows: np.ndarray) -> torch.Tensor:
            h, membrane = model.embed(torch.as_tensor(rows, device=device), steps, gen)
            peak[:] = [membrane.detach().abs().max()]
            return head(h)[0]

        def train_epoch(epoch: int) -> None:
            train_bags(train.X, bags, bag_y, bag_logit, opt, weights=weights, rng=rng,
                       cap=p.bag_slices, per_step=p.bags_per_step,
                       check=lambda loss: check_training(loss, peak[0], epoch),
                       after_step=lambda: check_parameters(both, epoch))

        epochs, best = fit_epochs(
            both, epochs=p.epochs, patience=p.patience, train_epoch=train_epoch,
            score=lambda: ctx.score_validation(model.predict_proba(val.X)),
            report=ctx.report_epoch)
        model.info = {"epochs": epochs, "labels_used": len(train), "best_val": best,
                      "bags": len(bags), "conv_spec": str(spec)}
        return model
