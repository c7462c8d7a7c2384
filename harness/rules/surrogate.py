"""Surrogate-gradient BPTT: backpropagation through time with a smooth stand-in for dΘ/dH.

The network is any backend's feed-forward LIF network (two output neurons, one per class).
Losses over the output layer's spikes ``S[t]`` and charge ``H[t]`` (``t = 1..T``):

- ``count``:    CE(Σ_t S[t], y)                              (snnTorch's ``ce_count_loss``)
- ``membrane``: CE((1/T) Σ_t H[t], y)
- ``tet``:      (1 − λ) (1/T) Σ_t CE(H[t], y) + λ (1/T) Σ_t MSE(H[t], φ)
                *TET-style on the output membrane*: Temporal Efficient Training (Deng et al.
                2022, arXiv 2202.11946) applies this loss to a non-spiking per-step read-out
                O(t); here O(t) is the output LIF layer's pre-reset membrane H[t]. φ
                (``tet_phi``) and λ (``tet_lambda``) default to the official code's values,
                φ = 1.0 and λ = 1e-3.

Cross-entropies are class-weighted (inverse frequency). ``P(lesion)`` is the softmax of the
same logits the loss reads (counts, mean charge, or mean charge for TET). With
``mixed_steps`` each batch draws T from {⌈T/2⌉, T, 2T} so the model works at several T
(in the spirit of arXiv 2503.17394).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spikebench.backends.base import NetworkSpec
from spikebench.backends.capabilities import Capability
from spikebench.backends.specs import Reset, Surrogate
from spikebench.harness.encoding import ENCODINGS, encode
from spikebench.harness.optim import adam
from spikebench.harness.rules.base import (
    DivergedError,
    FitContext,
    Rule,
    Split,
    TrainedModel,
    class_weights,
)
from spikebench.harness.rules.checks import MEMBRANE_LIMIT, check_finite, check_finite_params
from spikebench.harness.rules.early_stopping import fit_epochs
from spikebench.harness.space import Categorical, Fixed, Float, Int, Param

LOSSES = ("count", "membrane", "tet")


def logits_of(spikes: torch.Tensor, membrane: torch.Tensor, loss: str) -> torch.Tensor:
    """``[B, 2]`` class scores the loss and the probabilities read."""
    if loss == "count":
        return spikes.sum(0)
    return membrane.mean(0)


def tet_loss(membrane: torch.Tensor, y: torch.Tensor, *, lam: float, phi: float,
             weight: torch.Tensor | None = None) -> torch.Tensor:
    """TET: ``(1-λ) mean_t CE(H[t], y) + λ mean_t MSE(H[t], φ)`` over ``[T, B, C]`` charges."""
    steps = membrane.shape[0]
    ce = torch.stack([F.cross_entropy(membrane[t], y, weight=weight) for t in range(steps)]).mean()
    mse = ((membrane - phi) ** 2).mean()
    return (1 - lam) * ce + lam * mse


def spike_loss(out_spikes: torch.Tensor, membrane: torch.Tensor, y: torch.Tensor, loss: str, *,
               weight: torch.Tensor | None, lam: float, phi: float) -> torch.Tensor:
    if loss == "tet":
        return tet_loss(membrane, y, lam=lam, phi=phi, weight=weight)
    return F.cross_entropy(logits_of(out_spikes, membrane, loss), y, weight=weight)


#: The LIF neuron's tuned parameters, shared by every surrogate-gradient rule (dense and conv).
LIF_SPACE: dict[str, Param] = {
    "beta": Float(0.5, 0.95),
    "threshold": Float(0.5, 1.5),
    "surrogate": Categorical(("fast_sigmoid", "arctan", "sigmoid")),
    "slope": Float(2.0, 25.0, log=True),
}


@dataclasses.dataclass(frozen=True)
class LIFParams:
    """The LIF neuron's parameters (:data:`LIF_SPACE`): ``H[t] = β U[t−1] + I[t]``, a spike
    when ``H[t] > threshold``, the surrogate derivative ``surrogate`` of steepness ``slope``."""

    beta: float = 0.9
    threshold: float = 1.0
    surrogate: Surrogate = "fast_sigmoid"
    slope: float = 5.0


@dataclasses.dataclass(frozen=True)
class SurrogateParams(LIFParams):
    """The parameters of :class:`SurrogateGradient` (its :meth:`~SurrogateGradient.
    search_space`)."""

    hidden: int = 64
    steps: int = 16
    lr: float = 5e-3
    encoding: str = "direct"
    gain: float = 1.0
    loss: str = "count"
    tet_lambda: float = 1e-3
    tet_phi: float = 1.0
    mixed_steps: bool = False
    reset: Reset = "subtract"
    batch_size: int = 64
    epochs: int = 30
    patience: int = 6
    weight_decay: float = 1e-4


class SurrogateModel(TrainedModel):
    """A trained LIF network plus its encoder settings."""

    def __init__(self, net: Any, params: SurrogateParams, device: Any, info: dict) -> None:
        self.net, self.params, self.device, self.info = net, params, device, info
        self.train_steps = params.steps

    def _forward(self, X: np.ndarray, steps: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
        p = self.params
        dtype = next(self.net.parameters()).dtype
        x = torch.as_tensor(X, dtype=dtype, device=self.device)
        gen = torch.Generator(device=x.device).manual_seed(seed)
        outs, mems, counts = [], [], None
        with torch.no_grad():
            for start in range(0, len(x), 1024):
                xb = encode(x[start:start + 1024], p.encoding, steps, gain=p.gain,
                            generator=gen)
                o = self.net(xb)
                outs.append(o.spikes)
                mems.append(o.membrane)
                c = torch.stack([n.float() for n in o.layer_spike_counts])
                c_in = (xb != 0).sum().float()
                counts = (c, c_in) if counts is None else (counts[0] + c, counts[1] + c_in)
        assert counts is not None, "predict on no rows"
        return torch.cat(outs, 1), torch.cat(mems, 1), counts[0], counts[1]

    def predict_proba(self, X: np.ndarray, *, steps: int | None = None) -> np.ndarray:
        spikes, mem, _, _ = self._forward(X, steps or self.train_steps)
        logits = logits_of(spikes, mem, self.params.loss)
        return torch.softmax(logits.double(), -1)[:, 1].cpu().numpy()

    def activity(self, X: np.ndarray, *, steps: int | None = None) -> dict[str, float]:
        """Cost counters per sample. Every non-zero input of a layer fans out to the next
        layer's neurons; the event is an accumulate (AC) when the input is a binary spike and a
        multiply-accumulate (MAC) when it is a real value (the first layer of a ``direct``-encoded
        network), as NeuroBench counts effective ACs and MACs."""
        _, _, layer_counts, input_events = self._forward(X, steps or self.train_steps)
        sizes = self.net.spec.sizes
        n = max(len(X), 1)
        first = float(input_events) * sizes[1]
        hidden = sum(float(c) * fan_out for c, fan_out in zip(layer_counts[:-1], sizes[2:]))
        direct = self.params.encoding == "direct"
        acs = hidden + (0.0 if direct else first)
        macs = first if direct else 0.0
        return {"spikes_per_sample": float(layer_counts.sum()) / n, "acs_per_sample": acs / n,
                "macs_per_sample": macs / n, "synops_per_sample": (acs + macs) / n}

    def export(self):
        return self.net.spec, self.net.get_weights()


class SurrogateGradient(Rule[SurrogateParams]):
    """Surrogate-gradient BPTT on any backend (see the module docstring for the losses)."""

    name = "surrogate"
    needs = frozenset({Capability.DENSE_LIF, Capability.SURROGATE_GRADIENTS})
    summary = "surrogate-gradient BPTT (count / membrane / TET loss; direct, rate, latency)"
    params_type = SurrogateParams

    def search_space(self) -> dict[str, Param]:
        return {
            "hidden": Int(16, 128, log=True),
            "steps": Int(8, 24),
            "lr": Float(1e-3, 3e-2, log=True),
            **LIF_SPACE,
            "encoding": Categorical(("direct", "rate", "latency")),
            "gain": Fixed(1.0),
            "loss": Categorical(LOSSES),
            "tet_lambda": Fixed(1e-3),
            "tet_phi": Fixed(1.0),
            "mixed_steps": Fixed(False),
            "reset": Fixed("subtract"),
            "batch_size": Fixed(64),
            "epochs": Fixed(30),
            "patience": Fixed(6),
            "weight_decay": Fixed(1e-4),
        }

    def fit(self, train: Split, val: Split, params: SurrogateParams, ctx: FitContext
            ) -> SurrogateModel:
        p = params
        check_finite(train, val)
        check_finite_params(p)
        if p.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {p.encoding!r}")
        if p.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {p.loss!r}")
        spec = NetworkSpec(sizes=(train.X.shape[1], p.hidden, 2), beta=p.beta,
                           threshold=p.threshold, surrogate=p.surrogate, slope=p.slope,
                           reset=p.reset)
        backend = ctx.require_backend(self)
        backend.check_supported(spec)
        net = backend.build(spec, device=ctx.device, seed=ctx.seed)
        device = next(net.parameters()).device
        x = torch.as_tensor(train.X, dtype=torch.float32, device=device)
        y = torch.as_tensor(train.y, dtype=torch.long, device=device)
        weight = torch.as_tensor(class_weights(train.y), device=device)
        opt = adam(net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
        gen = torch.Generator(device=device).manual_seed(ctx.seed)
        rng = np.random.default_rng(ctx.seed)
        steps = p.steps
        step_set = (max(2, math.ceil(steps / 2)), steps, 2 * steps)
        model = SurrogateModel(net, p, device, info={})
        batch = p.batch_size

        def train_epoch(epoch: int) -> None:
            order = torch.as_tensor(rng.permutation(len(x)), device=device)
            for start in range(0, len(x), batch):
                idx = order[start:start + batch]
                t = int(rng.choice(step_set)) if p.mixed_steps else steps
                out = net(encode(x[idx], p.encoding, t, gain=p.gain, generator=gen))
                loss = spike_loss(out.spikes, out.membrane, y[idx], p.loss, weight=weight,
                                  lam=p.tet_lambda, phi=p.tet_phi)
                if not torch.isfinite(loss):
                    raise DivergedError(f"non-finite loss ({loss.item()}) at epoch {epoch}")
                peak = out.membrane.detach().abs().max()
                if not torch.isfinite(peak):  # NaN/inf input or weights: NaN never compares >
                    raise DivergedError(f"non-finite membrane at epoch {epoch}")
                if peak > MEMBRANE_LIMIT:
                    raise DivergedError(f"exploding membrane (|H| > {MEMBRANE_LIMIT:g})")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        epochs, best = fit_epochs(
            net, epochs=p.epochs, patience=p.patience, train_epoch=train_epoch,
            score=lambda: ctx.score_validation(model.predict_proba(val.X)),
            report=ctx.report_epoch)
        model.info = {"epochs": epochs, "labels_used": len(train), "best_val": best}
        return model

