"""Bio-inspired active learning: an STDP hidden layer, a local delta-rule readout, and a loop that
asks for the labels of the most uncertain slices under a label budget. No backpropagation.

1. **Input.** Each standardised feature drives an ON and an OFF afferent, ``g·x`` and ``−g·x``,
   encoded as ``rate`` (Bernoulli σ(·) per step) or ``latency`` spikes
   (:mod:`spikebench.harness.encoding`), so excitatory weights can prefer low values too.
2. **Hidden layer, no labels.** ``H`` LIF neurons built by the backend
   (``ctx.backend.build(NetworkSpec(sizes=(2F, H)))``; the backend runs the dynamics and the
   rule reads its output spikes and writes weights through ``get_weights``/``set_weights``).
   On every training slice (labels unused) the rule applies, per batch:

   - pair-based STDP with traces (:mod:`spikebench.harness.rules.stdp`)::

         Δw_ji = η Σ_{pairs} W(t_post − t_pre),  W(Δt) = A+ e^{−Δt/τ+} (Δt ≥ 0),
                                                  −A− e^{Δt/τ−} (Δt < 0)

     with ``η = w_sum / 2F`` (amplitudes in units of the mean weight) and only the
     winner-take-all neuron of each pattern as post-synaptic side (lateral inhibition: the
     first neuron to fire silences the others for learning);
   - weight normalisation ``w ≥ 0``, ``Σ_i w_ji = w_sum``;
   - homeostatic (adaptive) thresholds, implemented as the layer's bias ``b_j = −ϑ_j``:
     ``b_j ← b_j + η_h (ρ − r_j)`` with ``r_j`` the neuron's spikes per step in the batch and
     ``ρ`` the target rate, so overactive neurons become harder to fire and silent ones easier.

   The same implementation runs on every backend (SpikingJelly's ``STDPLearner`` is not used:
   it hooks into SpikingJelly modules, and one shared rule keeps the backends comparable).
3. **Readout, labels.** Two linear units on the hidden spike counts (z-scored with statistics of
   the unlabelled pool), ``z = V r̃ + c``, ``P = softmax(z)``, learn by the delta rule
   ``ΔV_cj = η_r Σ_b w_{y_b} (1[y_b = c] − P_c(b)) r̃_j(b) / n`` (local: presynaptic rate ×
   postsynaptic error; class-weighted), ``readout_epochs`` full passes per round.
4. **Active loop.** Start from the slices of ``seed_patients`` random training patients (more
   are added if the seed holds one class only), then per round query the ``batch_per_round``
   unlabelled slices with the smallest margin ``|z_1 − z_0|`` (``uncertainty``) or random ones
   (``random``) until ``budget`` labels (a fraction ≤ 1 of the training slices, or a count) are
   used. After each round the validation metric is reported (``ctx.report_epoch``); the readout
   of the best round is kept. The other strategy runs as a control on the same hidden layer,
   seed set and budget; both curves go to ``info["curves"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from spikebench.backends.base import NetworkSpec, SpikingNetwork
from spikebench.backends.capabilities import Capability
from spikebench.harness.encoding import encode
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
from spikebench.harness.rules.stdp import first_spike_winners, normalise_rows, stdp_update
from spikebench.harness.space import Categorical, Fixed, Float, Int, Param

STRATEGIES = ("uncertainty", "random")
INPUT_ENCODINGS = ("rate", "latency")


@dataclasses.dataclass(frozen=True)
class LocalLearningParams:
    """What the bio-inspired rules share (dense :class:`ActiveLearning` and the
    convolutional :class:`~spikebench.harness.rules.conv_active.ConvActiveLearning`): the
    input code, STDP, homeostasis, the readout and the active loop (module docstring)."""

    steps: int = 20
    encoding: str = "rate"
    gain: float = 1.5
    beta: float = 0.85
    a_plus: float = 0.03
    a_minus_ratio: float = 0.75
    tau_plus: float = 5.0
    tau_minus: float = 5.0
    target_rate: float = 0.06
    homeostasis: float = 0.5
    w_sum: float = 1.0
    stdp_epochs: int = 2
    stdp_batch: int = 32
    readout_lr: float = 0.15
    readout_epochs: int = 60
    seed_patients: int = 3
    #: a fraction (<= 1) of the training slices, or a count
    budget: float = 0.5
    batch_per_round: int = 16
    strategy: str = "uncertainty"


@dataclasses.dataclass(frozen=True)
class ActiveParams(LocalLearningParams):
    """The parameters of :class:`ActiveLearning` (its :meth:`~ActiveLearning.search_space`):
    the shared ones and the hidden layer's width."""

    hidden: int = 48


