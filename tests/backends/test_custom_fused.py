"""The fused C++ CPU kernels of the custom engine equal its TorchScript path bit for bit, and the
engine falls back to that path silently when the kernels are disabled or cannot be built."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import zlib

import pytest
import torch

from spikebench.backends import NetworkSpec, _lif_kernels, get_backend
from spikebench.backends.conformance import random_weights, spiking_input
from spikebench.backends.custom import _RESET_CODES, _recurrence, lif_backward_

RESETS = ["subtract", "zero", "none"]
SURROGATES = ["fast_sigmoid", "arctan", "sigmoid"]
SHAPES = [(7, 3, 5), (25, 128, 128), (1, 4), (12, 2, 33), (3, 1, 1)]
# (grad_spikes, grad_charge): absent, dense, or (spikes only) expanded over time like the
# gradient of `spikes.sum(0)`, or a non-contiguous permuted view.
GRADS = [("dense", None), (None, "dense"), ("dense", "dense"), ("expand", None),
         ("expand", "dense"), ("permuted", None)]


@pytest.fixture(scope="module")
def kernels(fused_kernels) -> None:
    """The fused kernels, built (skips or fails as ``fused_kernels`` says when they cannot be)."""


def _seed(*parts) -> int:
    """A seed that is the same in every run (``hash`` of strings is not)."""
    return zlib.crc32(repr(parts).encode())


def _inputs(shape, dtype, seed, grid):
    """Input currents; on ``grid`` multiples of 1/8 (with θ = 1, β = 0.5 exact) so that
    ``H == θ`` ties occur and the comparisons' edges are exercised."""
    gen = torch.Generator().manual_seed(seed)
    if grid:
        return torch.randint(-8, 16, shape, generator=gen).to(dtype) / 8
    return torch.randn(shape, generator=gen, dtype=dtype) * 0.9 + 0.3


def _grad(kind, shape, dtype, gen):
    if kind is None:
        return None
    if kind == "expand":
        return torch.randn(shape[1:], generator=gen, dtype=dtype).expand(shape)
    if kind == "permuted":
        return torch.randn(tuple(reversed(shape)), generator=gen, dtype=dtype).permute(
            *reversed(range(len(shape))))
    return torch.randn(shape, generator=gen, dtype=dtype)


def _fallback_backward(monkeypatch, *args, **kwargs) -> torch.Tensor:
    with monkeypatch.context() as m:
        m.setenv(_lif_kernels.ENV_DISABLE, "1")
        return lif_backward_(*args, **kwargs).clone()


DTYPES = (torch.float32, torch.float64)


@pytest.mark.parametrize("reset", RESETS)
def test_forward_equals_torchscript(kernels, reset):
    """For every shape, dtype and (β, θ) — a grid of 1/8 making ``H == θ`` ties included."""
    for shape, dtype, (beta, threshold, grid) in itertools.product(
            SHAPES, DTYPES, [(0.85, 0.7, False), (1.0, 0.3, False), (0.0, 0.7, False),
                             (0.5, 1.0, True)]):
        case = f"{reset}, {shape}, {dtype}, beta {beta}, threshold {threshold}, grid {grid}"
        current = _inputs(shape, dtype, seed=_seed(shape, reset, beta), grid=grid)
        h_ref, s_ref = current.clone(), torch.empty_like(current)
        _recurrence(h_ref, s_ref, beta, threshold, _RESET_CODES[reset])
        h, s = current.clone(), torch.empty_like(current)
        count = _lif_kernels.forward_(h, s, beta, threshold, _RESET_CODES[reset])
        assert torch.equal(s, s_ref), case
        assert torch.equal(h, h_ref), case
        assert count.dtype == dtype and count.dim() == 0, case
        assert torch.equal(count, s_ref.sum()), case
        if s.numel() >= 100:
            assert 0 < float(s.mean()) < 1, f"{case}: the inputs should make some neurons spike"


