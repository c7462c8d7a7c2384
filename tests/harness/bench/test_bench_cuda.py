"""The CUDA code paths a machine without a GPU can test: a CUDA device asked for on the command
line or in a spec is refused with one line (exit 2, nothing written); ``auto`` and the bench's
device helpers pick CUDA when torch reports it (``torch.cuda.is_available`` monkeypatched);
dtypes are what the network was built with; ``bench --gpu-check`` refuses without CUDA and
writes one JSON file with every part's result or error. Tests marked ``cuda`` need a real GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from spec_text import tiny_spec

from spikebench.cli import main
from spikebench.errors import SpecError
from spikebench.harness.bench import gpu
from spikebench.harness.plan import cuda_problem, resolve_device

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch reports one CUDA device (nothing may actually run on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def _one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikebench: error:") and "\n" not in err, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("extra", [[], ["--conv"]])
def test_bench_device_cuda_is_refused_without_a_gpu(no_cuda, tmp_path, capsys, extra):
    out = tmp_path / "bench.json"
    code = main(["bench", *extra, "--device", "cuda", "--repeats", "1", "--json", str(out)])
    assert code == 2
    _one_line(capsys, "--device 'cuda'", "no CUDA device", "--device cpu")
    assert not out.exists()


def _spec(tmp_path: Path, table: Path, device: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(tiny_spec(table, study={"device": device}))
    return path


def test_spec_device_cuda_is_refused_by_study_run(no_cuda, tmp_path, feature_table, capsys):
    out = tmp_path / "run"
    code = main(["study", "run", str(_spec(tmp_path, feature_table, "cuda")), "--out", str(out)])
    assert code == 2
    _one_line(capsys, "[study].device = 'cuda'", "no CUDA device", "'auto' or 'cpu'")
    assert not out.exists()


def test_spec_device_cuda_is_refused_by_bench_protocol(no_cuda, tmp_path, feature_table,
                                                       capsys):
    out = tmp_path / "p.json"
    spec = _spec(tmp_path, feature_table, "cuda:0")
    assert main(["bench", "--protocol", str(spec), "--json", str(out)]) == 2
    _one_line(capsys, "[study].device = 'cuda:0'", "no CUDA device")
    assert not out.exists()


def test_the_refusal_says_which_torch_it_is(no_cuda, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "CPU-only build" in cuda_problem()
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    assert "(CUDA 12.4) sees no GPU" in cuda_problem() and "nvidia-smi" in cuda_problem()


def test_auto_and_cuda_resolve_when_torch_reports_a_gpu(fake_cuda):
    assert resolve_device("auto") == "cuda"
    assert resolve_device("cuda") == "cuda" and resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(SpecError, match=r"'cuda:1' but this machine has 1 CUDA GPU\(s\)"):
        resolve_device("cuda:1")
    assert cuda_problem() == ""


def test_auto_is_the_cpu_without_a_gpu(no_cuda):
    assert resolve_device("auto") == "cpu"


def test_cell_plans_carry_the_resolved_device(fake_cuda, tmp_path, feature_table):
    from spikebench.harness.plan import plan_cells
    from spikebench.harness.spec import load_spec

    spec = load_spec(_spec(tmp_path, feature_table, "auto"))
    assert {p.device for p in plan_cells(spec, [])} == {"cuda"}
    assert {p.device for p in plan_cells(spec, [], device="cpu")} == {"cpu"}


def test_bench_helpers_pick_cuda_and_wait_for_it(fake_cuda):
    from spikebench.harness.bench.conv import default_device
    from spikebench.harness.bench.engine import bench_device

    assert default_device() == "cuda"
    with bench_device("cuda", 1) as (dev, sync):
        assert dev.type == "cuda" and sync is torch.cuda.synchronize
    with bench_device("cpu", 1) as (dev, sync):
        assert dev.type == "cpu" and sync is not torch.cuda.synchronize


def test_bench_inputs_are_the_same_on_every_device():
    """Inputs are drawn on the CPU generator, then moved: CPU and CUDA runs see the same
    float32 spikes and int64 labels."""
    from spikebench.harness.bench.engine import spike_batch

    x1, y1 = spike_batch((4, 8, 5), 2, 0.3, 7, "cpu")
    x2, y2 = spike_batch((4, 8, 5), 2, 0.3, 7, torch.device("cpu"))
    assert x1.dtype == torch.float32 and y1.dtype == torch.int64
    assert torch.equal(x1, x2) and torch.equal(y1, y2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_networks_compute_in_the_dtype_they_were_built_with(dtype):
    from spikebench.backends import NetworkSpec, available_backends, get_backend
    from spikebench.backends.conformance import spiking_input

    for name in available_backends():
        net = get_backend(name).build(NetworkSpec(sizes=(5, 6, 2)), dtype=dtype, seed=0)
        assert {p.dtype for p in net.parameters()} <= {dtype}, name
        out = net(spiking_input(3, 2, 5, dtype=dtype))
        assert out.membrane.dtype == dtype, name


def test_gpu_check_refuses_without_cuda_and_writes_nothing(no_cuda, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert main(["bench", "--gpu-check", "--json", str(out)]) == 2
    _one_line(capsys, "no CUDA device: ")
    assert not out.exists()


INFO = {"device": "Fake GPU", "torch": "2.x", "cuda": "12.4", "cudnn": 90100,
        "capability": "8.6"}


def test_gpu_check_writes_every_part_and_its_errors(fake_cuda, monkeypatch, tmp_path):
    monkeypatch.setattr(gpu, "cuda_problem", lambda: "")
    monkeypatch.setattr(gpu, "device_info", lambda: dict(INFO))
    lines: list[str] = []

    def broken():
        raise RuntimeError("CUDA error: out of memory")

    out = tmp_path / "gpu.json"
    report = gpu.gpu_check(out, say=lines.append, parts={
        "engine": lambda: {"train": {"custom": {"median_ms": 1.0}}},
        "conv": broken, "study": lambda: {"wall_s": 3.0, "cells": {}}})
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(report, default=str))
    assert written["info"]["device"] == "Fake GPU" and written["ok"] is False
    assert written["engine"]["train"]["custom"]["median_ms"] == 1.0
    assert written["conv"] == {"error": "RuntimeError: CUDA error: out of memory"}
    assert written["study"]["wall_s"] == 3.0
    assert any("conv: FAILED" in line for line in lines) and "FAILED" in lines[-1]


def test_gpu_check_exit_code_follows_the_parts(fake_cuda, monkeypatch, tmp_path):
    monkeypatch.setattr(gpu, "cuda_problem", lambda: "")
    monkeypatch.setattr(gpu, "device_info", lambda: dict(INFO))
    fine = {"engine": lambda: {}, "conv": lambda: {}, "study": lambda: {}}
    real = gpu.gpu_check
    monkeypatch.setattr(gpu, "gpu_check", lambda out, **kw: real(out, parts=fine, **kw))
    out = tmp_path / "gpu.json"
    assert main(["bench", "--gpu-check", "--json", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["ok"] is True


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_gpu_check_on_a_real_gpu(tmp_path):
    out = tmp_path / "gpu.json"
    report = gpu.gpu_check(out, repeats=2)
    assert report["ok"], report
    written = json.loads(out.read_text())
    assert written["info"]["cuda"] and written["info"]["device"]
    assert written["engine"]["workload"]["device"].startswith("cuda")
    assert written["conv"]["workload"]["device"].startswith("cuda")
    cells = written["study"]["cells"]
    assert cells and all(c["status"] == "ok" and str(c["device"]).startswith("cuda")
                         for c in cells.values() if c["status"] != "skipped")
