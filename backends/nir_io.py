"""Export/import a feed-forward LIF network to/from NIR (the Neuromorphic Intermediate
Representation, ``nir`` package).

NIR describes continuous-time neurons; a discrete-time network maps onto them through a time
step ``dt``. This module uses the convention of snnTorch's ``export_to_nir``/``import_from_nir``
and SpikingJelly's ``nir_exchange`` (both ``dt = 1e-4``; see those sources), so files written
here import there and vice versa::

    nir.LIF:  τ dv/dt = (v_leak - v) + R I,   forward Euler with step dt:
              v[t] = (1 - dt/τ) v[t-1] + (dt/τ) R I[t]
    with      τ = dt / (1 - β),  R = τ / dt = 1 / (1 - β),  v_leak = 0,  v_reset = 0
    gives     v[t] = β v[t-1] + I[t]                      (the pinned charge equation)

``β = 1`` (no leak) is a ``nir.IF`` with ``R = 1/dt`` (SpikingJelly's IF convention), since
``τ`` would be infinite. Each layer is ``nir.Affine`` (``nir.Linear`` without bias) followed by
the neuron, chained ``input → affine_0 → lif_0 → ... → output``.

NIR's LIF/IF resets the membrane *to* ``v_reset`` (spikebench's ``"zero"`` reset with
``v_reset = 0``); it has no subtractive or absent reset. The spikebench reset mode is therefore
also stored in each neuron node's ``metadata["spikebench_reset"]`` and the surrogate settings
(training-only, not part of NIR) in the graph's ``metadata``; other tools ignore them and will
run ``"subtract"``/``"none"`` networks with a reset to zero. Importing a graph without that
metadata (e.g. one exported by snnTorch or SpikingJelly) gives ``reset="zero"``.

On import a LIF whose ``R`` is not ``τ/dt`` is accepted by scaling the weights and bias of the
layer feeding it by ``R dt / τ`` (what snnTorch's importer does); ``v_leak`` and ``v_reset``
must be 0 and ``τ``, ``v_threshold`` uniform across the layer.

**Faithfulness.** Only ``reset="zero"`` networks mean the same thing in NIR as in spikebench
(:func:`approximations` lists why any other is not); :mod:`spikebench.harness.export` refuses
the others unless asked to approximate. The graph's one output is the last layer's spikes; a
membrane read-out ``(1/T) Σ_t H[t]`` is rebuilt exactly from two graph-observable signals, the
output layer's input current ``I[t]`` (the output of the last ``affine_*`` node) and its
spikes, by :func:`membrane_from_current`. :func:`run_imported` runs a graph through snnTorch's
or SpikingJelly's importer and returns both (Norse 1.1 is not supported: see
:data:`IMPORTERS`).
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import torch

from spikebench.backends.base import NetworkSpec, Reset, Surrogate
from spikebench.errors import BackendError

#: Time step of the discrete ↔ continuous mapping (snnTorch's and SpikingJelly's default).
DT = 1e-4

Weights = list[tuple[torch.Tensor, torch.Tensor | None]]


#: Resets NIR's LIF/IF express exactly (it resets the membrane *to* ``v_reset = 0``).
NIR_RESETS = frozenset({"zero"})

#: NIR importers spikebench knows, and how each treats the graphs written here (checked by
#: ``tests/backends/test_nir_io.py``).
IMPORTERS: dict[str, str] = {
    "snntorch": "exact for 0 <= beta < 1 (snntorch.import_from_nir, needs nirtorch); "
                "beta = 1 (nir.IF) is not importable (it asserts r == 1 and uses beta 0.9)",
    "spikingjelly": "exact for 0 < beta <= 1 (spikingjelly.activation_based.nir_exchange, "
                    "needs nirtorch); fires at H >= threshold where spikebench fires at "
                    "H > threshold (differs only on exact ties)",
    "norse": "not supported: Norse 1.1's from_nir ignores the LIF's r (only logs a warning) and "
             "defaults to dt = 1e-3, so the input current is scaled by (1 - beta) and the "
             "network is silent or wrong",
}


def approximations(spec: NetworkSpec) -> list[str]:
    """Why NIR cannot represent ``spec`` exactly (empty list: the export is faithful).

    NIR's LIF/IF resets to ``v_reset``; a subtractive or absent reset has no NIR equivalent, so
    every NIR tool would run such a network with a reset to zero, i.e. different dynamics.
    """
    reasons = []
    if spec.reset not in NIR_RESETS:
        reasons.append(f"reset {spec.reset!r}: NIR's LIF/IF resets the membrane to zero, so "
                       "snnTorch, SpikingJelly and every other NIR tool run the graph with "
                       "reset 'zero' (different dynamics)")
    if spec.neuron != "lif":
        reasons.append(f"neuron {spec.neuron!r} has no NIR equivalent")
    return reasons


def importer_problem(spec: NetworkSpec, importer: str) -> str:
    """Why ``importer`` cannot run ``spec``'s graph as NIR means it ("" when it can)."""
    if importer == "snntorch" and spec.beta >= 1.0:
        return "snnTorch's importer cannot read a nir.IF (beta = 1): " + IMPORTERS["snntorch"]
    if importer == "spikingjelly" and spec.beta <= 0.0:
        return "SpikingJelly's importer needs tau/dt > 1 (beta > 0)"
    if importer == "norse":
        return IMPORTERS["norse"]
    if importer not in IMPORTERS:
        return f"unknown importer {importer!r} (known: {', '.join(IMPORTERS)})"
    return ""