def on_off_spikes(x: torch.Tensor, kind: str, steps: int, gain: float,
                  generator: torch.Generator | None) -> torch.Tensor:
    """``[steps, B, 2F]`` spikes of the ON (``g·x``) and OFF (``−g·x``) afferents."""
    return encode(torch.cat([x, -x], 1), kind, steps, gain=gain, generator=generator)


class Readout:
    """Two linear units on z-scored hidden rates, trained by the class-weighted delta rule."""

    def __init__(self, n_hidden: int, dtype: torch.dtype = torch.float64) -> None:
        self.weight = torch.zeros(2, n_hidden, dtype=dtype)
        self.bias = torch.zeros(2, dtype=dtype)

    def logits(self, r: torch.Tensor) -> torch.Tensor:
        return r @ self.weight.T + self.bias

    def train(self, r: torch.Tensor, y: torch.Tensor, *, lr: float, epochs: int) -> None:
        """``epochs`` full-batch delta-rule steps on the labelled ``(r, y)``.

        With two units, ``P_1 = softmax(z)_1 = σ(z_1 − z_0)`` and the errors of the two units
        are opposite, ``e_0 = −e_1``, so a step is ``d = r (V_1 − V_0) + (c_1 − c_0)``,
        ``e = w_y (1[y = 1] − σ(d))``, ``ΔV_1 = −ΔV_0 = η rᵀe / n``, ``Δc_1 = −Δc_0 = η mean(e)``:
        two matrix-vector products per step instead of two ``[n, 2]`` products and a softmax
        (the same rule; the softmax form is the test oracle in
        ``tests/harness/rules/test_rules_fast_paths.py``).
        """
        if len(y) == 0:
            return
        w = torch.as_tensor(class_weights(y.numpy()), dtype=r.dtype)[y]
        target = (y == 1).to(r.dtype)
        scale = lr / len(y)
        v = self.weight[1] - self.weight[0]
        c = self.bias[1] - self.bias[0]
        gw = torch.zeros_like(v)
        gb = torch.zeros_like(c)
        for _ in range(epochs):
            e = (target - torch.addmv(c, r, v).sigmoid_()).mul_(w)  # e_1 = −e_0, [n]
            step = torch.mv(r.t(), e).mul_(scale)
            step_b = e.mean().mul_(lr)
            gw += step
            gb += step_b
            v = v + 2.0 * step
            c = c + 2.0 * step_b
        self.weight[1] += gw
        self.weight[0] -= gw
        self.bias[1] += gb
        self.bias[0] -= gb

    def copy(self) -> Readout:
        out = Readout(self.weight.shape[1], self.weight.dtype)
        out.weight, out.bias = self.weight.clone(), self.bias.clone()
        return out


class ActiveModel(TrainedModel):
    """The STDP-trained hidden layer plus the delta-rule readout."""

    def __init__(self, net: SpikingNetwork, readout: Readout, mean: torch.Tensor,
                 std: torch.Tensor, params: LocalLearningParams, device: Any,
                 info: dict[str, Any]) -> None:
        self.net, self.readout, self.mean, self.std = net, readout, mean, std
        self.params, self.device, self.info = params, device, info
        self.train_steps = params.steps

    def hidden_counts(self, X: np.ndarray, steps: int | None = None, seed: int = 0
                      ) -> tuple[torch.Tensor, float]:
        """Hidden spike counts per pattern ``[n, H]`` (float64, CPU) and input spike total."""
        return hidden_counts(self.net, X, self.params, steps or self.train_steps, self.device,
                             seed)

    def features(self, counts: torch.Tensor, steps: int) -> torch.Tensor:
        """Readout input: rates (counts / T) z-scored with the training pool's statistics."""
        return (counts / steps - self.mean) / self.std

    def predict_proba(self, X: np.ndarray, *, steps: int | None = None) -> np.ndarray:
        steps = steps or self.train_steps
        counts, _ = self.hidden_counts(X, steps)
        logits = self.readout.logits(self.features(counts, steps))
        return torch.softmax(logits, 1)[:, 1].numpy()

    def activity(self, X: np.ndarray, *, steps: int | None = None) -> dict[str, float]:
        """Hidden spikes per sample; input spikes fan out to the H hidden neurons as
        accumulates; the readout multiplies the H real-valued (z-scored) hidden rates by its
        2 × H weights once per sample: 2·H multiply-accumulates (its weight count: a subclass
        whose readout reads other features counts those)."""
        counts, n_in = self.hidden_counts(X, steps)
        n = max(len(X), 1)
        acs = n_in * self.net.spec.sizes[1] / n
        macs = float(self.readout.weight.numel()) if len(X) else 0.0
        return {"spikes_per_sample": float(counts.sum()) / n, "acs_per_sample": acs,
                "macs_per_sample": macs, "synops_per_sample": acs + macs}

    def export(self):
        return None  # the readout is not a LIF layer


