"""Local plasticity for the bio-inspired rule: pair-based STDP with traces, competitive
(winner-take-all) learning, weight normalisation and homeostatic thresholds.

Pair-based STDP (nearest neighbour-free "all-to-all" pairing, Song et al. 2000; Morrison et al.
2008) with exponentially decaying traces on the time grid ``t = 0..T−1``::

    x_pre[t]  = e^{−1/τ+} x_pre[t−1]  + s_pre[t]            (x[−1] = 0)
    x_post[t] = e^{−1/τ−} x_post[t−1] + s_post[t]
    Δw_ji     = A+ Σ_t s_post,j[t] x_pre,i[t]  −  A− Σ_t s_pre,i[t] e^{−1/τ−} x_post,j[t−1]

A post spike potentiates by ``A+`` times the presynaptic trace (which includes a presynaptic
spike in the same step: in the discrete LIF that input caused the spike), a presynaptic spike
depresses by ``A−`` times the postsynaptic trace of *earlier* post spikes, decayed to now.
Summed over pairs this is the classic pair window, ``Δt = t_post − t_pre``::

    W(Δt) = A+ e^{−Δt/τ+}   (Δt ≥ 0)        W(Δt) = −A− e^{Δt/τ−}   (Δt < 0)

Sums run over the patterns of a batch.

Computation. The traces are linear in the spikes: ``x[t] = Σ_{u ≤ t} e^{−(t−u)/τ} s[u]``, i.e.
``x = D s`` with the ``[T, T]`` lower-triangular decay matrix ``D[t, u] = e^{−(t−u)/τ}``
(``u ≤ t``), and the decayed earlier post trace is ``D⁻ s_post`` with the strictly lower part
``D⁻[t, u] = e^{−(t−u)/τ−}`` (``u < t``). So a batch's update is four matrix products over all
steps, patterns and neurons at once, with no loop over time steps or patterns::

    ΔW = A+ s_postᵀ (D+ s_pre) − A− (D⁻ s_post)ᵀ s_pre        (time·batch flattened)

The step-by-step loops of the first equations are the test oracle
(``tests/harness/rules/test_rules_fast_paths.py``): same sums in another order, equal within
float rounding.
"""

from __future__ import annotations

from typing import Any

import torch


def decay_matrix(steps: int, tau: float, *, strict: bool = False,
                 dtype: torch.dtype = torch.float32,
                 device: Any = None) -> torch.Tensor:
    """``D[t, u] = e^{−(t−u)/τ}`` for ``u ≤ t`` (``strict``: ``u < t``), else 0; ``[T, T]``."""
    t = torch.arange(steps, dtype=torch.float64, device=device)
    lag = t[:, None] - t[None, :]
    keep = lag > 0 if strict else lag >= 0
    return torch.where(keep, torch.exp(-lag.clamp(min=0) / tau), 0.0).to(dtype)


def spike_traces(spikes: torch.Tensor, tau: float) -> torch.Tensor:
    """``x[t] = e^{−1/τ} x[t−1] + s[t]`` over ``[T, ...]`` spikes (same shape): ``x = D s``."""
    steps = spikes.shape[0]
    d = decay_matrix(steps, tau, dtype=spikes.dtype, device=spikes.device)
    return (d @ spikes.reshape(steps, -1)).view(spikes.shape)


def stdp_update(pre: torch.Tensor, post: torch.Tensor, *, a_plus: float, a_minus: float,
                tau_plus: float, tau_minus: float) -> torch.Tensor:
    """Pair-based STDP weight change ``ΔW [N_post, N_pre]`` from ``pre`` ``[T, B, N_pre]`` and
    ``post`` ``[T, B, N_post]`` spike trains: four matrix products (module docstring)."""
    steps, n_pre, n_post = pre.shape[0], pre.shape[-1], post.shape[-1]
    dtype, device = pre.dtype, pre.device
    pre_t = pre.reshape(steps, -1)  # [T, B·N_pre]
    post_t = post.to(dtype).reshape(steps, -1)
    x_pre = decay_matrix(steps, tau_plus, dtype=dtype, device=device) @ pre_t
    # e^{−1/τ−} x_post[t−1] = Σ_{u<t} e^{−(t−u)/τ−} s_post[u]: earlier post spikes, decayed to t
    x_post_before = decay_matrix(steps, tau_minus, strict=True, dtype=dtype,
                                 device=device) @ post_t
    flat_pre, flat_post = pre.reshape(-1, n_pre), post_t.reshape(-1, n_post)
    potentiation = flat_post.t() @ x_pre.reshape(-1, n_pre)
    depression = x_post_before.reshape(-1, n_post).t() @ flat_pre
    return a_plus * potentiation - a_minus * depression


def first_spike_winners(spikes: torch.Tensor) -> torch.Tensor:
    """Winner-take-all by lateral inhibition at the first spike: per pattern, the neuron that
    fires first (ties: the one with more spikes, then the lower index) wins; ``[B, N]`` one-hot
    mask, all-zero for a pattern that made no neuron fire."""
    steps = spikes.shape[0]
    fired = spikes > 0
    first = torch.where(fired.any(0), fired.to(torch.int8).argmax(0),
                        torch.full(spikes.shape[1:], steps, device=spikes.device))
    count = spikes.sum(0)
    key = first.to(spikes.dtype) * (steps + 1) - count  # earlier first, then more spikes
    winner = key.argmin(1)
    mask = torch.zeros_like(count)
    mask.scatter_(1, winner[:, None], 1.0)
    return mask * fired.any(0).any(1, keepdim=True).to(mask.dtype)


def normalise_rows(weight: torch.Tensor, total: float) -> torch.Tensor:
    """Clip to ``w >= 0`` and scale each neuron's incoming weights to sum to ``total``."""
    w = weight.clamp(min=0.0)
    sums = w.sum(1, keepdim=True)
    return torch.where(sums > 0, w * (total / sums.clamp(min=1e-12)),
                       torch.full_like(w, total / w.shape[1]))


__all__ = ["decay_matrix", "first_spike_winners", "normalise_rows", "spike_traces",
           "stdp_update"]