def membrane_from_current(current: torch.Tensor, spikes: torch.Tensor, *, beta: float,
                          threshold: float, reset: str = "zero") -> torch.Tensor:
    """The charge ``H[t]`` (membrane before reset) of a LIF layer from its input current and
    spikes, both ``[T, ...]``; the pinned equations of :mod:`spikebench.backends.base`::

        H[t] = β U[t-1] + I[t],   U[-1] = 0
        U[t] = H[t] (1 - S[t])    (zero)  |  H[t] - θ S[t]  (subtract)  |  H[t]  (none)

    This is how a membrane read-out is computed from a NIR graph whose output is spikes: ``I``
    is the output of the last ``affine_*`` node, ``S`` the graph output.
    """
    if reset not in ("zero", "subtract", "none"):
        raise BackendError(f"membrane_from_current: unknown reset {reset!r}")
    u = torch.zeros_like(current[0])
    out = []
    for t in range(current.shape[0]):
        h = beta * u + current[t]
        out.append(h)
        s = spikes[t]
        u = h * (1 - s) if reset == "zero" else h - threshold * s if reset == "subtract" else h
    return torch.stack(out)


def readout_logits(spikes: torch.Tensor, membrane: torch.Tensor, logits: str) -> torch.Tensor:
    """``[B, C]`` class scores from ``[T, B, C]`` output spikes / charge: ``"spike_count"`` is
    ``Σ_t S[t]``, ``"mean_membrane"`` is ``(1/T) Σ_t H[t]`` (what the surrogate rule's
    ``count`` and ``membrane``/``tet`` losses read)."""
    if logits == "spike_count":
        return spikes.sum(0)
    if logits == "mean_membrane":
        return membrane.mean(0)
    raise BackendError(f"unknown read-out {logits!r}; expected 'spike_count' or 'mean_membrane'")


@contextlib.contextmanager
def _quiet():
    """Silence the importers' chatter: snnTorch prints "replace rnn subgraph ...", SpikingJelly
    logs (loguru) each import and its first operator dispatch, and tracing their modules makes
    torch log "Triton not available" (a warning of ``torch._library.triton`` on a machine
    without Triton, which the export does not use)."""
    import logging

    logger: Any = None  # loguru's logger (SpikingJelly's dependency), when installed
    with contextlib.suppress(ImportError):
        from loguru import logger
    if logger is not None:
        logger.disable("spikingjelly")
    torch_logs = [logging.getLogger(name) for name in TORCH_CHATTER]
    levels = [log.level for log in torch_logs]
    for log in torch_logs:
        log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        if logger is not None:
            logger.enable("spikingjelly")
        for log, level in zip(torch_logs, levels, strict=True):
            log.setLevel(level)


