"""Conformance kit for convolutional networks: any backend's conv builder against the reference.

As :mod:`spikebench.backends.conformance` does for the dense networks, :func:`check_conv_backend`
runs every check and raises one ``AssertionError`` listing the failures:

* output shapes ``[T, B, outputs]`` and dtypes in float32 and float64, binary spikes, one 0-d
  spike count per LIF layer (convolutional stages, then dense layers);
* determinism: the same ``seed`` gives the same initial weights (and the reference's);
* state reset: repeated forward passes agree, also after another batch size and ``T``;
* ``get_weights`` / ``set_weights`` round trip with neutral shapes (conv ``[out, in, k, k]``);
* numerical equivalence with the reference (the custom engine) for every reset × surrogate the
  backend declares: same weights and Bernoulli(0.5) input ⇒ float64 spikes identical, charges
  within ``1e-6``, surrogate gradients within ``1e-4`` of the largest; float32 spikes at least
  99.9 % identical.
"""

from __future__ import annotations

import itertools
from typing import Any

import torch

from spikebench.backends.base import RESETS, SURROGATES, Backend
from spikebench.backends.conformance.common import (
    GRAD_RTOL,
    _check_float32,
    _check_float64,
    _check_gradients,
    _fail,
    _resolve,
    run_with_gradients,
)
from spikebench.backends.conv import ConvNetworkSpec
from spikebench.errors import BackendError

#: Weight scale: currents of standard deviation ``GAIN · θ`` for Bernoulli(0.5) inputs.
GAIN = 1.5


