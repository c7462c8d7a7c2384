"""Random specs: snnTorch and SpikingJelly agree with the custom engine in float64 (spikes exactly,
charges and surrogate gradients to rounding)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikebench.backends import NetworkSpec, get_backend
from spikebench.backends.conformance import compare_to_reference
from spikebench.errors import BackendError


def _installed(name: str) -> bool:
    try:
        get_backend(name)
    except BackendError:
        return False
    return True


specs = st.builds(
    lambda sizes, beta, threshold, reset, surrogate, slope, bias: NetworkSpec(
        sizes=tuple(sizes), beta=beta, threshold=threshold, reset=reset, surrogate=surrogate,
        slope=slope, bias=bias),
    sizes=st.lists(st.integers(1, 10), min_size=2, max_size=4),
    beta=st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0)),
    threshold=st.floats(0.1, 2.0),
    reset=st.sampled_from(["subtract", "zero", "none"]),
    surrogate=st.sampled_from(["fast_sigmoid", "arctan", "sigmoid"]),
    slope=st.floats(0.5, 30.0),
    bias=st.booleans(),
)


@pytest.mark.parametrize("backend", ["snntorch", "spikingjelly"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, steps=st.integers(1, 12), batch=st.integers(1, 5), seed=st.integers(0, 999),
       scale=st.floats(0.5, 3.0))
def test_random_specs_match_custom_engine(backend, spec, steps, batch, seed, scale):
    if not _installed(backend):
        pytest.skip(f"{backend} is not installed")
    compare_to_reference(backend, spec, steps=steps, batch=batch, seed=seed,
                         weight_scale=scale, grad_rtol=1e-4)