@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("surrogate", SURROGATES)
def test_backward_equals_torchscript(kernels, monkeypatch, reset, surrogate):
    """For every shape, dtype and kind of incoming gradient (:data:`GRADS`)."""
    beta, threshold, slope = 0.85, 0.7, 4.0
    for shape, grads, dtype in itertools.product(SHAPES, GRADS, DTYPES):
        case = f"{reset}, {surrogate}, {shape}, gradients {grads}, {dtype}"
        gen = torch.Generator().manual_seed(_seed(shape, reset, surrogate, grads))
        charge = torch.randn(shape, generator=gen, dtype=dtype) * 0.8 + 0.4
        g_s, g_h = (_grad(kind, shape, dtype, gen) for kind in grads)
        args = (charge, g_s, g_h, beta, threshold, reset, surrogate, slope)
        ref = _fallback_backward(monkeypatch, *args)
        out = [torch.full_like(charge, float("nan")), torch.full_like(charge, float("nan"))]
        fused = lif_backward_(*args, out=out)
        assert fused.data_ptr() == out[0].data_ptr(), (
            f"{case}: the result goes into the workspace buffer")
        assert torch.equal(fused, ref), case


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_parallel_shape_equal_at_any_thread_count(kernels, monkeypatch, threads, dtype):
    shape = (30, 64, 517)  # odd neuron count: blocks and thread ranges end mid-vector
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        current = _inputs(shape, dtype, seed=3, grid=False)
        h_ref, s_ref = current.clone(), torch.empty_like(current)
        _recurrence(h_ref, s_ref, 0.9, 1.0, 0)
        h, s = current.clone(), torch.empty_like(current)
        _lif_kernels.forward_(h, s, 0.9, 1.0, 0)
        assert torch.equal(h, h_ref) and torch.equal(s, s_ref)
        g_s = torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(4))
        args = (h, g_s, None, 0.9, 1.0, "subtract", "fast_sigmoid", 25.0)
        assert torch.equal(lif_backward_(*args), _fallback_backward(monkeypatch, *args))
    finally:
        torch.set_num_threads(old)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("reset, surrogate", list(zip(RESETS, SURROGATES)))
def test_network_outputs_and_gradients_equal_with_and_without_kernels(
        kernels, monkeypatch, dtype, reset, surrogate):
    spec = NetworkSpec(sizes=(7, 13, 6, 3), beta=0.9, threshold=0.6, reset=reset,
                       surrogate=surrogate, slope=5.0)
    weights = random_weights(spec, seed=1, scale=2.0)
    x = spiking_input(11, 4, 7, seed=2).to(dtype)
    results = []
    for disabled in (False, True):
        with monkeypatch.context() as m:
            if disabled:
                m.setenv(_lif_kernels.ENV_DISABLE, "1")
            net = get_backend("custom").build(spec, dtype=dtype)
            net.set_weights(weights)
            out = net(x)
            loss = (out.membrane.square().sum() + out.spikes.sum(0).square().sum()
                    + (out.spikes * torch.linspace(-1, 1, 3, dtype=dtype)).sum())
            grads = torch.autograd.grad(loss, list(net.parameters()))
            results.append((out.spikes, out.membrane.detach(),
                            torch.stack(out.layer_spike_counts), grads))
    (s1, h1, c1, g1), (s2, h2, c2, g2) = results
    assert torch.equal(s1, s2) and torch.equal(h1, h2) and torch.equal(c1, c2)
    assert 0 < float(s1.detach().mean()) < 1
    for a, b in zip(g1, g2):
        assert torch.equal(a, b)


def test_unsupported_tensors_take_the_torchscript_path():
    assert not _lif_kernels.usable(torch.zeros(3, 2, dtype=torch.float16))
    assert not _lif_kernels.usable(torch.zeros(2, 3).t())  # not contiguous
    if torch.cuda.is_available():
        assert not _lif_kernels.usable(torch.zeros(3, device="cuda"))


def test_environment_variable_disables_the_kernels(monkeypatch):
    monkeypatch.setenv(_lif_kernels.ENV_DISABLE, "1")
    assert not _lif_kernels.usable(torch.zeros(4, 2))
    assert _lif_kernels.unavailable_reason() == f"disabled by {_lif_kernels.ENV_DISABLE}"