def conv_input(spec: ConvNetworkSpec, steps: int, batch: int, *, seed: int = 0,
               dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Bernoulli(0.5) input ``[T, B, C, S, S]`` from a fixed seed."""
    gen = torch.Generator().manual_seed(seed)
    shape = (steps, batch, spec.in_channels, spec.image_size, spec.image_size)
    return (torch.rand(shape, generator=gen) < 0.5).to(dtype)


def conv_weights(spec: ConvNetworkSpec, *, seed: int = 0, dtype: torch.dtype = torch.float64
                 ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """Real-valued weights ``N(0, (GAIN θ)² / (fan_in / 2))`` per layer (biases a quarter of
    that scale), so that a Bernoulli(0.5) input makes every layer spike at a moderate rate."""
    gen = torch.Generator().manual_seed(seed)
    shapes: list[tuple[int, ...]] = []
    c_in = spec.in_channels
    for c in spec.channels:
        shapes.append((c, c_in, spec.kernel, spec.kernel))
        c_in = c
    dense = spec.dense_sizes
    shapes += [(b, a) for a, b in itertools.pairwise(dense)]
    out = []
    for shape in shapes:
        fan_in = 1
        for d in shape[1:]:
            fan_in *= d
        scale = GAIN * spec.threshold / (0.5 * fan_in) ** 0.5
        w = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
        b = (torch.randn(shape[0], generator=gen, dtype=torch.float64) * scale / 4
             if spec.bias else None)
        out.append((w.to(dtype), None if b is None else b.to(dtype)))
    return out


def _build(backend: Backend | str, spec: ConvNetworkSpec, **kwargs: Any) -> Any:
    return _resolve(backend).build_conv(spec, **kwargs)


def _name(backend: Backend | str) -> str:
    return backend if isinstance(backend, str) else backend.name


def conformance_spec(**kw: Any) -> ConvNetworkSpec:
    """A small spec for the checks (12×12 input, two stages, one hidden dense layer)."""
    base: dict[str, Any] = {"image_size": 12, "channels": (3, 4), "hidden": (6,), "beta": 0.85,
                            "threshold": 0.8, "slope": 5.0}
    base.update(kw)
    return ConvNetworkSpec(**base)


def check_conv_shapes(backend: Backend | str) -> None:
    """``[T, B, outputs]`` outputs in the network dtype, binary spikes, a count per layer."""
    spec = conformance_spec()
    for dtype in (torch.float32, torch.float64):
        net = _build(backend, spec, dtype=dtype, seed=0)
        with torch.no_grad():
            out = net(conv_input(spec, 5, 2, dtype=dtype))
        for field in ("spikes", "membrane"):
            t = getattr(out, field)
            if tuple(t.shape) != (5, 2, spec.outputs) or t.dtype != dtype:
                _fail(f"{_name(backend)}: conv {field} is {tuple(t.shape)} {t.dtype}, expected "
                      f"(5, 2, {spec.outputs}) {dtype}")
        if not bool(((out.spikes == 0) | (out.spikes == 1)).all()):
            _fail(f"{_name(backend)}: conv spikes must be 0 or 1")
        if len(out.layer_spike_counts) != spec.n_layers:
            _fail(f"{_name(backend)}: {len(out.layer_spike_counts)} conv layer counts for "
                  f"{spec.n_layers} LIF layers")


def check_conv_determinism(backend: Backend | str, reference: Backend | str = "custom") -> None:
    """Same seed ⇒ same initial weights, here and on the reference."""
    spec = conformance_spec()
    nets = [_build(b, spec, dtype=torch.float64, seed=3)
            for b in (backend, backend, reference)]
    w0 = nets[0].get_weights()
    for other in nets[1:]:
        for (a, _), (c, _) in zip(w0, other.get_weights()):
            if not torch.equal(a, c):
                _fail(f"{_name(backend)}: build_conv(seed=3) gave weights unlike another build / "
                      f"the reference {_name(reference)}")


def check_conv_state_reset(backend: Backend | str) -> None:
    """Every forward starts from the zero state."""
    spec = conformance_spec()
    net = _build(backend, spec, dtype=torch.float64, seed=0)
    net.set_weights(conv_weights(spec, seed=1))
    x, other = conv_input(spec, 6, 3, seed=1), conv_input(spec, 4, 2, seed=2)
    with torch.no_grad():
        a = net(x)
        net(other)
        c = net(x)
    if not torch.equal(a.spikes, c.spikes) or not torch.equal(a.membrane, c.membrane):
        _fail(f"{_name(backend)}: conv state is not reset between forward passes")


def check_conv_weights_roundtrip(backend: Backend | str) -> None:
    """Neutral shapes, detached copies, round trip, refusal of wrong shapes."""
    spec = conformance_spec()
    src = _build(backend, spec, dtype=torch.float64, seed=0)
    dst = _build(backend, spec, dtype=torch.float64, seed=1)
    weights = src.get_weights()
    expected = [tuple(w.shape) for w, _ in conv_weights(spec)]
    if [tuple(w.shape) for w, _ in weights] != expected:
        _fail(f"{_name(backend)}: conv weight shapes {[tuple(w.shape) for w, _ in weights]} != "
              f"{expected}")
    dst.set_weights(weights)
    if not all(torch.equal(a, c) for (a, _), (c, _) in zip(weights, dst.get_weights())):
        _fail(f"{_name(backend)}: conv set_weights/get_weights round trip changed the weights")
    try:
        dst.set_weights([(torch.zeros(2, 2, dtype=torch.float64), None)] * len(weights))
    except (BackendError, ValueError, RuntimeError):  # refused, as it should be
        return
    _fail(f"{_name(backend)}: conv set_weights accepted weights of the wrong shape")


def compare_conv_to_reference(backend: Backend | str, spec: ConvNetworkSpec, *,
                              reference: Backend | str = "custom", steps: int = 8, batch: int = 3,
                              seed: int = 0, dtype: torch.dtype = torch.float64,
                              grad_rtol: float = GRAD_RTOL) -> None:
    """Same ``spec``, weights and input on ``backend`` and ``reference``: spikes, charges
    and (float64) surrogate gradients must agree."""
    weights = conv_weights(spec, seed=seed, dtype=dtype)
    x = conv_input(spec, steps, batch, seed=seed + 7, dtype=dtype)
    nets = []
    for name in (reference, backend):
        net = _build(name, spec, dtype=dtype, seed=0)
        net.set_weights(weights)
        nets.append(net)
    label = (f"conv {_name(backend)} vs {_name(reference)} ({spec.reset}, {spec.surrogate}, "
             f"beta={spec.beta:g}, threshold={spec.threshold:g}, {dtype})")
    if dtype != torch.float64:
        with torch.no_grad():
            o0, o1 = nets[0](x), nets[1](x)
        _check_float32(label, o0.spikes, o0.membrane, o1.spikes, o1.membrane, 1e-4)
        return
    (s0, m0, g0), (s1, m1, g1) = (run_with_gradients(n, x, seed=seed) for n in nets)
    _check_float64(label, s0, m0, s1, m1, 1e-6)
    _check_gradients(label, g0, g1, grad_rtol)


def check_conv_equivalence(backend: Backend | str, reference: Backend | str = "custom") -> None:
    """Every reset × surrogate both declare, varied β and θ, float64 and float32."""
    b, ref = _resolve(backend), _resolve(reference)
    resets = [r for r in RESETS if r in b.resets and r in ref.resets]
    surrogates = [s for s in SURROGATES if s in b.surrogates and s in ref.surrogates]
    betas = (0.9, 0.5, 1.0, 0.0)
    for i, (reset, surrogate) in enumerate(itertools.product(resets, surrogates)):
        spec = conformance_spec(beta=betas[i % len(betas)], threshold=0.6 + 0.1 * i,
                                reset=reset, surrogate=surrogate, slope=2.0 + 3.0 * i)
        compare_conv_to_reference(backend, spec, reference=reference, seed=i)
        compare_conv_to_reference(backend, spec, reference=reference, seed=i,
                                  dtype=torch.float32)


def check_conv_backend(backend: Backend | str, *, reference: Backend | str = "custom") -> None:
    """Run every convolutional check on ``backend``; one ``AssertionError`` lists failures."""
    checks = (("shapes", lambda: check_conv_shapes(backend)),
              ("determinism", lambda: check_conv_determinism(backend, reference)),
              ("state_reset", lambda: check_conv_state_reset(backend)),
              ("weights_roundtrip", lambda: check_conv_weights_roundtrip(backend)),
              ("equivalence", lambda: check_conv_equivalence(backend, reference)))
    failures = []
    for name, check in checks:
        try:
            check()
        except AssertionError as exc:
            failures.append(f"- {name}: {exc}")
    if failures:
        raise AssertionError(f"backend {_name(backend)!r} fails {len(failures)} convolutional "
                             "conformance check(s):\n" + "\n".join(failures))


__all__ = ["check_conv_backend", "check_conv_determinism", "check_conv_equivalence",
           "check_conv_shapes", "check_conv_state_reset", "check_conv_weights_roundtrip",
           "compare_conv_to_reference", "conformance_spec", "conv_input", "conv_weights"]
