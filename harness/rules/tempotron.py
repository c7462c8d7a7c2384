"""The Tempotron (Gütig & Sompolinsky 2006, Nat. Neurosci. 9:420): error-driven learning of
spike-timing decisions.

Input. Each standardised feature ``x`` becomes afferent spike times on the grid ``0..T-1``:

- ``population = 1``: one afferent, time-to-first-spike ``t = round((1 − σ(g·x)) (T − 1))``
  (:func:`spikebench.harness.encoding.latency_times`; strong features fire early);
- ``population = M > 1``: M afferents with Gaussian receptive fields on ``u = σ(g·x)``, centres
  ``c_m = m/(M−1)``, width ``s = 1/(1.5 (M−1))`` (Bohte et al. 2002): activation
  ``a_m = exp(−(u − c_m)² / 2s²)``, spike at ``t = round((1 − a_m)(T − 1))``, silent when
  ``a_m < 0.1``.

Neurons. ``ctx.backend.build_tempotron`` gives the unshunted potential of every output neuron

    V(t) = Σ_i w_i K(t − t_i),      K(s) = V0 (e^{−s/τ} − e^{−s/τs})  (s ≥ 0),  τs = τ/4

with ``V0`` normalising the kernel's peak to 1. The neuron fires at the first grid time
``t_c`` with ``V(t_c) > θ`` (θ = 1); from then on its input is *shunted*: only afferents with
``t_i ≤ t_c`` contribute, so the potential the rule reads is

    V_sh(t) = Σ_{i: t_i ≤ t_c} w_i K(t − t_i)          (= V(t) for t ≤ t_c)

(computed here, identically for every backend, by subtracting the late afferents' share from
the backend's V).

Learning (only on errors, per pattern, λ_y = λ × the inverse-frequency weight of the pattern's
class). With ``t_max = argmax_t V_sh(t)``:

- target pattern, neuron stayed silent (miss):   Δw_i = +λ_y K(t_max − t_i)
- non-target pattern, neuron fired (false alarm): Δw_i = −λ_y K(t_max − t_i) [t_i ≤ t_c]

i.e. ``Δw_i = ±λ_y ∂V_sh(t_max)/∂w_i`` (K vanishes for ``t_i > t_max``, so the sum runs over
``t_i ≤ t_max`` as in the paper). Updates of a mini-batch are summed, then applied.

Decision. ``neurons_per_class`` neurons per class (class c's neurons have the target "fire iff
y = c") vote with their margins ``d = m_1 − m_0``, ``m_c = mean_{o ∈ c} (max_t V_sh,o(t) − θ)``,
so ROC and PR curves rank by a continuous score. The two populations' margins are not on a common
scale (one population may stay silent on most patterns), so ``d = 0`` is not the balanced
decision point; ``P(lesion) = σ(a·d + b)`` with ``(a, b)`` fitted by class-weighted Platt scaling
on the *training* patterns after training (:class:`PlattScaling`; never on val or test), so
``P ≥ 0.5`` is the model's own balanced decision. Early stopping keeps the weights of the best
validation epoch (the validation metric during training reads ``σ(d)``; ranking metrics are
unaffected by the calibration).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from spikebench.backends.base import TempotronNetwork
from spikebench.backends.capabilities import Capability
from spikebench.backends.tempotron import psp_kernel
from spikebench.harness.encoding import latency_times
from spikebench.harness.metrics import validation_value
from spikebench.harness.rules.base import (
    DivergedError,
    FitContext,
    Rule,
    Split,
    TrainedModel,
    class_weights,
)
from spikebench.harness.rules.checks import check_finite, check_finite_params
from spikebench.harness.rules.early_stopping import EarlyStopping
from spikebench.harness.space import Fixed, Float, Int, Param

#: Receptive-field activations below this leave the afferent silent (population coding).
SILENT_BELOW = 0.1
#: |w| beyond this is a runaway: the trial is pruned.
WEIGHT_LIMIT = 1e6


def spike_times(x: torch.Tensor, steps: int, *, gain: float = 1.0, population: int = 1
                ) -> torch.Tensor:
    """Afferent spike times ``[B, F·population]`` (``inf`` = silent) of standardised ``x``
    ``[B, F]``; afferents of feature ``f`` are columns ``f·M .. f·M + M − 1``."""
    if population < 1:
        raise ValueError(f"population must be >= 1, got {population}")
    if population == 1:
        return latency_times(x, steps, gain)
    u = torch.sigmoid(gain * x).unsqueeze(-1)  # [B, F, 1]
    centres = torch.linspace(0.0, 1.0, population, dtype=x.dtype, device=x.device)
    width = 1.0 / (1.5 * (population - 1))
    a = torch.exp(-((u - centres) ** 2) / (2 * width**2))  # [B, F, M]
    t = torch.round((1.0 - a) * (steps - 1))
    t = torch.where(a >= SILENT_BELOW, t, torch.full_like(t, math.inf))
    return t.reshape(x.shape[0], -1)


def kernel_matrix(times: torch.Tensor, steps: int, tau: float, tau_s: float) -> torch.Tensor:
    """``K(t − t_i)`` on the grid ``t = 0..steps−1``: ``[steps, B, N]`` (0 for silent afferents)."""
    t = torch.arange(steps, dtype=times.dtype, device=times.device)
    return psp_kernel(t[:, None, None] - times[None], tau, tau_s)


def shunted_potential(v: torch.Tensor, kernel: torch.Tensor, times: torch.Tensor,
                      weight: torch.Tensor, threshold: float
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shunt the unshunted potential ``v`` ``[T, B, O]`` after each neuron's first crossing.

    Returns ``(V_sh [T, B, O], fired [B, O] bool, t_cross [B, O])`` with ``t_cross = T`` for a
    neuron that never crossed. ``V_sh = V − Σ_{i: t_i > t_c} w_i K(t − t_i)``: the late
    afferents' share, which is zero up to ``t_c`` because ``K`` vanishes before ``t_i``.
    """
    steps = v.shape[0]
    above = v > threshold
    fired = above.any(0)
    t_cross = torch.where(fired, above.to(torch.int8).argmax(0), torch.full_like(fired, steps,
                                                                               dtype=torch.long))
    late = times[:, None, :] > t_cross[:, :, None].to(times.dtype)  # [B, O, N]; NaN -> False
    if bool(late.any()):
        share = torch.einsum("tbi,boi->tbo", kernel, late.to(v.dtype) * weight.to(v.dtype)[None])
        v = v - share
    return v, fired, t_cross