def test_failed_build_falls_back_once_and_logs_the_reason(monkeypatch, caplog):
    """A build error (no compiler, no ninja, ...) never raises: one warning, no retry, and the
    engine keeps working on the TorchScript path."""
    calls = []

    def broken_build():
        calls.append(1)
        raise RuntimeError("Error building extension 'spikebench_lif': c++: not found")

    monkeypatch.delenv(_lif_kernels.ENV_DISABLE, raising=False)
    monkeypatch.setattr(_lif_kernels, "_build", broken_build)
    monkeypatch.setattr(_lif_kernels, "_unsupported_platform", lambda: None)
    monkeypatch.setattr(_lif_kernels, "_ops", None)
    monkeypatch.setattr(_lif_kernels, "_failure", None)
    with caplog.at_level(logging.INFO, logger="spikebench"):
        net = get_backend("custom").build(NetworkSpec(sizes=(5, 8, 2)), seed=0)
        x = spiking_input(6, 3, 5, dtype=torch.float32)
        for _ in range(3):
            out = net(x)
            out.spikes.sum().backward()
    assert calls == [1]
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "c++: not found" in warnings[0].getMessage()
    assert "build failed" in _lif_kernels.unavailable_reason()
    assert all(p.grad is not None for p in net.parameters())


def test_import_and_cli_help_do_not_build():
    code = ("import sys\n"
            "sys.argv = ['spikebench', '--help']\n"
            "from spikebench.cli import main\n"
            "import spikebench.backends.custom\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "from spikebench.backends import _lif_kernels as k\n"
            "print('STATE', k._ops is None and k._failure is None,"
            " 'torch.utils.cpp_extension' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert "STATE True False" in out


def test_stale_build_lock_is_removed_fresh_one_kept(tmp_path):
    """A build killed mid-way leaves torch's lock file, on which later builds would wait forever."""
    lock = tmp_path / "lock"
    lock.touch()
    assert not _lif_kernels.remove_stale_lock(tmp_path) and lock.exists()
    old = lock.stat().st_mtime - 2 * _lif_kernels.STALE_LOCK_SECONDS
    os.utime(lock, (old, old))
    assert _lif_kernels.remove_stale_lock(tmp_path) and not lock.exists()
    assert not _lif_kernels.remove_stale_lock(tmp_path)  # nothing to remove


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("reset", RESETS)
def test_forward_with_bias_equals_adding_it_first(kernels, threads, reset):
    """The kernel's bias (added on the way, ``N`` not dividing the neuron blocks, blocks and
    thread ranges starting mid-sample) equals ``charge.add_(bias)`` before the recurrence, for
    every shape and dtype."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for shape, dtype in itertools.product([(7, 3, 5), (25, 128, 128), (12, 2, 33),
                                               (30, 64, 517), (6, 9000, 3), (4, 1, 9000)],
                                              DTYPES):
            case = f"{threads} threads, {reset}, {shape}, {dtype}"
            current = _inputs(shape, dtype, seed=_seed(shape, reset), grid=False)
            bias = torch.randn(shape[-1], dtype=dtype,
                               generator=torch.Generator().manual_seed(7))
            h_ref, s_ref = current.clone().add_(bias), torch.empty_like(current)
            _recurrence(h_ref, s_ref, 0.85, 0.7, _RESET_CODES[reset])
            h, s = current.clone(), torch.empty_like(current)
            count = _lif_kernels.forward_(h, s, 0.85, 0.7, _RESET_CODES[reset], bias)
            assert torch.equal(h, h_ref) and torch.equal(s, s_ref), case
            assert torch.equal(count, s_ref.sum()), case
    finally:
        torch.set_num_threads(old)


def test_forward_refuses_a_bias_of_the_wrong_width(kernels):
    h, s = torch.zeros(3, 2, 5), torch.zeros(3, 2, 5)
    with pytest.raises(RuntimeError, match="bias must be"):
        _lif_kernels.forward_(h, s, 0.9, 1.0, 0, torch.zeros(4))
