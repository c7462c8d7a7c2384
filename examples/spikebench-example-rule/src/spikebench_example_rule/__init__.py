"""A spikebench learning-rule plugin: a liquid-state (reservoir) readout.

A fixed random layer of ``H`` LIF neurons, built by whichever backend serves the rule (it needs
only :attr:`~spikebench.backends.capabilities.Capability.DENSE_LIF`), turns each standardised
feature vector ``x`` (``[F]``) into spike counts; only a linear readout of those counts learns.

Reservoir (nothing in it learns; the rule draws the weights, so every backend runs the same
numbers): ``W ~ N(0, s²/F)`` (``s`` = ``input_scale``), ``b = 0``, the input encoded for ``T``
steps (``rate``: ``x[t] ~ Bernoulli(σ(g·x))``; ``direct``: ``x[t] = g·x``), and the backend's
LIF dynamics::

    H[t] = β U[t−1] + W x[t],   S[t] = Θ(H[t] − θ),   U[t] = H[t] − θ S[t]

Features: the firing rates ``r_j = (1/T) Σ_t S_j[t]``, z-scored with the training rows' mean
and standard deviation, ``z = (r − μ) / σ`` (σ floored at 1e-3), so any ``T`` reads the same
scale.

Readout (class-weighted ridge regression to the targets ``t_i = 2 y_i − 1``): with ``Z̃ = [Z 1]``
(a column of ones for the bias), ``Ω = diag(w_{y_i})`` the inverse-frequency class weights and
``P = diag(1, …, 1, 0)`` (the bias is not penalised), the weights minimising
``Σ_i w_{y_i} (vᵀz_i + c − t_i)² + λ ‖v‖²`` are::

    [v; c] = (Z̃ᵀ Ω Z̃ + λ P)⁻¹ Z̃ᵀ Ω t,        P(lesion) = σ(2 (vᵀz + c))

(``σ(2s)`` is ``(1 + s)/2`` to first order around the decision point ``s = 0``, and keeps the
ranking of ``s``). Selection: ``λ`` from the grid ``ridge``, the one whose readout scores best
on validation through ``ctx.score_validation`` (each ``λ`` reported as one "epoch", so an
Optuna pruner can stop a poor reservoir early).

Costs per sample: the reservoir's spikes; its input events fan out to ``H`` neurons
(accumulates for ``rate`` spikes, multiply-accumulates for ``direct`` real values); the
readout's ``H`` multiply-accumulates on the real-valued ``z``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from spikebench.backends.base import NetworkSpec, SpikingNetwork
from spikebench.backends.capabilities import Capability
from spikebench.errors import RuleError
from spikebench.harness.encoding import encode
from spikebench.harness.rules import FitContext, Rule, Split, TrainedModel
from spikebench.harness.rules.base import class_weights
from spikebench.harness.rules.checks import check_finite, check_finite_params
from spikebench.harness.rules.early_stopping import EarlyStopping
from spikebench.harness.space import Categorical, Domain, Fixed, Float, Int, Param

__all__ = ["ReservoirModel", "ReservoirParams", "ReservoirReadout", "ridge_readout"]

ENCODINGS = ("rate", "direct")
#: Rows per reservoir pass (bounds the ``[T, rows, H]`` activity in memory).
ROWS = 1024


@dataclasses.dataclass(frozen=True)
class ReservoirParams:
    """The rule's parameters: one field per :meth:`ReservoirReadout.search_space` name."""

    hidden: int = 128
    steps: int = 16
    encoding: str = "rate"
    gain: float = 1.0
    beta: float = 0.9
    threshold: float = 1.0
    input_scale: float = 2.0
    ridge: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0, 100.0)


