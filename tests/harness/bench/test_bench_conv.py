"""``spikebench bench --conv`` times the convolutional train step of every conv backend side by
side, with ratios to custom and a convolution + dense product floor; never asserts speed."""

from __future__ import annotations

import json

import pytest

from spikebench.cli import main
from spikebench.harness.bench.conv import conv_option_problem, format_conv_bench, run_conv_bench

CONV_BACKENDS = ("custom", "snntorch", "spikingjelly")
TINY = ["--batch", "2", "--steps", "2", "--image-size", "8", "--channels", "2", "3",
        "--repeats", "2", "--threads", "1"]


def test_bench_conv_cli_prints_a_row_per_conv_backend_and_writes_json(tmp_path, capsys):
    out = tmp_path / "conv.json"
    assert main(["bench", "--conv", *TINY, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "conv workload" in text and "×custom" in text and "floor" in text
    rows = {line.split()[0]: line.split() for line in text.splitlines()[3:]
            if line.split() and line.split()[0] in CONV_BACKENDS}
    assert set(rows) == set(CONV_BACKENDS)
    for cells in rows.values():
        float(cells[1]), float(cells[3])  # median ms, ratio to custom
    assert rows["custom"][3] == "1.00"
    res = json.loads(out.read_text())
    assert set(res) >= {"train", "floor", "floor_ms", "density", "workload", "versions",
                        "machine", "skipped"}
    assert set(res["train"]) == set(CONV_BACKENDS) and res["floor_ms"] > 0
    for r in res["train"].values():
        assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"] and "peak_mb" in r
    w = res["workload"]
    assert (w["kind"], w["image_size"], w["channels"], w["steps"], w["batch"]) == (
        "conv", 8, [2, 3], 2, 2)


def test_run_conv_bench_skips_a_backend_it_cannot_build():
    res = run_conv_bench(["custom", "no-such-backend"], batch=1, steps=1, image_size=4,
                         channels=(1,), repeats=1, warmup=0, threads=1, device="cpu")
    assert "no-such-backend" in res["skipped"] and list(res["train"]) == ["custom"]
    assert "skipped no-such-backend" in format_conv_bench(res)
    assert len(res["density"]) == 2  # the input and the conv stage


@pytest.mark.parametrize(("args", "needle"), [
    (["--conv", "--sweep"], "--conv cannot be combined with --sweep"),
    (["--conv", "--hidden", "64"], "--conv cannot be combined with --hidden"),
    (["--channels", "4"], "--channels needs --conv"),
    (["--conv", "--channels", "0"], "--channels"),
    (["--conv", "--backends", "custom", "nosuch"], "without a conv builder"),
    (["--conv", "--image-size", "2"], "too small"),
    (["--conv", "--device", "nosuch"], "bench device"),
    (["--block", "0"], "--block: 0 is out of range"),
])
def test_bad_conv_option_combinations_are_one_line_errors(args, needle, capsys):
    assert main(["bench", *args, "--repeats", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikebench: error:") and "\n" not in err and needle in err, err


def test_conv_option_problem_accepts_the_train_step_options():
    assert conv_option_problem({"conv": True, "batch": 4, "steps": 3, "channels": [4],
                                "sweep": False, "compile": []}) == ""
    assert conv_option_problem({"conv": False}) == ""
