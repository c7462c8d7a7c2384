"""Conformance kit for backends: the checks any backend (built-in or plugin) must pass.

In the spirit of scikit-learn's ``check_estimator``: ``check_backend`` runs every check and
raises one ``AssertionError`` listing the failures; ``backend_checks`` yields
``(name, check)`` pairs for pytest parametrisation, and each check is also a public function::

    from spikebench.backends.conformance import backend_checks, check_backend

    def test_my_backend_conforms():
        check_backend("mybackend")              # or an instance: check_backend(MyBackend())

    @pytest.mark.parametrize("name,check", backend_checks("mybackend"))
    def test_each(name, check):
        check()

What is checked (``B`` = the backend under test, reference = the custom engine by default):

* declarations: ``name``, neuron/reset/surrogate sets within the known values, ``version()`` a
  string;
* output shapes and dtypes in float32 and float64, binary spikes, one count per layer;
* determinism: the same ``seed`` gives the same weights and outputs;
* state reset: two forward passes on the same input are equal (also after another batch size);
* declared capabilities within ``Capability``, and
  ``dense_lif`` among them;
* gradients (capability ``surrogate_gradients``): every weight gets a finite, non-zero gradient from
  a spiking input;
* devices: CPU, and CUDA when available (outputs on the input's device);
* ``get_weights``/``set_weights`` round trip and shapes ``[(W [out, in], b [out]), ...]``;
* numerical equivalence with the reference for every reset × surrogate both support, with the
  same weights: float64 spikes identical, charges within ``atol`` (default 1e-6), gradients
  within ``grad_rtol`` (default 1e-4) relative to the largest gradient; float32 spikes at least
  99.9 % identical and 99 % of charges within 1e-4 (a rare flip changes later charges);
* Tempotron (capability ``tempotron``): ``build_tempotron`` gives ``[T, B, N_out]``
  potentials equal to ``DirectTempotron`` with the same
  weight (float64 within 1e-9), including non-integer, integer and missing (inf/NaN) spike
  times;
* convolutional networks (capability ``conv_lif``): the checks of
  ``spikebench.backends.conformance.conv``;
* ``check_supported`` raises ``BackendError`` for an unsupported neuron,
  ``build`` refuses an unsupported spec, and the builder of every capability the backend does
  not declare raises ``BackendError``.

Inputs are spike-heavy (Bernoulli 0.5) with real-valued random weights in float64, so that
thresholds are crossed often and no charge lands exactly on the threshold (ties would make the
strict ``>`` comparison matter and are measure-zero here).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from spikebench.backends.base import RESETS, SURROGATES, Backend, NetworkSpec, Reset, Surrogate
from spikebench.backends.capabilities import Capability
from spikebench.backends.conformance.common import (
    ATOL32,
    ATOL64,
    GRAD_RTOL,
    _check_float32,
    _check_float64,
    _check_gradients,
    _fail,
    _resolve,
    random_weights,
    run_with_gradients,
    spiking_input,
)
from spikebench.backends.conformance.conv import check_conv_backend
from spikebench.backends.conformance.tempotron import (  # noqa: F401 (re-exported)
    check_tempotron,
    tempotron_times,
)
from spikebench.errors import BackendError


def check_declarations(backend: Backend | str) -> None:
    """Name, capability sets within the known values, version string."""
    b = _resolve(backend)
    if not isinstance(b.name, str) or not b.name:
        _fail("Backend.name must be a non-empty string")
    if not set(b.resets) <= set(RESETS):
        _fail(f"{b.name}: resets {sorted(b.resets)} outside {RESETS}")
    if not set(b.surrogates) <= set(SURROGATES):
        _fail(f"{b.name}: surrogates {sorted(b.surrogates)} outside {SURROGATES}")
    if "lif" not in b.neurons:
        _fail(f"{b.name}: every backend must provide the 'lif' neuron")
    if not isinstance(b.version(), str):
        _fail(f"{b.name}: version() must return a string")
    if not set(b.capabilities) <= set(Capability):
        _fail(f"{b.name}: capabilities {sorted(b.capabilities)} outside "
              f"{sorted(Capability)} (spikebench.backends.capabilities)")
    if Capability.DENSE_LIF not in b.capabilities:
        _fail(f"{b.name}: every backend must provide a dense LIF network (capability "
              "'dense_lif'): the conformance kit and the engine benchmark build one")


def _supported_spec(b: Backend, *, reset: Reset | None = None,
                    surrogate: Surrogate | None = None, **kw: Any) -> NetworkSpec:
    reset = reset or ("subtract" if "subtract" in b.resets
                      else min(r for r in RESETS if r in b.resets))
    surrogate = surrogate or ("fast_sigmoid" if "fast_sigmoid" in b.surrogates
                              else min(s for s in SURROGATES if s in b.surrogates))
    defaults: dict[str, Any] = {"sizes": (5, 7, 3), "beta": 0.85, "threshold": 0.8, "slope": 5.0}
    defaults.update(kw)
    return NetworkSpec(reset=reset, surrogate=surrogate, **defaults)


def _same_bias(given: torch.Tensor | None, got: torch.Tensor | None) -> bool:
    """``got`` matches ``given``: nothing was given (a layer with a bias then holds zeros), or
    an equal tensor came back."""
    if given is None:
        return True
    return got is not None and torch.equal(given, got)


def check_output_shapes(backend: Backend | str) -> None:
    """``[T, B, O]`` spikes and membrane in the network dtype (float32 and float64), binary
    spikes, one 0-d spike count per layer."""
    b = _resolve(backend)
    spec = _supported_spec(b, sizes=(5, 7, 4, 3))
    for dtype in (torch.float32, torch.float64):
        net = b.build(spec, dtype=dtype, seed=0)
        x = spiking_input(6, 2, 5, dtype=dtype)
        with torch.no_grad():
            out = net(x)
        for field in ("spikes", "membrane"):
            t = getattr(out, field)
            if tuple(t.shape) != (6, 2, 3):
                _fail(f"{b.name}: {field} shape {tuple(t.shape)} != (6, 2, 3) [T, B, O]")
            if t.dtype != dtype:
                _fail(f"{b.name}: {field} dtype {t.dtype} != network dtype {dtype}")
        if not bool(((out.spikes == 0) | (out.spikes == 1)).all()):
            _fail(f"{b.name}: spikes must be 0 or 1")
        if len(out.layer_spike_counts) != spec.n_layers:
            _fail(f"{b.name}: {len(out.layer_spike_counts)} layer_spike_counts for "
                  f"{spec.n_layers} layers")
        if any(torch.as_tensor(c).dim() != 0 for c in out.layer_spike_counts):
            _fail(f"{b.name}: layer_spike_counts must be 0-d tensors")
        if float(out.layer_spike_counts[-1]) != float(out.spikes.sum()):
            _fail(f"{b.name}: last layer's count differs from the output spike sum")


def check_determinism(backend: Backend | str) -> None:
    """Same seed ⇒ same initial weights and outputs; different seed ⇒ different weights."""
    b = _resolve(backend)
    spec = _supported_spec(b)
    n1, n2, n3 = (b.build(spec, dtype=torch.float64, seed=s) for s in (3, 3, 4))
    for (w1, b1), (w2, b2) in zip(n1.get_weights(), n2.get_weights()):
        if not torch.equal(w1, w2) or not _same_bias(b1, b2):
            _fail(f"{b.name}: build(seed=3) twice gave different weights")
    if all(torch.equal(w1, w3) for (w1, _), (w3, _) in zip(n1.get_weights(), n3.get_weights())):
        _fail(f"{b.name}: seeds 3 and 4 gave identical weights (seed ignored?)")
    x = spiking_input(8, 3, 5)
    with torch.no_grad():
        o1, o2 = n1(x), n2(x)
    if not torch.equal(o1.spikes, o2.spikes) or not torch.equal(o1.membrane, o2.membrane):
        _fail(f"{b.name}: same seed and input gave different outputs")


def check_state_reset(backend: Backend | str) -> None:
    """Every forward starts from the zero state: repeated passes agree, also after a pass with
    another batch size and number of steps."""
    b = _resolve(backend)
    spec = _supported_spec(b)
    net = b.build(spec, dtype=torch.float64, seed=0)
    net.set_weights(random_weights(spec, seed=1))
    x, other = spiking_input(8, 3, 5, seed=1), spiking_input(5, 4, 5, seed=2)
    with torch.no_grad():
        a = net(x)
        net(other)
        c = net(x)
        d = net(x)
    for name, o in (("after another batch", c), ("on a repeat", d)):
        if not torch.equal(a.spikes, o.spikes) or not torch.allclose(a.membrane, o.membrane,
                                                                       atol=0, rtol=0):
            _fail(f"{b.name}: state is not reset between forward passes ({name})")


def check_gradients(backend: Backend | str) -> None:
    """With a spiking input every weight and bias gets a finite, non-zero surrogate gradient."""
    b = _resolve(backend)
    if Capability.SURROGATE_GRADIENTS not in b.capabilities:
        return
    for surrogate in sorted(s for s in SURROGATES if s in b.surrogates):
        spec = _supported_spec(b, surrogate=surrogate)
        net = b.build(spec, dtype=torch.float64, seed=0)
        net.set_weights(random_weights(spec, seed=2))
        _, _, grads = run_with_gradients(net, spiking_input(10, 4, 5, seed=3))
        for i, g in enumerate(grads):
            if g is None:
                continue
            what = f"layer {i // 2} {'weight' if i % 2 == 0 else 'bias'} ({surrogate})"
            if not bool(torch.isfinite(g).all()):
                _fail(f"{b.name}: non-finite gradient on {what}")
            if float(g.abs().max()) == 0.0:
                _fail(f"{b.name}: zero gradient on {what}")


def check_devices(backend: Backend | str) -> None:
    """Runs on CPU, and on CUDA when a GPU is present (outputs on the input's device)."""
    b = _resolve(backend)
    spec = _supported_spec(b)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        net = b.build(spec, device=dev, seed=0)
        x = spiking_input(4, 2, 5, dtype=torch.float32, device=dev)
        out = net(x)
        for t in (out.spikes, out.membrane):
            if t.device.type != torch.device(dev).type:
                _fail(f"{b.name}: output on {t.device}, expected {dev}")
        if Capability.SURROGATE_GRADIENTS in b.capabilities:
            out.membrane.sum().backward()


def check_weights_roundtrip(backend: Backend | str) -> None:
    """``set_weights(get_weights())`` round trip, neutral shapes ``W [out, in]``, ``b [out]``,
    detached copies, and a clear error for wrong shapes."""
    b = _resolve(backend)
    spec = _supported_spec(b)
    src, dst = b.build(spec, dtype=torch.float64, seed=0), b.build(spec, dtype=torch.float64,
                                                                   seed=1)
    weights = src.get_weights()
    if len(weights) != spec.n_layers:
        _fail(f"{b.name}: get_weights() has {len(weights)} entries for {spec.n_layers} layers")
    for (w, bias), a, o in zip(weights, spec.sizes[:-1], spec.sizes[1:]):
        if tuple(w.shape) != (o, a):
            _fail(f"{b.name}: weight shape {tuple(w.shape)} != {(o, a)} [out, in]")
        if bias is not None and tuple(bias.shape) != (o,):
            _fail(f"{b.name}: bias shape {tuple(bias.shape)} != {(o,)}")
        if w.requires_grad:
            _fail(f"{b.name}: get_weights() must return detached tensors")
    dst.set_weights(weights)
    for (w1, b1), (w2, b2) in zip(weights, dst.get_weights()):
        if not torch.equal(w1, w2) or not _same_bias(b1, b2):
            _fail(f"{b.name}: set_weights/get_weights round trip changed the weights")
    weights[0][0].add_(1.0)  # mutating the copy must not touch the network
    if torch.equal(weights[0][0], dst.get_weights()[0][0]) and torch.equal(
            weights[0][0], src.get_weights()[0][0]):
        _fail(f"{b.name}: get_weights() must return copies")
    bad = [(torch.zeros(2, 2, dtype=torch.float64), None)] * spec.n_layers
    try:
        dst.set_weights(bad)
    except (BackendError, ValueError, RuntimeError):
        pass
    else:
        _fail(f"{b.name}: set_weights accepted weights of the wrong shape")


def compare_to_reference(backend: Backend | str, spec: NetworkSpec, *,
                         reference: Backend | str = "custom", steps: int = 12, batch: int = 4,
                         seed: int = 0, dtype: torch.dtype = torch.float64,
                         atol: float | None = None, grad_rtol: float = GRAD_RTOL,
                         gradients: bool = True, weight_scale: float = 1.0) -> None:
    """Same ``spec``, same weights, same input on ``backend`` and ``reference``: compare spikes,
    charges and (optionally) surrogate gradients. Raises ``AssertionError`` on a mismatch."""
    b, ref = _resolve(backend), _resolve(reference)
    weights = random_weights(spec, seed=seed, scale=weight_scale, dtype=dtype)
    x = spiking_input(steps, batch, spec.sizes[0], seed=seed + 7, dtype=dtype)
    nets = []
    for be in (ref, b):
        net = be.build(spec, dtype=dtype, seed=0)
        net.set_weights(weights)
        nets.append(net)
    label = (f"{b.name} vs {ref.name} ({spec.reset}, {spec.surrogate}, beta={spec.beta:g}, "
             f"threshold={spec.threshold:g}, slope={spec.slope:g}, sizes={spec.sizes}, "
             f"T={steps}, B={batch}, {dtype})")
    if gradients:
        (s0, m0, g0), (s1, m1, g1) = (run_with_gradients(n, x, seed=seed) for n in nets)
    else:
        with torch.no_grad():
            o0, o1 = nets[0](x), nets[1](x)
        s0, m0, s1, m1 = o0.spikes, o0.membrane, o1.spikes, o1.membrane
    if dtype != torch.float64:
        _check_float32(label, s0, m0, s1, m1, ATOL32 if atol is None else atol)
        return  # gradients of diverging float32 trajectories are not comparable
    _check_float64(label, s0, m0, s1, m1, ATOL64 if atol is None else atol)
    if gradients:
        _check_gradients(label, g0, g1, grad_rtol)


def equivalence_specs(backend: Backend | str, reference: Backend | str = "custom"
                      ) -> list[NetworkSpec]:
    """Specs covering every reset × surrogate supported by both, with varied beta/threshold."""
    b, ref = _resolve(backend), _resolve(reference)
    resets = [r for r in RESETS if r in b.resets and r in ref.resets]
    surrogates = [s for s in SURROGATES if s in b.surrogates and s in ref.surrogates]
    betas = (0.9, 0.5, 1.0, 0.0)
    specs = []
    for i, (reset, surrogate) in enumerate(itertools.product(resets, surrogates)):
        specs.append(NetworkSpec(sizes=(6, 9, 3), beta=betas[i % len(betas)],
                                 threshold=0.6 + 0.1 * i, reset=reset, surrogate=surrogate,
                                 slope=2.0 + 3.0 * i))
    return specs


def check_reference_equivalence(backend: Backend | str, *, reference: Backend | str = "custom",
                                atol: float | None = None, grad_rtol: float = GRAD_RTOL
                                ) -> None:
    """Same weights ⇒ same spikes and charges as the reference (float64 and float32), and the
    same surrogate gradients (float64) for every reset × surrogate both support."""
    b = _resolve(backend)
    for i, spec in enumerate(equivalence_specs(b, reference)):
        compare_to_reference(b, spec, reference=reference, seed=i, atol=atol,
                             grad_rtol=grad_rtol,
                             gradients=Capability.SURROGATE_GRADIENTS in b.capabilities)
        compare_to_reference(b, spec, reference=reference, seed=i, dtype=torch.float32,
                             gradients=False)


def check_conv(backend: Backend | str, *, reference: Backend | str = "custom",
               atol: float | None = None, grad_rtol: float = GRAD_RTOL) -> None:
    """Capability ``conv_lif``: the convolutional network conforms
    (``check_conv_backend``: shapes, determinism,
    state reset, weights, equivalence with the reference); nothing when not declared."""
    b = _resolve(backend)
    if Capability.CONV_LIF not in b.capabilities:
        return
    check_conv_backend(b, reference=reference)


def _undeclared_builds(b: Backend) -> list[tuple[str, Callable[[], Any]]]:
    """The builders of capabilities ``b`` does not declare: each must raise BackendError."""
    from spikebench.backends.conv import ConvNetworkSpec

    calls: list[tuple[str, Callable[[], Any]]] = []
    if Capability.CONV_LIF not in b.capabilities:
        calls.append(("build_conv (capability conv_lif not declared)",
                      lambda: b.build_conv(ConvNetworkSpec(image_size=8, channels=(2,)))))
    if Capability.TEMPOTRON not in b.capabilities:
        calls.append(("build_tempotron (capability tempotron not declared)",
                      lambda: b.build_tempotron(3, 2, steps=5)))
    return calls


def check_unsupported(backend: Backend | str) -> None:
    """``check_supported`` and ``build`` raise ``BackendError`` for an unsupported spec, and
    so does the builder of every capability the backend does not declare."""
    b = _resolve(backend)
    spec = NetworkSpec(sizes=(3, 2), neuron="no-such-neuron")
    for what, call in (("check_supported", lambda: b.check_supported(spec)),
                       ("build", lambda: b.build(spec)), *_undeclared_builds(b)):
        try:
            call()
        except BackendError:
            continue
        except Exception as exc:
            _fail(f"{b.name}: {what} raised {type(exc).__name__} instead of BackendError")
        _fail(f"{b.name}: {what} did not raise BackendError")
    missing = [r for r in RESETS if r not in b.resets]
    if missing:
        try:
            b.check_supported(_supported_spec(b, reset=missing[0]))
        except BackendError:
            pass
        else:
            _fail(f"{b.name}: check_supported accepted reset {missing[0]!r} it does not declare")


_CHECKS: tuple[tuple[str, Callable[..., None], bool], ...] = (
    # (name, function, takes reference/tolerance keywords)
    ("declarations", check_declarations, False),
    ("output_shapes", check_output_shapes, False),
    ("determinism", check_determinism, False),
    ("state_reset", check_state_reset, False),
    ("gradients", check_gradients, False),
    ("devices", check_devices, False),
    ("weights_roundtrip", check_weights_roundtrip, False),
    ("reference_equivalence", check_reference_equivalence, True),
    ("tempotron", check_tempotron, False),
    ("conv", check_conv, True),
    ("unsupported", check_unsupported, False),
)


def backend_checks(backend: Backend | str, *, reference: Backend | str = "custom",
                   atol: float | None = None, grad_rtol: float = GRAD_RTOL
                   ) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(name, check)`` pairs, each ``check()`` raising ``AssertionError`` on failure."""
    for name, fn, takes_ref in _CHECKS:
        if takes_ref:
            yield name, functools.partial(fn, backend, reference=reference, atol=atol,
                                          grad_rtol=grad_rtol)
        else:
            yield name, functools.partial(fn, backend)


def check_backend(backend: Backend | str, *, reference: Backend | str = "custom",
                  atol: float | None = None, grad_rtol: float = GRAD_RTOL,
                  skip: Sequence[str] = ()) -> None:
    """Prove a backend keeps the contract: run every check of ``backend_checks``.

    The same spec and weights must give the same spikes, charges and (for
    ``surrogate_gradients``) gradients as the reference engine, for every declared capability,
    reset and surrogate; unsupported specs must be refused with ``BackendError``.

    Parameters
    ----------
    backend : Backend or str
        An instance or a registered name.
    reference : Backend or str, default "custom"
        The engine whose numbers are the reference.
    atol : float, optional
        Absolute tolerance on potentials (default: the kit's float32 tolerance).
    grad_rtol : float
        Relative tolerance on gradients.
    skip : sequence of str, default ()
        Names of checks to leave out (say why in your test).

    Raises
    ------
    AssertionError
        Listing every failed check.

    Examples
    --------
    >>> from spikebench.backends.conformance import check_backend
    >>> check_backend("snntorch")  # passes: returns None
    """
    b = _resolve(backend)
    failures = []
    for name, check in backend_checks(b, reference=reference, atol=atol, grad_rtol=grad_rtol):
        if name in skip:
            continue
        try:
            check()
        except AssertionError as exc:
            failures.append(f"- {name}: {exc}")
    if failures:
        raise AssertionError(f"backend {b.name!r} fails {len(failures)} conformance check(s):\n"
                             + "\n".join(failures))