def hidden_counts(net: SpikingNetwork, X: np.ndarray, params: LocalLearningParams, steps: int,
                  device: Any, seed: int = 0) -> tuple[torch.Tensor, float]:
    dtype = next(net.parameters()).dtype
    x = torch.as_tensor(np.asarray(X), dtype=dtype, device=device)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    out, n_in = [], 0.0
    with torch.no_grad():
        for start in range(0, len(x), 512):
            spikes = on_off_spikes(x[start:start + 512], params.encoding, steps, params.gain,
                                   gen)
            n_in += float(spikes.sum())
            out.append(net(spikes).spikes.sum(0).double().cpu())
    counts = torch.cat(out) if out else torch.zeros(0, net.spec.sizes[-1], dtype=torch.float64)
    return counts, n_in


class ActiveLearning(Rule[ActiveParams]):
    """STDP hidden layer + delta-rule readout in an active-learning loop (module docstring)."""

    name = "active"
    needs = frozenset({Capability.DENSE_LIF})
    summary = "bio-inspired active learning: STDP + WTA hidden layer, delta-rule readout"
    params_type = ActiveParams

    def search_space(self) -> dict[str, Param]:
        return {
            "hidden": Int(32, 96, log=True),
            "steps": Int(16, 30),
            # latency input (one spike per afferent) leaves the hidden counts at chance level
            # (logistic regression on them: test balanced accuracy ≈ 0.5 on the phantom)
            "encoding": Fixed("rate"),
            "gain": Float(1.0, 2.0),
            "beta": Float(0.7, 0.95),
            "a_plus": Float(1e-2, 1e-1, log=True),
            "a_minus_ratio": Float(0.4, 1.1),
            "tau_plus": Float(2.0, 8.0),
            "tau_minus": Float(2.0, 8.0),
            "target_rate": Float(0.02, 0.2, log=True),
            "homeostasis": Fixed(0.5),
            "w_sum": Fixed(1.0),
            "stdp_epochs": Fixed(2),
            "stdp_batch": Fixed(32),
            "readout_lr": Float(0.05, 0.5, log=True),
            "readout_epochs": Fixed(60),
            "seed_patients": Fixed(3),
            "budget": Fixed(0.5),
            "batch_per_round": Fixed(16),
            "strategy": Categorical(STRATEGIES),
        }

    def fit(self, train: Split, val: Split, params: ActiveParams, ctx: FitContext
            ) -> ActiveModel:
        p = params
        check_finite(train, val)
        check_finite_params(p)
        check_params(p)
        steps = p.steps
        spec = NetworkSpec(sizes=(2 * train.X.shape[1], p.hidden), beta=p.beta,
                           threshold=1.0, reset="subtract", bias=True)
        backend = ctx.require_backend(self)
        backend.check_supported(spec)
        net = backend.build(spec, device=ctx.device, seed=ctx.seed)
        device = next(net.parameters()).device
        train_hidden_layer(net, train.X, p, device, ctx.seed)

        # hidden representation of the pool (labels still unused) and of val
        counts, _ = hidden_counts(net, train.X, p, steps, device, ctx.seed)
        val_counts, _ = hidden_counts(net, val.X, p, steps, device, ctx.seed + 1)
        model = ActiveModel(net, Readout(spec.sizes[1]), *pool_stats(counts, steps), p, device,
                            info={})
        return fit_readout(model, counts, val_counts, train, val, p, ctx)


