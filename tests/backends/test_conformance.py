"""Every built-in backend passes the conformance kit; the kit catches a broken backend."""

from __future__ import annotations

import pytest
import torch

from spikebench.backends import available_backends, get_backend
from spikebench.backends.conformance import backend_checks, check_backend, compare_to_reference
from spikebench.backends.custom import CustomNetwork
from spikebench.backends.custom_backend import CustomBackend
from spikebench.errors import BackendError

BUILTINS = ("custom", "snntorch", "spikingjelly")


def _installed(name: str) -> bool:
    try:
        get_backend(name)
    except BackendError:
        return False
    return True


CASES = [
    pytest.param(backend, check_name, id=f"{backend}-{check_name}")
    for backend in BUILTINS
    for check_name, _ in backend_checks(backend if _installed(backend) else "custom")
]


@pytest.mark.parametrize("backend,check_name", CASES)
def test_builtin_backend_conforms(backend, check_name):
    if not _installed(backend):
        pytest.skip(f"{backend} is not installed")
    checks = dict(backend_checks(backend))
    checks[check_name]()


def test_builtins_are_registered():
    assert set(BUILTINS) <= set(available_backends())


class _LeakyBackend(CustomBackend):
    """A subtly wrong engine: its leak is 1 % too strong."""

    name = "leaky-by-mistake"

    def build(self, spec, *, device="cpu", dtype=None, seed=None):
        import dataclasses

        net = super().build(dataclasses.replace(spec, beta=spec.beta * 0.99), device=device,
                            dtype=dtype, seed=seed)
        return net


class _NoResetBetweenBatches(CustomNetwork):
    """Carries the last charge into the next call (state leak)."""

    def forward(self, x):
        out = super().forward(x)
        carry = getattr(self, "_carry", None)
        self._carry = out.membrane[-1].detach()
        if carry is not None and carry.shape == out.membrane.shape[1:]:
            out.membrane = out.membrane + carry
        return out


class _StatefulBackend(CustomBackend):
    name = "stateful-by-mistake"

    def build(self, spec, *, device="cpu", dtype=None, seed=None):
        torch.manual_seed(seed or 0)
        return _NoResetBetweenBatches(spec).to(device=device, dtype=dtype or torch.float32)


def test_the_kit_catches_a_wrong_equation():
    with pytest.raises(AssertionError, match="reference_equivalence"):
        check_backend(_LeakyBackend())


def test_the_kit_catches_state_carried_between_batches():
    with pytest.raises(AssertionError, match="state_reset"):
        check_backend(_StatefulBackend(), skip=("reference_equivalence",))


def test_compare_to_reference_reports_the_spec():
    from spikebench.backends import NetworkSpec

    spec = NetworkSpec(sizes=(6, 9, 3), beta=0.9, threshold=0.6)
    with pytest.raises(AssertionError, match=r"beta=0\.9"):
        compare_to_reference(_LeakyBackend(), spec)


class _StaleTempotron(CustomBackend):
    """Prepares the Tempotron's potentials with the weights frozen at preparation time."""

    name = "stale-tempotron-by-mistake"

    def build_tempotron(self, *args, **kwargs):
        layer = super().build_tempotron(*args, **kwargs)

        def prepare(spike_times, kernel=None):
            frozen = layer.weight.detach().clone()
            return lambda idx: _frozen_v(layer, spike_times[idx], frozen)

        layer.prepare = prepare
        return layer


def _frozen_v(layer, times, weight):
    """``forward(times)`` computed with ``weight`` instead of the layer's current weight."""
    from spikebench.backends.tempotron import psp_kernel

    t = torch.arange(layer.steps, dtype=weight.dtype)
    return psp_kernel(t[:, None, None] - times[None].to(weight.dtype), layer.tau,
                      layer.tau_s) @ weight.T


def test_the_kit_catches_a_prepared_tempotron_input_that_ignores_weight_changes():
    from spikebench.backends.conformance.tempotron import check_tempotron

    check_tempotron("custom")
    with pytest.raises(AssertionError, match=r"prepare\(times\)\(idx\) differs"):
        check_tempotron(_StaleTempotron())