def ridge_readout(z: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """``(v, c)`` of the class-weighted ridge readout (module docstring) on features ``z``
    ``[n, H]`` and labels ``y`` in {0, 1}, float64."""
    z = np.asarray(z, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    zt = np.hstack([z, np.ones((len(z), 1))])
    omega = class_weights(y).astype(np.float64)[y]
    penalty = np.full(zt.shape[1], float(lam))
    penalty[-1] = 0.0
    gram = zt.T @ (zt * omega[:, None]) + np.diag(penalty)
    solution = np.linalg.solve(gram, zt.T @ (omega * (2.0 * y - 1.0)))
    return solution[:-1], float(solution[-1])


def _sigmoid(s: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(s, -50.0, 50.0)))


class ReservoirModel(TrainedModel):
    """The fixed reservoir, the training rates' statistics and the selected ridge readout."""

    def __init__(self, net: SpikingNetwork, params: ReservoirParams, device: Any) -> None:
        self.net, self.params, self.device = net, params, device
        self.train_steps = params.steps
        self.mean = self.std = np.zeros(params.hidden)
        self.v, self.c = np.zeros(params.hidden), 0.0
        self.info: dict[str, Any] = {}

    def run(self, X: np.ndarray, steps: int, seed: int = 0) -> tuple[np.ndarray, float]:
        """Firing rates ``[n, H]`` (float64) of the rows of ``X`` over ``steps`` steps, and the
        number of non-zero input events."""
        x = torch.as_tensor(np.asarray(X), dtype=torch.float32, device=self.device)
        gen = torch.Generator(device=x.device).manual_seed(seed)
        rates, events = [], 0.0
        with torch.no_grad():
            for start in range(0, len(x), ROWS):
                inputs = encode(x[start:start + ROWS], self.params.encoding, steps,
                                gain=self.params.gain, generator=gen)
                events += float((inputs != 0).sum())
                spikes = self.net(inputs).spikes  # type: ignore[operator]
                rates.append(spikes.sum(0).double().cpu().numpy() / steps)
        out = np.concatenate(rates) if rates else np.zeros((0, self.params.hidden))
        return out, events

    def features(self, rates: np.ndarray) -> np.ndarray:
        """``z = (r − μ) / σ`` with the training rows' statistics."""
        return (rates - self.mean) / self.std

    def predict_proba(self, X: np.ndarray, *, steps: int | None = None) -> np.ndarray:
        rates, _ = self.run(X, steps or self.train_steps)
        return _sigmoid(2.0 * (self.features(rates) @ self.v + self.c))

    def activity(self, X: np.ndarray, *, steps: int | None = None) -> dict[str, float]:
        """Reservoir spikes, its input events × ``H`` (ACs for spikes, MACs for ``direct``
        values) and the readout's ``H`` MACs, per sample."""
        steps = steps or self.train_steps
        rates, events = self.run(X, steps)
        n = max(len(X), 1)
        synaptic = events * self.params.hidden / n
        direct = self.params.encoding == "direct"
        acs = 0.0 if direct else synaptic
        macs = (synaptic if direct else 0.0) + (float(self.params.hidden) if len(X) else 0.0)
        return {"spikes_per_sample": float(rates.sum()) * steps / n, "acs_per_sample": acs,
                "macs_per_sample": macs, "synops_per_sample": acs + macs}


class ReservoirReadout(Rule[ReservoirParams]):
    """A fixed random LIF reservoir with a class-weighted ridge readout (module docstring)."""

    name = "reservoir"
    summary = "example plug-in: fixed random LIF reservoir, ridge readout chosen on validation"
    needs = frozenset({Capability.DENSE_LIF})
    params_type = ReservoirParams

    def search_space(self) -> dict[str, Param]:
        return {
            "hidden": Int(64, 256, log=True),
            "steps": Int(8, 24),
            "encoding": Categorical(ENCODINGS),
            "gain": Float(0.5, 2.0),
            "beta": Float(0.7, 0.95),
            "threshold": Fixed(1.0),
            "input_scale": Float(0.5, 4.0, log=True),
            "ridge": Fixed([1e-2, 1e-1, 1.0, 10.0, 100.0]),
        }

    def domains(self) -> dict[str, Domain]:
        """spikebench's domains by name, plus the reservoir's weight scale (> 0)."""
        return {**super().domains(), "input_scale": Domain(0.0, low_inclusive=False)}

    def fit(self, train: Split, val: Split, params: ReservoirParams, ctx: FitContext
            ) -> ReservoirModel:
        check_finite(train, val)
        check_finite_params(params)
        if params.encoding not in ENCODINGS:
            raise RuleError(f"rule 'reservoir': encoding must be one of {ENCODINGS}, "
                            f"got {params.encoding!r}")
        if not params.ridge or min(params.ridge) <= 0:
            raise RuleError(f"rule 'reservoir': ridge must be a non-empty grid of values > 0, "
                            f"got {list(params.ridge)}")
        n_features = train.X.shape[1]
        spec = NetworkSpec(sizes=(n_features, params.hidden), beta=params.beta,
                           threshold=params.threshold, reset="subtract")
        backend = ctx.require_backend(self)
        backend.check_supported(spec)
        net = backend.build(spec, device=ctx.device, seed=ctx.seed)
        gen = torch.Generator().manual_seed(ctx.seed)
        w = torch.randn(params.hidden, n_features, generator=gen, dtype=torch.float64)
        net.set_weights([((w * params.input_scale / np.sqrt(n_features)).float(),
                          torch.zeros(params.hidden))])
        device = next(net.parameters()).device  # type: ignore[attr-defined]
        model = ReservoirModel(net, params, device)
        rates, _ = model.run(train.X, params.steps, ctx.seed)
        model.mean, model.std = rates.mean(0), np.maximum(rates.std(0), 1e-3)
        z = model.features(rates)
        z_val = model.features(model.run(val.X, params.steps, ctx.seed + 1)[0])
        stopper, first = EarlyStopping(patience=None), None
        for epoch, lam in enumerate(params.ridge):
            v, c = ridge_readout(z, train.y, lam)
            value = ctx.score_validation(_sigmoid(2.0 * (z_val @ v + c)))
            ctx.report_epoch(epoch, value)
            stopper.update(value, (v, c, lam))
            first = first or (v, c, lam)
        # (a validation score undefined for every λ, e.g. one class there: the first λ)
        model.v, model.c, chosen = stopper.best_state or first
        model.info = {"epochs": len(params.ridge), "labels_used": len(train),
                      "best_val": stopper.best, "ridge": chosen}
        return model