#: torch loggers whose warnings an export's user cannot act on.
TORCH_CHATTER = ("torch._library.triton", "torch._inductor", "torch.utils._sympy")


def _import_module(graph, importer: str):
    """The importer's ``torch.fx`` module for ``graph``."""
    if importer == "snntorch":
        from snntorch.import_nir import import_from_nir

        return import_from_nir(graph)
    if importer == "spikingjelly":
        from spikingjelly.activation_based.nir_exchange.from_nir import import_from_nir

        dt = float(np.asarray((graph.metadata or {}).get("spikebench_dt", DT)))
        return import_from_nir(graph, dt=dt, step_mode="s")
    raise BackendError(f"run_imported: importer {importer!r} is not supported "
                       f"({IMPORTERS.get(importer, 'unknown')})")


def run_imported(graph, x: torch.Tensor, importer: str
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``graph`` on ``x`` ``[T, B, F]`` with ``importer`` ("snntorch" | "spikingjelly"),
    from a fresh state, one step at a time. Returns the output spikes and the output layer's
    input current (captured with a forward hook on the last ``affine_*`` module), both
    ``[T, B, O]`` — the two signals :func:`membrane_from_current` needs.

    Raises :class:`BackendError` if the importer is not installed or rejects the graph.
    """
    with _quiet():
        return _run(graph, x, importer)


def _run(graph, x: torch.Tensor, importer: str) -> tuple[torch.Tensor, torch.Tensor]:
    try:
        module = _import_module(graph, importer)
    except ImportError as exc:
        raise BackendError(f"run_imported: {importer} importer unavailable ({exc}); "
                           "pip install 'spikebench[nir]' and the framework") from exc
    except (AssertionError, ValueError, NotImplementedError) as exc:
        raise BackendError(f"run_imported: {importer} rejects the graph ({exc})") from exc
    last = max((k for k in graph.nodes if k.startswith("affine_")),
               key=lambda k: int(k.split("_")[1]))
    currents: list[torch.Tensor] = []
    hook = module.get_submodule(last).register_forward_hook(
        lambda _m, _i, out: currents.append(out.detach()))
    spikes, state = [], None
    try:
        with torch.no_grad():
            for t in range(x.shape[0]):
                out, state = module(x[t], state)
                spikes.append(out.detach())
    finally:
        hook.remove()
    return torch.stack(spikes), torch.stack(currents)


def to_nir(spec: NetworkSpec, weights: Sequence[tuple[torch.Tensor, torch.Tensor | None]], *,
           dt: float = DT, metadata: dict[str, Any] | None = None):
    """A ``nir.NIRGraph`` for ``spec`` with layer weights ``[(W [out, in], b [out] | None)]``.

    ``metadata`` (str / number / array values) is merged into the graph's metadata.
    """
    import nir

    if len(weights) != spec.n_layers:
        raise BackendError(f"to_nir: {len(weights)} weight pairs for {spec.n_layers} layers")
    if spec.neuron != "lif":
        raise BackendError(f"to_nir: only the 'lif' neuron is exportable, not {spec.neuron!r}")
    nodes: dict[str, Any] = {"input": nir.Input(input_type=np.array([spec.sizes[0]]))}
    edges: list[tuple[str, str]] = []
    prev = "input"
    for i, ((w, b), n_in, n_out) in enumerate(zip(weights, spec.sizes[:-1], spec.sizes[1:])):
        w_np = w.detach().cpu().double().numpy()
        if w_np.shape != (n_out, n_in):
            raise BackendError(f"to_nir: layer {i} weight shape {w_np.shape} != {(n_out, n_in)}")
        if b is None:
            nodes[f"affine_{i}"] = nir.Linear(weight=w_np)
        else:
            nodes[f"affine_{i}"] = nir.Affine(weight=w_np, bias=b.detach().cpu().double().numpy())
        nodes[f"lif_{i}"] = _neuron_node(spec, n_out, dt)
        edges += [(prev, f"affine_{i}"), (f"affine_{i}", f"lif_{i}")]
        prev = f"lif_{i}"
    nodes["output"] = nir.Output(output_type=np.array([spec.sizes[-1]]))
    edges.append((prev, "output"))
    meta = {"spikebench_surrogate": spec.surrogate, "spikebench_slope": float(spec.slope),
            "spikebench_reset": spec.reset, "spikebench_dt": float(dt),
            "spikebench_beta": float(spec.beta)}
    meta.update(metadata or {})
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=meta)


def _neuron_node(spec: NetworkSpec, n: int, dt: float):
    import nir

    ones = np.ones(n)
    meta = {"spikebench_reset": spec.reset}
    if spec.beta >= 1.0:
        return nir.IF(r=ones / dt, v_threshold=ones * spec.threshold, v_reset=ones * 0.0,
                      metadata=meta)
    tau = dt / (1.0 - spec.beta)
    return nir.LIF(tau=ones * tau, r=ones * (tau / dt), v_leak=ones * 0.0,
                   v_threshold=ones * spec.threshold, v_reset=ones * 0.0, metadata=meta)


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.shape == ():
        return _text(value.item())
    return str(value)


def _uniform(values: Any, what: str) -> float:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.size == 0 or not np.allclose(arr, arr[0], rtol=1e-12, atol=0):
        raise BackendError(f"from_nir: {what} must be the same for every neuron of a layer")
    return float(arr[0])


def _chain(graph) -> list[str]:
    """Node names from the input to the output, requiring a simple chain."""
    succ: dict[str, list[str]] = {}
    for a, b in graph.edges:
        succ.setdefault(a, []).append(b)
    import nir

    starts = [k for k, n in graph.nodes.items() if isinstance(n, nir.Input)]
    if len(starts) != 1:
        raise BackendError(f"from_nir: expected one Input node, found {len(starts)}")
    order, node = [starts[0]], starts[0]
    while succ.get(node):
        if len(succ[node]) != 1:
            raise BackendError(f"from_nir: node {node!r} fans out; only feed-forward chains are "
                               "supported")
        node = succ[node][0]
        if node in order:
            raise BackendError("from_nir: recurrent graphs are not supported")
        order.append(node)
    return order


def _layer(lin: Any, neuron: Any, names: list[str], dt: float
           ) -> tuple[tuple[torch.Tensor, torch.Tensor | None], float, float, str]:
    """``((W, b), beta, threshold, reset)`` of one ``Affine|Linear → LIF|IF`` pair, with ``W``
    and ``b`` scaled by ``R dt / τ`` when ``R != τ/dt``."""
    import nir

    if not isinstance(lin, nir.Affine | nir.Linear):
        raise BackendError(f"from_nir: node {names[0]!r} is {type(lin).__name__}, "
                           "expected Affine or Linear")
    w = torch.as_tensor(np.asarray(lin.weight, dtype=np.float64))
    b = (torch.as_tensor(np.asarray(lin.bias, dtype=np.float64))
         if isinstance(lin, nir.Affine) else None)
    if isinstance(neuron, nir.LIF):
        tau = _uniform(neuron.tau, "LIF tau")
        r = _uniform(neuron.r, "LIF r")
        if _uniform(neuron.v_leak, "LIF v_leak") != 0.0:
            raise BackendError("from_nir: LIF v_leak must be 0")
        beta = 1.0 - dt / tau
        scale = r * dt / tau
    elif isinstance(neuron, nir.IF):
        beta, scale = 1.0, _uniform(neuron.r, "IF r") * dt
    else:
        raise BackendError(f"from_nir: node {names[1]!r} is {type(neuron).__name__}, "
                           "expected LIF or IF")
    if not 0.0 <= beta <= 1.0 + 1e-12:
        raise BackendError(f"from_nir: tau/dt gives beta={beta:g} outside [0, 1] (dt={dt:g})")
    v_reset = getattr(neuron, "v_reset", None)
    if v_reset is not None and _uniform(v_reset, "v_reset") != 0.0:
        raise BackendError("from_nir: v_reset must be 0 (reset to zero)")
    if not math.isclose(scale, 1.0, rel_tol=1e-12):
        w = w * scale
        b = None if b is None else b * scale
    node_meta = getattr(neuron, "metadata", None) or {}
    reset = _text(node_meta.get("spikebench_reset", "zero"))
    return (w, b), min(beta, 1.0), _uniform(neuron.v_threshold, "v_threshold"), reset


def from_nir(graph, *, dt: float | None = None) -> tuple[NetworkSpec, Weights]:
    """``(NetworkSpec, weights)`` of a NIR graph ``input → (Affine|Linear → LIF|IF)* → output``.

    ``dt`` defaults to the graph's ``spikebench_dt`` metadata, else :data:`DT`.
    """
    import nir

    meta = dict(getattr(graph, "metadata", None) or {})
    if dt is None:
        dt = float(np.asarray(meta.get("spikebench_dt", DT)))
    order = _chain(graph)
    nodes = [graph.nodes[k] for k in order[1:]]
    if nodes and isinstance(nodes[-1], nir.Output):
        nodes = nodes[:-1]
    if len(nodes) % 2 or not nodes:
        raise BackendError("from_nir: expected pairs of (Affine|Linear, LIF|IF) between input "
                           f"and output, got {[type(n).__name__ for n in nodes]}")
    weights: Weights = []
    sizes: list[int] = []
    betas, thresholds, resets = [], [], []
    for i in range(0, len(nodes), 2):
        (w, b), beta, threshold, reset = _layer(nodes[i], nodes[i + 1], order[i + 1:i + 3], dt)
        resets.append(reset)
        betas.append(beta)
        thresholds.append(threshold)
        if not sizes:
            sizes.append(int(w.shape[1]))
        sizes.append(int(w.shape[0]))
        weights.append((w, b))
    any_bias = any(b is not None for _, b in weights)
    for what, vals in (("beta", betas), ("threshold", thresholds), ("reset", resets)):
        first = vals[0]
        if any(v != first and not (isinstance(v, float) and isinstance(first, float)
                                   and math.isclose(v, first, rel_tol=1e-9))
               for v in vals):
            raise BackendError(f"from_nir: {what} differs between layers ({vals}); a NetworkSpec "
                               "has one value for the whole network")
    beta = float(np.asarray(meta["spikebench_beta"])) if "spikebench_beta" in meta and \
        math.isclose(float(np.asarray(meta["spikebench_beta"])), betas[0], abs_tol=1e-9) \
        else betas[0]
    if any_bias:
        weights = [(w, b if b is not None else torch.zeros(w.shape[0], dtype=w.dtype))
                   for w, b in weights]
    # reset and surrogate are text from the graph's metadata: NetworkSpec checks them and
    # names a bad value (BackendError)
    spec = NetworkSpec(
        sizes=tuple(sizes), beta=beta, threshold=thresholds[0], reset=cast(Reset, resets[0]),
        surrogate=cast(Surrogate, _text(meta.get("spikebench_surrogate", "fast_sigmoid"))),
        slope=float(np.asarray(meta.get("spikebench_slope", 25.0))), bias=any_bias)
    return spec, weights


def write_nir(path, spec: NetworkSpec, weights: Sequence[tuple[torch.Tensor, torch.Tensor | None]]
              ) -> None:
    """``nir.write(path, to_nir(spec, weights))``."""
    import nir

    nir.write(str(path), to_nir(spec, weights))


def read_nir(path) -> tuple[NetworkSpec, Weights]:
    """``from_nir(nir.read(path))``."""
    import nir

    return from_nir(nir.read(str(path)))