def check_params(p: LocalLearningParams) -> None:
    """``ValueError`` for an unknown query ``strategy`` or input ``encoding``."""
    if p.strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {p.strategy!r}")
    if p.encoding not in INPUT_ENCODINGS:
        raise ValueError(f"encoding must be one of {INPUT_ENCODINGS}, got {p.encoding!r}")


def pool_stats(counts: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (floored at 1e-3) of the unlabelled pool's hidden rates:
    the readout's z-scoring (section 3 of the module docstring)."""
    rates = counts / steps
    return rates.mean(0), rates.std(0).clamp(min=1e-3)


def fit_readout(model: ActiveModel, counts: torch.Tensor, val_counts: torch.Tensor,
                train: Split, val: Split, p: LocalLearningParams, ctx: FitContext
                ) -> ActiveModel:
    """The labelled phase (sections 3-4 of the module docstring) on hidden counts of the pool
    and of val: both strategies' active loops from one seed set under one budget; the chosen
    strategy's best readout goes into ``model``, both curves into ``model.info``."""
    steps = model.train_steps
    r_pool = model.features(counts, steps)
    r_val = model.features(val_counts, steps)
    budget = label_budget(p.budget, len(train))
    seed_idx = seed_set(train, p.seed_patients, ctx.seed)
    curves: list[dict[str, Any]] = []
    best: dict[str, Any] = {}
    for strategy in (p.strategy, *(s for s in STRATEGIES if s != p.strategy)):
        report = ctx.report_epoch if strategy == p.strategy else None
        result = active_loop(r_pool, torch.as_tensor(train.y, dtype=torch.long), r_val,
                             val, seed_idx, strategy=strategy, budget=budget,
                             per_round=p.batch_per_round,
                             lr=p.readout_lr, epochs=p.readout_epochs,
                             seed=ctx.seed, validation=ctx.score_validation,
                             report=report)
        curves.extend(result["curve"])
        if strategy == p.strategy:
            best = result
    model.readout = best["readout"]
    model.info = {"epochs": best["rounds"], "labels_used": best["labels_used"],
                  "labels_queried": best["labels_queried"], "best_val": best["best_val"],
                  "curves": curves}
    return model


def train_hidden_layer(net: SpikingNetwork, X: np.ndarray, p: LocalLearningParams, device: Any,
                       seed: int) -> None:
    """Unsupervised phase: STDP + WTA + normalisation + homeostasis on every pattern of ``X``."""
    steps = p.steps
    init_hidden_weights(net, p, device, seed)
    dtype = next(net.parameters()).dtype
    x = torch.as_tensor(np.asarray(X), dtype=dtype, device=device)
    spike_gen = torch.Generator(device=x.device).manual_seed(seed)
    rng = np.random.default_rng(seed)
    batch = p.stdp_batch
    with torch.no_grad():
        for _ in range(p.stdp_epochs):
            order = torch.as_tensor(rng.permutation(len(x)), device=device)
            for start in range(0, len(x), batch):
                pre = on_off_spikes(x[order[start:start + batch]], p.encoding, steps,
                                    p.gain, spike_gen)
                stdp_step(net, pre, p)


def init_hidden_weights(net: SpikingNetwork, p: LocalLearningParams, device: Any, seed: int
                        ) -> None:
    """Random non-negative rows normalised to ``w_sum``, zero biases: the rule owns the initial
    weights, so every backend starts from the same numbers."""
    n_in = net.spec.sizes[0]
    dtype = next(net.parameters()).dtype
    gen = torch.Generator().manual_seed(seed)
    w = normalise_rows(torch.rand(net.spec.sizes[1], n_in, generator=gen, dtype=torch.float64),
                       p.w_sum).to(device=device, dtype=dtype)
    b = torch.zeros(net.spec.sizes[1], device=device, dtype=dtype)
    net.set_weights([(w, b)])


def stdp_step(net: SpikingNetwork, pre: torch.Tensor, p: LocalLearningParams) -> torch.Tensor:
    """One batch of section 2: the backend runs ``pre`` (``[T, B, 2F]`` spikes), the first
    neuron to fire per pattern learns by STDP (summed over the batch, ``η = w_sum / 2F``),
    rows are renormalised and thresholds adapt. Returns the output spikes ``[T, B, H]``."""
    w_sum = p.w_sum
    eta = w_sum / net.spec.sizes[0]
    a_plus = p.a_plus
    post = net(pre).spikes
    winners = first_spike_winners(post)  # [B, H]
    dw = stdp_update(pre, post * winners[None], a_plus=a_plus,
                     a_minus=a_plus * p.a_minus_ratio,
                     tau_plus=p.tau_plus, tau_minus=p.tau_minus)
    (w, bias), = net.get_weights()
    w = normalise_rows(w + eta * dw, w_sum)
    b = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device) if bias is None else bias
    rate = post.mean((0, 1))  # spikes per step per neuron
    b = b + p.homeostasis * (p.target_rate - rate)
    if not bool(torch.isfinite(w).all() and torch.isfinite(b).all()):
        raise DivergedError("STDP produced non-finite weights or thresholds")
    net.set_weights([(w, b)])
    return post