def tempotron_update(v_sh: torch.Tensor, kernel: torch.Tensor, times: torch.Tensor,
                     t_cross: torch.Tensor, fired: torch.Tensor, target: torch.Tensor,
                     lr: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """The Tempotron rule for one mini-batch: ``(Δw [O, N], errors [B, O] in {−1, 0, +1})``.

    ``errors = +1`` for a miss (target, silent), ``−1`` for a false alarm; ``Δw_oi =
    Σ_b lr_b · errors_bo · K(t_max,bo − t_i) · [t_i ≤ t_c,bo]`` with ``t_max = argmax_t V_sh``.
    ``lr`` is a scalar or one learning rate per pattern ``[B]`` (class-weighted λ).
    """
    errors = target.to(torch.int8) - fired.to(torch.int8)  # +1 miss, -1 false alarm
    t_max = v_sh.argmax(0)  # [B, O]
    per_pattern = kernel.permute(1, 0, 2)  # [B, T, N]
    n = per_pattern.shape[-1]
    k_at = torch.gather(per_pattern, 1, t_max[:, :, None].expand(-1, -1, n))  # [B, O, N]
    contributes = ~(times[:, None, :] > t_cross[:, :, None].to(times.dtype))
    scale = errors.to(kernel.dtype)
    lr_t = torch.as_tensor(lr, dtype=kernel.dtype, device=kernel.device)
    scale = scale * (lr_t[:, None] if lr_t.ndim == 1 else lr_t)
    delta = torch.einsum("bo,boi->oi", scale, k_at * contributes.to(kernel.dtype))
    return delta, errors


class TempotronModel(TrainedModel):
    """Trained Tempotron populations (one per class) and their encoder settings."""

    def __init__(self, layer: TempotronNetwork, params: TempotronParams, backend: Any,
                 device: Any, info: dict[str, Any]) -> None:
        self.layer, self.params, self.backend, self.device, self.info = (
            layer, params, backend, device, info)
        self.train_steps = params.steps
        self._layers: dict[int, TempotronNetwork] = {self.train_steps: layer}
        #: maps the vote ``d = m_1 − m_0`` to ``P(lesion)``; σ(d) until :func:`fit_tempotron`
        #: fits it on the training patterns.
        self.calibration = PlattScaling()

    @property
    def n_per_class(self) -> int:
        return self.params.neurons_per_class

    def layer_for(self, steps: int) -> TempotronNetwork:
        """The layer on a ``steps`` grid: τ and τs scale with the grid, ``(steps−1)/(T−1)``, so
        the potential is the trained one sampled more finely or coarsely."""
        if steps not in self._layers:
            scale = (steps - 1) / max(self.train_steps - 1, 1)
            tau = self.params.tau * scale
            layer = self.backend.build_tempotron(
                self.layer.weight.shape[1], self.layer.weight.shape[0], steps=steps, tau=tau,
                tau_s=tau / 4, device=self.device)
            with torch.no_grad():
                layer.weight.copy_(self.layer.weight)
            self._layers[steps] = layer
        else:
            layer = self._layers[steps]
            if layer is not self.layer:
                with torch.no_grad():
                    layer.weight.copy_(self.layer.weight)
        return layer

    def encode(self, X: np.ndarray, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Spike times ``[n, N]`` and kernel matrix ``[steps, n, N]`` of ``X`` on a grid."""
        layer = self.layer_for(steps)
        x = torch.as_tensor(np.asarray(X), dtype=layer.weight.dtype, device=self.device)
        times = spike_times(x, steps, gain=self.params.gain,
                            population=self.params.population)
        return times, kernel_matrix(times, steps, layer.tau, layer.tau_s)

    def potentials(self, times: torch.Tensor, kernel: torch.Tensor, steps: int,
                   prepared: Callable[[torch.Tensor], torch.Tensor] | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(max_t V_sh [n, O], fired [n, O])`` from encoded input (the backend computes V;
        ``prepared``: the layer's :meth:`~TempotronNetwork.prepare` of these patterns, if the
        caller holds it)."""
        layer = self.layer_for(steps)
        vmax, fired = [], []
        with torch.no_grad():
            potential_of = prepared or layer.prepare(times, kernel)
            for start in range(0, len(times), 512):
                t_b, k_b = times[start:start + 512], kernel[:, start:start + 512]
                idx = torch.arange(start, start + len(t_b), device=times.device)
                v_sh, f, _ = shunted_potential(potential_of(idx), k_b, t_b, layer.weight,
                                               self.params.threshold)
                vmax.append(v_sh.max(0).values)
                fired.append(f)
        return torch.cat(vmax), torch.cat(fired)

    def margins(self, vmax: torch.Tensor) -> torch.Tensor:
        """Per-class margins ``m_c = mean_{o∈c}(max V_sh − θ)``, ``[n, 2]``."""
        margin = vmax - self.params.threshold
        return margin.view(len(margin), 2, self.n_per_class).mean(-1)

    def _run(self, X: np.ndarray, steps: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(max V_sh [n, O], fired [n, O], afferent spikes [n])``."""
        times, kernel = self.encode(X, steps)
        vmax, fired = self.potentials(times, kernel, steps)
        return vmax, fired, torch.isfinite(times).sum(1)

    def vote(self, vmax: torch.Tensor) -> np.ndarray:
        """The vote ``d = m_1 − m_0`` (float64) from the peak potentials ``vmax`` ``[n, O]``."""
        m = self.margins(vmax).double()
        return (m[:, 1] - m[:, 0]).cpu().numpy()

    def decision(self, X: np.ndarray, steps: int | None = None) -> np.ndarray:
        """The vote ``d = m_1 − m_0`` per row of ``X`` (float64)."""
        vmax, _, _ = self._run(X, steps or self.train_steps)
        return self.vote(vmax)

    def predict_proba(self, X: np.ndarray, *, steps: int | None = None) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        return self.calibration(self.decision(X, steps))

    def activity(self, X: np.ndarray, *, steps: int | None = None) -> dict[str, float]:
        """Output spikes (at most one per neuron) per sample; synaptic events = afferent spikes
        × output neurons, all accumulates."""
        _, fired, n_in = self._run(X, steps or self.train_steps)
        n = max(len(X), 1)
        n_out = fired.shape[1] if fired.ndim == 2 else 0
        acs = float(n_in.sum()) * n_out / n  # afferent spikes are binary: accumulates only
        return {"spikes_per_sample": float(fired.sum()) / n, "acs_per_sample": acs,
                "macs_per_sample": 0.0, "synops_per_sample": acs}


@dataclasses.dataclass(frozen=True)
class TempotronParams:
    """The parameters of :class:`Tempotron` (its :meth:`~Tempotron.search_space`)."""

    tau: float = 10.0
    lr: float = 7e-4
    epochs: int = 20
    neurons_per_class: int = 4
    population: int = 4
    steps: int = 24
    gain: float = 1.2
    threshold: float = 1.0
    init_std: float = 0.01
    batch_size: int = 64
    patience: int = 8


class Tempotron(Rule[TempotronParams]):
    """Tempotron populations trained by the error-driven rule (see the module docstring)."""

    name = "tempotron"
    needs = frozenset({Capability.TEMPOTRON})
    summary = "Tempotron (Gütig & Sompolinsky 2006): latency / population code, learn at t_max"
    params_type = TempotronParams

    def search_space(self) -> dict[str, Param]:
        return {
            "tau": Float(6.0, 14.0),
            "lr": Float(3e-4, 1.5e-3, log=True),
            "epochs": Fixed(20),
            "neurons_per_class": Int(3, 5),
            "population": Int(3, 6),
            "steps": Int(16, 32),
            "gain": Float(0.8, 1.6),
            "threshold": Fixed(1.0),
            "init_std": Fixed(0.01),
            "batch_size": Fixed(64),
            "patience": Fixed(8),
        }

    def fit(self, train: Split, val: Split, params: TempotronParams, ctx: FitContext
            ) -> TempotronModel:
        return fit_tempotron(self, train, val, params, ctx)


def fit_tempotron(rule: Rule[Any], train: Split, val: Split, p: TempotronParams,
                  ctx: FitContext) -> TempotronModel:
    """The fit of the module docstring, for ``rule`` (:class:`Tempotron`, or a rule that
    feeds it another code of its input: :mod:`~spikebench.harness.rules.image_tempotron`)."""
    check_finite(train, val)
    check_finite_params(p)
    steps, tau = p.steps, p.tau
    npc, pop = p.neurons_per_class, p.population
    threshold = p.threshold
    if steps < 2 or npc < 1 or pop < 1:
        raise ValueError(f"tempotron needs steps >= 2, neurons_per_class >= 1 and population "
                         f">= 1 (got {steps}, {npc}, {pop})")
    backend = ctx.require_backend(rule)
    n_in, n_out = train.X.shape[1] * pop, 2 * npc
    layer = backend.build_tempotron(n_in, n_out, steps=steps, tau=tau, tau_s=tau / 4,
                                    device=ctx.device, seed=ctx.seed)
    weight = layer.weight
    device, dtype = weight.device, weight.dtype
    # The rule owns the initial weights, so every backend starts from the same numbers.
    gen = torch.Generator().manual_seed(ctx.seed)
    with torch.no_grad():
        weight.copy_(torch.randn(n_out, n_in, generator=gen, dtype=torch.float64)
                     * p.init_std)
    model = TempotronModel(layer, p, backend, device, info={})
    times, kernel = model.encode(train.X, steps)  # fixed: the input never changes
    val_times, val_kernel = model.encode(val.X, steps)
    with torch.no_grad():  # what does not depend on the weights, once per fit
        train_potential = layer.prepare(times, kernel)
        val_potential = layer.prepare(val_times, val_kernel)
    y = torch.as_tensor(train.y, dtype=torch.long, device=device)
    neuron_class = torch.arange(n_out, device=device) // npc  # [O]
    target = y[:, None] == neuron_class[None]  # [n, O]
    lam = p.lr * torch.as_tensor(class_weights(train.y), dtype=dtype,
                                           device=device)[y]
    rng = np.random.default_rng(ctx.seed)
    batch = p.batch_size
    stopper = EarlyStopping(p.patience)
    stopper.best_state, epochs = weight.detach().clone(), 0
    history: list[float] = []
    for epoch in range(p.epochs):
        errors_seen = 0
        order = torch.as_tensor(rng.permutation(len(times)), device=device)
        with torch.no_grad():
            for start in range(0, len(times), batch):
                idx = order[start:start + batch]
                t_b, k_b = times[idx], kernel[:, idx]
                v_sh, fired, t_cross = shunted_potential(train_potential(idx), k_b, t_b,
                                                         weight, threshold)
                delta, errors = tempotron_update(v_sh, k_b, t_b, t_cross, fired,
                                                 target[idx], lam[idx])
                weight.add_(delta.to(dtype))
                errors_seen += int(errors.abs().sum())
            w = weight.detach()
            if not bool(torch.isfinite(w).all()) or float(w.abs().max()) > WEIGHT_LIMIT:
                raise DivergedError(f"tempotron weights diverged at epoch {epoch}")
        epochs = epoch + 1
        vmax, _ = model.potentials(val_times, val_kernel, steps, val_potential)
        prob = torch.softmax(model.margins(vmax).double(), -1)[:, 1].cpu().numpy()
        score = validation_value(ctx.score_validation(prob))
        history.append(score)
        ctx.report_epoch(epoch, score)
        if stopper.update(score):
            stopper.best_state = weight.detach().clone()
        if errors_seen == 0 or stopper.should_stop:
            break
    with torch.no_grad():
        weight.copy_(stopper.best_state)
    vmax, _ = model.potentials(times, kernel, steps, train_potential)
    model.calibration.fit(model.vote(vmax), train.y)
    model.info = {"epochs": epochs, "labels_used": len(train), "best_val": stopper.best,
                  "val_history": history,
                  "calibration": {"a": model.calibration.a, "b": model.calibration.b}}
    return model


class PlattScaling:
    """``P = σ(a·d + b)`` for a 1-D decision score ``d`` (Platt 1999), fitted on the *training*
    patterns with inverse-frequency class weights, so ``P = 0.5`` is the balanced decision point
    of the score the model actually computes (never fitted on validation or test data).

    The fit is scikit-learn's L2-regularised logistic regression on the unit-scaled score
    ``u = d / std(d)`` with sample weights ``w_i`` (class weights normalised to sum 1) and
    ``C = 1 / l2``: it minimises ``Σ w_i logloss_i + (l2 / 2) a_u²``, a weak Gaussian prior on
    the slope (not the intercept) that keeps it finite when the training scores are separable.
    Without :meth:`fit` it is ``σ(d)``.
    """

    def __init__(self, a: float = 1.0, b: float = 0.0) -> None:
        self.a, self.b = a, b

    def __call__(self, d: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        return expit(np.clip(self.a * np.asarray(d, dtype=np.float64) + self.b, -50.0, 50.0))

    def fit(self, d: np.ndarray, y: np.ndarray, *, l2: float = 1e-2) -> PlattScaling:
        """Fit ``(a, b)`` on training scores ``d`` and labels ``y`` (a no-op on one class)."""
        from sklearn.linear_model import LogisticRegression

        d = np.asarray(d, dtype=np.float64)
        y = np.asarray(y, dtype=np.int64)
        if len(np.unique(y)) < 2 or not np.all(np.isfinite(d)):
            return self
        scale = float(d.std()) or 1.0
        w = class_weights(y).astype(np.float64)[y]
        clf = LogisticRegression(C=1.0 / l2, tol=1e-10, max_iter=1000)
        clf.fit((d / scale)[:, None], y, sample_weight=w / w.sum())
        a, b = float(clf.coef_[0, 0]), float(clf.intercept_[0])
        if np.isfinite(a) and np.isfinite(b):
            self.a, self.b = a / scale, b
        return self


__all__ = ["Tempotron", "TempotronModel", "TempotronParams", "fit_tempotron", "kernel_matrix",
           "shunted_potential", "spike_times", "tempotron_update"]
