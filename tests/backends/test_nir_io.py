"""NIR export/import: file round trip, and a model moved between backends predicts the same."""

from __future__ import annotations

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")
pytest.importorskip("h5py")

from spikebench.backends import NetworkSpec, get_backend  # noqa: E402
from spikebench.backends.conformance import random_weights, spiking_input  # noqa: E402
from spikebench.backends.nir_io import DT, from_nir, read_nir, to_nir, write_nir  # noqa: E402
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