def label_budget(budget: float | int, n_train: int) -> int:
    """``budget`` as a number of labels: a fraction of the training slices if ``<= 1``."""
    if budget <= 0:
        raise ValueError(f"budget must be > 0 (a fraction <= 1 or a count), got {budget}")
    n = round(budget * n_train) if budget <= 1 else int(budget)
    return max(1, min(n, n_train))


def seed_set(train: Split, n_patients: int, seed: int) -> np.ndarray:
    """Indices of all slices of ``n_patients`` random patients, plus (in the same random order)
    further patients until both classes are present, if the training set has both."""
    rng = np.random.default_rng(seed)
    patients = rng.permutation(np.unique(train.groups))
    chosen = list(patients[:max(1, n_patients)])
    both = len(np.unique(train.y)) > 1
    for extra in patients[len(chosen):]:
        if not both or len(np.unique(train.y[np.isin(train.groups, chosen)])) > 1:
            break
        chosen.append(extra)
    return np.flatnonzero(np.isin(train.groups, chosen))


def active_loop(r_pool: torch.Tensor, y_pool: torch.Tensor, r_val: torch.Tensor, val: Split,
                seed_idx: np.ndarray, *, strategy: str, budget: int, per_round: int, lr: float,
                epochs: int, seed: int,
                validation: Callable[[np.ndarray, str | None], float],
                report: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Query labels round by round; returns the best readout and the learning curve.

    ``validation(prob, metric)`` scores validation probabilities (the study metric when
    ``metric`` is None); the loop never sees validation labels."""
    rng = np.random.default_rng(seed + 7)
    labelled = np.zeros(len(y_pool), dtype=bool)
    labelled[seed_idx[:budget]] = True
    readout = Readout(r_pool.shape[1], r_pool.dtype)
    curve: list[dict[str, Any]] = []
    best = {"readout": readout.copy(), "labels_used": 0}
    stopper = EarlyStopping(patience=None)  # every round runs: the budget ends the loop
    rnd = 0
    while True:
        idx = np.flatnonzero(labelled)
        readout.train(r_pool[idx], y_pool[idx], lr=lr, epochs=epochs)
        prob = torch.softmax(readout.logits(r_val), 1)[:, 1].numpy()
        curve.append({"strategy": strategy, "labels_used": int(labelled.sum()),
                      "val_balanced_accuracy": validation(prob, "balanced_accuracy"),
                      "val_pr_auc": validation(prob, "pr_auc")})
        value = validation_value(validation(prob, None))
        if report is not None:
            report(rnd, value)
        if stopper.update(value):
            best.update(readout=readout.copy(), labels_used=int(labelled.sum()))
        rnd += 1
        pool = np.flatnonzero(~labelled)
        room = budget - int(labelled.sum())
        if room <= 0 or len(pool) == 0:
            break
        k = min(per_round, room, len(pool))
        if strategy == "uncertainty":
            logits = readout.logits(r_pool[pool])
            margin = (logits[:, 1] - logits[:, 0]).abs().numpy()
            pick = pool[np.argsort(margin, kind="stable")[:k]]
        else:
            pick = rng.choice(pool, size=k, replace=False)
        labelled[pick] = True
    best.update(best_val=stopper.best, curve=curve, rounds=rnd,
                labels_queried=int(labelled.sum()))
    return best


__all__ = ["ActiveLearning", "ActiveModel", "ActiveParams", "LocalLearningParams", "Readout",
           "active_loop", "check_params", "fit_readout", "init_hidden_weights", "label_budget",
           "on_off_spikes", "pool_stats", "seed_set", "stdp_step", "train_hidden_layer"]
