"""The STDP layer's traces and updates as matrix products over all steps and patterns equal the
step-by-step reference loops within float rounding."""

from __future__ import annotations

import pytest
import torch

from spikebench.harness.rules.stdp import (
    decay_matrix,
    spike_traces,
    spike_traces_reference,
    stdp_update,
    stdp_update_reference,
)


def _trains(shape, p, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=gen) < p).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("steps", [1, 2, 17, 30])
def test_traces_equal_the_loop(dtype, steps):
    s = _trains((steps, 5, 7), 0.3, steps, dtype)
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(spike_traces(s, 3.5), spike_traces_reference(s, 3.5),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("steps", [1, 3, 25])
def test_update_equals_the_loop(dtype, steps):
    pre, post = _trains((steps, 32, 74), 0.3, 1, dtype), _trains((steps, 32, 50), 0.1, 2, dtype)
    kw = dict(a_plus=0.05, a_minus=0.04, tau_plus=3.0, tau_minus=6.0)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(stdp_update(pre, post, **kw), stdp_update_reference(pre, post, **kw),
                               rtol=tol, atol=tol)


def test_decay_matrix_is_the_pair_window():
    d = decay_matrix(4, 2.0, dtype=torch.float64)
    assert d[3, 1] == pytest.approx(torch.exp(torch.tensor(-1.0)).item())
    assert d[1, 3] == 0 and d[2, 2] == 1
    assert decay_matrix(4, 2.0, strict=True)[2, 2] == 0
