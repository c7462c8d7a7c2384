"""NIR export/import: file round trip, a model moved between backends predicts the same, only
reset-to-zero networks are faithful, and snnTorch / SpikingJelly run an exported graph spike for
spike (Norse 1.1 does not: it ignores ``r``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")
pytest.importorskip("h5py")

from spikebench.backends import NetworkSpec, get_backend  # noqa: E402
from spikebench.backends.conformance import random_weights, spiking_input  # noqa: E402
from spikebench.backends.nir_io import (  # noqa: E402
    DT,
    approximations,
    from_nir,
    importer_problem,
    membrane_from_current,
    read_nir,
    run_imported,
    to_nir,
    write_nir,
)
from spikebench.errors import BackendError  # noqa: E402


@pytest.mark.parametrize("reset,beta,bias", [("subtract", 0.9, True), ("zero", 1.0, False),
                                             ("none", 0.0, True), ("zero", 0.37, True)])
def test_file_round_trip_restores_spec_and_weights(tmp_path, reset, beta, bias):
    spec = NetworkSpec(sizes=(6, 8, 3), beta=beta, threshold=0.7, reset=reset,
                       surrogate="arctan", slope=3.0, bias=bias)
    weights = random_weights(spec, seed=1)
    write_nir(tmp_path / "net.nir", spec, weights)
    spec2, weights2 = read_nir(tmp_path / "net.nir")
    assert spec2 == spec
    for (w, b), (w2, b2) in zip(weights, weights2):
        torch.testing.assert_close(w2, w)
        assert (b is None) == (b2 is None)


def test_lif_node_follows_the_snntorch_spikingjelly_convention():
    spec = NetworkSpec(sizes=(2, 3), beta=0.75, threshold=1.5)
    node = to_nir(spec, random_weights(spec)).nodes["lif_0"]
    assert isinstance(node, nir.LIF)
    np.testing.assert_allclose(node.tau, DT / 0.25)
    np.testing.assert_allclose(node.r, 4.0)  # tau / dt
    np.testing.assert_allclose(node.v_threshold, 1.5)
    np.testing.assert_allclose(node.v_leak, 0.0)


@pytest.mark.parametrize("src,dst", [("custom", "snntorch"), ("snntorch", "spikingjelly"),
                                     ("spikingjelly", "custom")])
def test_model_exported_from_one_backend_predicts_the_same_on_another(tmp_path, src, dst):
    spec = NetworkSpec(sizes=(6, 10, 2), beta=0.85, threshold=0.8)
    try:
        a, b = get_backend(src), get_backend(dst)
    except BackendError as exc:
        pytest.skip(str(exc))
    net = a.build(spec, seed=0)
    net.set_weights(random_weights(spec, seed=2, dtype=torch.float32))
    write_nir(tmp_path / "m.nir", spec, net.get_weights())
    spec2, weights2 = read_nir(tmp_path / "m.nir")
    other = b.build(spec2)
    other.set_weights(weights2)
    x = spiking_input(12, 16, 6, dtype=torch.float32, seed=3)
    with torch.no_grad():
        p1 = net(x).spikes.sum(0).argmax(-1)
        p2 = other(x).spikes.sum(0).argmax(-1)
    assert torch.equal(p1, p2)


def test_imports_foreign_lif_with_resistance_scaling():
    """A graph as another tool might write it: R != tau/dt scales the input weights."""
    w = np.array([[1.0, -2.0]])
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(input_type=np.array([2])),
               "fc": nir.Linear(weight=w),
               "lif": nir.LIF(tau=np.array([DT * 10]), r=np.array([5.0]), v_leak=np.array([0.0]),
                              v_threshold=np.array([1.0]), v_reset=np.array([0.0])),
               "out": nir.Output(output_type=np.array([1]))},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")])
    spec, weights = from_nir(graph)
    assert spec.reset == "zero" and abs(spec.beta - 0.9) < 1e-12 and not spec.bias
    torch.testing.assert_close(weights[0][0], torch.tensor(w) * 0.5)


def test_rejects_what_a_spec_cannot_hold():
    graph = nir.NIRGraph(
        nodes={"in": nir.Input(input_type=np.array([1])),
               "fc": nir.Linear(weight=np.ones((2, 1))),
               "lif": nir.LIF(tau=np.array([1e-3, 2e-3]), r=np.array([10.0, 20.0]),
                              v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2)),
               "out": nir.Output(output_type=np.array([2]))},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")])
    with pytest.raises(BackendError, match="tau"):
        from_nir(graph)


# -- faithfulness, read-out and the foreign importers ---------------------------------------

def test_only_reset_to_zero_is_faithful():
    assert approximations(NetworkSpec(sizes=(2, 2), reset="zero")) == []
    for reset in ("subtract", "none"):
        (reason,) = approximations(NetworkSpec(sizes=(2, 2), reset=reset))
        assert f"reset {reset!r}" in reason and "resets the membrane to zero" in reason


@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
def test_membrane_is_rebuilt_exactly_from_current_and_spikes(reset):
    spec = NetworkSpec(sizes=(6, 10, 2), beta=0.85, threshold=0.8, reset=reset)
    net = get_backend("custom").build(spec, dtype=torch.float64)
    net.set_weights(random_weights(spec, seed=2))
    x = spiking_input(12, 16, 6, seed=3)
    with torch.no_grad():
        out = net(x)
        current = torch.stack([net.layers[-1](s) for s in _hidden_spikes(net, x)])
    h = membrane_from_current(current, out.spikes, beta=spec.beta, threshold=spec.threshold,
                              reset=reset)
    torch.testing.assert_close(h, out.membrane)


def _hidden_spikes(net, x):
    """Spikes of the layer below the output, per step (a one-hidden-layer custom network)."""
    spec = dataclasses.replace(net.spec, sizes=net.spec.sizes[:-1])
    lower = get_backend("custom").build(spec, dtype=torch.float64)
    lower.set_weights(net.get_weights()[:-1])
    return lower(x).spikes


@pytest.mark.parametrize("importer", ["snntorch", "spikingjelly"])
@pytest.mark.parametrize("beta,bias", [(0.85, True), (0.5, False), (0.97, True)])
def test_reset_to_zero_graph_runs_spike_for_spike_in_snntorch_and_spikingjelly(importer, beta,
                                                                                bias):
    """Tolerance: output spikes equal exactly; the membrane rebuilt from the imported graph's
    current equals spikebench's to float32 rounding (1e-5)."""
    pytest.importorskip("nirtorch")
    pytest.importorskip({"snntorch": "snntorch",
                         "spikingjelly": "spikingjelly.activation_based.nir_exchange"}[importer])
    spec = NetworkSpec(sizes=(6, 12, 8, 2), beta=beta, threshold=0.8, reset="zero", bias=bias)
    net = get_backend("custom").build(spec)
    net.set_weights(random_weights(spec, seed=5, dtype=torch.float32))
    x = spiking_input(15, 32, 6, dtype=torch.float32, seed=6)
    with torch.no_grad():
        ref = net(x)
    spikes, current = run_imported(to_nir(spec, net.get_weights()), x, importer)
    assert torch.equal(spikes, ref.spikes) and float(ref.spikes.sum()) > 0
    h = membrane_from_current(current, spikes, beta=beta, threshold=0.8, reset="zero")
    torch.testing.assert_close(h, ref.membrane, rtol=0, atol=1e-5)


