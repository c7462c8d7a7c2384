"""A reader quotes a network's cost under NeuroBench's names: spikebench's numbers must be the
ones NeuroBench 2.3 itself reports for the same network, weights and input.

A surrogate-gradient network is trained on the snnTorch backend, its test input encoded as the
model encodes it, and NeuroBench's Benchmark runs the same network (an snnTorch module stepped
over time, as NeuroBench's SNNTorchModel expects) on it: Footprint, ConnectionSparsity,
ActivationSparsity and SynapticOperations (Effective_MACs, Effective_ACs, Dense) are compared
with spikebench's columns. Then a tiny study writes those columns, and its report shows them
under NeuroBench's names.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from spec_text import tiny_spec
from torch import nn

from spikebench.harness.encoding import encode
from spikebench.harness.network_metrics import COLUMNS, NEUROBENCH_NAMES, model_metrics
from spikebench.harness.rules import FitContext, get_rule
from spikebench.harness.rules.conformance import held_out_problem
from spikebench.harness.space import default_values

neurobench = pytest.importorskip("neurobench", reason="NeuroBench is not installed")


class Stepped(nn.Module):
    """The backend's snnTorch network run one time step per call, as NeuroBench's
    SNNTorchModel drives a network: ``forward(x[t]) -> (spikes, membrane)``, ``reset()``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.layers, self.neurons = net.layers, net.neurons
        self.reset()

    def reset(self) -> None:
        self.mems = [lif.reset_mem() for lif in self.neurons]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = x
        for i, (fc, lif) in enumerate(zip(self.layers, self.neurons)):
            s, self.mems[i] = lif(fc(s), self.mems[i])
        return s, self.mems[-1]


def _fitted(encoding: str):
    from spikebench.backends import get_backend

    train, val, test = held_out_problem(0)
    rule = get_rule("surrogate")
    params = default_values(rule.search_space()) | {
        "encoding": encoding, "epochs": 2, "hidden": 16, "steps": 6, "reset": "zero"}
    ctx = FitContext.for_validation(val, "pr_auc", get_backend("snntorch"), seed=0)
    return rule.fit(train, val, rule.parse_params(params), ctx), test


def _neurobench(model, test) -> dict:
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
    from neurobench.models import SNNTorchModel

    # the input the model itself sees (SurrogateModel encodes with a generator seeded 0)
    x = torch.as_tensor(test.X, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    xb = encode(x, model.params.encoding, model.train_steps, gain=model.params.gain,
                generator=gen)
    data = torch.utils.data.TensorDataset(xb.transpose(0, 1).contiguous(),
                                          torch.as_tensor(test.y))
    loader = torch.utils.data.DataLoader(data, batch_size=len(data))
    net = Stepped(model.net)
    bench = Benchmark(SNNTorchModel(net), loader, [], [],
                      [[Footprint, ConnectionSparsity],
                       [ActivationSparsity, SynapticOperations]])
    out = bench.run(quiet=True)
    buffers = sum(b.numel() * b.element_size() for b in net.buffers())
    return {**out, "buffer_bytes": buffers}


@pytest.mark.parametrize("encoding", ["direct", "rate"])
def test_neurobench_reports_spikebenchs_numbers(encoding):
    model, test = _fitted(encoding)
    activity = model.activity(test.X)
    ours = {**activity, **model_metrics(model, activity)}
    nb = _neurobench(model, test)
    ops = nb["SynapticOperations"]
    assert ops["Effective_MACs"] == pytest.approx(ours["macs_per_sample"], rel=1e-12)
    assert ops["Effective_ACs"] == pytest.approx(ours["acs_per_sample"], rel=1e-12)
    assert ops["Dense"] == pytest.approx(ours["dense_synops_per_sample"], rel=1e-12)
    assert (ops["Effective_MACs"] > 0) == (encoding == "direct")
    assert nb["ActivationSparsity"] == pytest.approx(ours["activation_sparsity"], abs=1e-12)
    assert 0 < ours["activation_sparsity"] < 1
    assert nb["ConnectionSparsity"] == round(ours["connection_sparsity"], 4)
    # NeuroBench adds the framework's buffers (snnTorch's beta, threshold, ... per layer)
    assert nb["Footprint"] == ours["footprint_bytes"] + nb["buffer_bytes"]
    assert ours["footprint_bytes"] == 4 * (8 * 16 + 16 + 16 * 2 + 2)


def test_a_study_writes_the_columns_and_the_report_names_them(tmp_path, feature_table):
    from spikebench.harness.study import run_study
    from spikebench.reports import build_report

    spec = tmp_path / "tiny.toml"
    spec.write_text(tiny_spec(feature_table, split={"repeats": 1}, search={"trials": 1},
                              space_surrogate={"epochs": 2, "hidden": 8, "steps": 4,
                                               "encoding": "rate"}))
    out = run_study(spec, tmp_path / "run", progress=False)
    rows = pd.read_parquet(out / "results.parquet").set_index("rule")
    for col in COLUMNS:
        assert rows.loc["surrogate", col] > 0 or col == "connection_sparsity", col
        assert pd.isna(rows.loc["logistic_regression", col]), col  # not a LIF network
    report = build_report(out, n_bootstrap=10, figures=False)
    text = (report / "report.md").read_text()
    for name in NEUROBENCH_NAMES.values():
        assert name in text, name
    table = pd.read_csv(report / "tables" / "main.csv").set_index("rule")
    assert table.loc["surrogate", "dense_synops_per_sample_mean"] == pytest.approx(
        rows.loc["surrogate", "dense_synops_per_sample"])
