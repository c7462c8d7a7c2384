"""The engine benchmark runs every backend side by side and reports ratios to the custom engine."""

from __future__ import annotations

import pytest

from spikebench.harness.bench.engine import run_bench, sweep
from spikebench.harness.bench.tables import check_regression, format_bench


def test_run_bench_tiny_workload_reports_every_backend_and_the_floor():
    res = run_bench(["custom", "snntorch", "spikingjelly"], batch=4, inputs=5, hidden=6,
                    outputs=2, steps=3, threads=1, repeats=2, warmup=1)
    assert set(res) >= {"train", "infer", "floor_ms", "workload", "versions", "machine"}
    for phase in ("train", "infer"):
        for name in ("custom", "snntorch", "spikingjelly"):
            r = res[phase][name]
            assert 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"]
    assert "peak_mb" in res["train"]["custom"]
    assert res["floor_ms"] > 0 and res["workload"]["steps"] == 3
    text = format_bench(res)
    assert "custom" in text and "floor" in text and "×custom" in text
    assert isinstance(check_regression(res), list)


def test_unknown_backend_is_skipped_not_fatal():
    res = run_bench(["custom", "no-such-backend"], batch=2, inputs=3, hidden=3, steps=2,
                    repeats=1, warmup=0)
    assert "no-such-backend" in res["skipped"] and "custom" in res["train"]


def test_check_regression_flags_a_slower_custom_engine():
    fake = {"train": {"custom": {"median_ms": 5.0}, "peer": {"median_ms": 4.0}},
            "infer": {"custom": {"median_ms": 1.0}, "peer": {"median_ms": 2.0}},
            "workload": {"steps": 25, "hidden": 128}}
    problems = check_regression(fake)
    assert len(problems) == 1 and "train" in problems[0] and "peer" in problems[0]


def test_sweep_varies_steps_and_hidden_and_adds_a_sparse_point():
    from spikebench.harness.bench.targets import format_sweep

    runs = sweep(["custom"], steps_grid=(2, 3), hidden_grid=(3, 4), sparse=((2, 4, 0.1),),
                 batch=2, inputs=3, hidden=3, steps=2, repeats=1, warmup=0)
    points = [(r["workload"]["steps"], r["workload"]["hidden"], r["workload"]["input_density"])
              for r in runs]
    assert points == [(2, 3, 0.3), (3, 3, 0.3), (2, 4, 0.3), (2, 4, 0.1)]
    assert "targets" in format_sweep(runs)


def test_compile_adds_a_variant_per_peer_and_keeps_named_ones():
    from spikebench.harness.bench.engine import variant_names

    assert variant_names(["custom", "snntorch"], None) == ["custom", "snntorch"]
    assert variant_names(["custom", "snntorch"], []) == ["custom", "snntorch",
                                                         "snntorch+compile"]
    assert variant_names(["custom"], ["spikingjelly"]) == ["custom", "spikingjelly+compile"]


@pytest.mark.slow
def test_compiled_variant_is_timed_after_compilation_with_its_compile_time():
    res = run_bench(["custom", "snntorch+compile"], batch=2, inputs=3, hidden=3, outputs=2,
                    steps=2, threads=1, repeats=2, warmup=1)
    row = res["train"]["snntorch+compile"]
    assert row["compile_s"] > 0 and 0 < row["min_ms"] <= row["median_ms"]
    assert "compile s" in format_bench(res)


def _fake(steps, hidden, custom, floor, density=0.1, **peers):
    rows = {"custom": {"median_ms": custom}} | {k.replace("_c", "+compile"): {"median_ms": v}
                                                 for k, v in peers.items()}
    return {"train": rows, "floor_ms": floor, "density": [0.2, 0.05],
            "workload": {"steps": steps, "hidden": hidden, "input_density": density}}


def test_sweep_table_judges_every_target_from_the_same_run():
    from spikebench.harness.bench.targets import check_targets, format_sweep

    runs = [_fake(25, 128, 1.0, 0.6, density=0.3, snntorch=8.0, snntorch_c=2.5),
            _fake(50, 128, 2.0, 1.0, density=0.3, snntorch=9.0, snntorch_c=2.0),
            _fake(25, 128, 1.0, 0.6, snntorch=8.0)]
    judged = {name: met for name, met, _ in check_targets(runs)}
    assert judged["≥ 2.0× best compiled peer (T=25, hidden 128)"]
    assert not judged["≥ 1.5× best compiled peer (T=50, hidden 128)"]  # 1.0×
    assert not judged["custom ÷ floor ≤ 1.5 (T=50, hidden 128)"]  # 2.0
    assert not judged["custom ÷ floor < 1, event-driven (T=25, hidden 128, input density 10%)"]
    assert "custom ÷ floor < 1, event-driven (T=25, hidden 128)" not in judged  # 30 % input
    text = format_sweep(runs)
    assert "snntorch+compile" in text and "MISSED" in text and "[met]" in text


def test_interleaved_rounds_rotate_so_no_variant_always_follows_the_same_one():
    from spikebench.harness.bench.engine import _time_interleaved

    calls: list[str] = []
    _time_interleaved({k: (lambda k=k: calls.append(k)) for k in "abc"}, warmup=0, repeats=3)
    assert calls == list("abcbcacab")


def test_blocks_time_consecutive_calls_after_one_untimed_call():
    """``block`` calls of a variant in a row (a trial's steps follow each other), the first
    untimed; rounds still rotate."""
    from spikebench.harness.bench.engine import _time_interleaved

    calls: list[str] = []
    samples = _time_interleaved({k: (lambda k=k: calls.append(k)) for k in "ab"}, warmup=1,
                                repeats=2, block=3)
    assert calls == list("ab" + "aaabbb" + "bbbaaa")
    assert {k: len(v) for k, v in samples.items()} == {"a": 4, "b": 4}
    with pytest.raises(ValueError, match="block"):
        _time_interleaved({"a": lambda: None}, warmup=0, repeats=1, block=0)


def test_bench_records_and_prints_how_it_sampled():
    from spikebench.harness.bench.engine import run_bench
    from spikebench.harness.bench.tables import format_bench

    res = run_bench(["custom"], batch=4, inputs=3, hidden=5, steps=3, threads=1, repeats=2,
                    warmup=1, block=3)
    assert res["workload"]["block"] == 3
    assert "2 rounds × 2 timed calls (after 1 untimed) per variant" in format_bench(res)