def test_snntorch_cannot_import_an_if_layer():
    spec = NetworkSpec(sizes=(2, 2), beta=1.0, reset="zero")
    assert "nir.IF" in importer_problem(spec, "snntorch")
    assert importer_problem(spec, "spikingjelly") == ""


def test_norse_importer_is_flagged_because_it_ignores_r():
    """Norse 1.1 reads a nir.LIF as if r = 1: our graphs (r = tau/dt) run wrong there, so
    spikebench marks Norse unsupported instead of letting it produce nonsense silently."""
    spec = NetworkSpec(sizes=(6, 10, 2), beta=0.85, threshold=0.8, reset="zero")
    assert importer_problem(spec, "norse").startswith("not supported")
    with pytest.raises(BackendError, match="not supported"):
        run_imported(to_nir(spec, random_weights(spec)), torch.zeros(2, 1, 6), "norse")
    norse = pytest.importorskip("norse.torch")
    pytest.importorskip("nirtorch")
    net = get_backend("custom").build(spec)
    net.set_weights(random_weights(spec, seed=2, dtype=torch.float32))
    x = spiking_input(12, 16, 6, dtype=torch.float32, seed=3)
    module = norse.from_nir(to_nir(spec, net.get_weights()), ignore_warnings=True, dt=DT)
    state, spikes = None, []
    with torch.no_grad():
        for t in range(x.shape[0]):
            out, state = module(x[t], state)
            spikes.append(out)
        ref = net(x).spikes
    assert float(ref.sum()) > 0
    assert not torch.equal(torch.stack(spikes), ref)  # if this fails, Norse fixed r: revisit
