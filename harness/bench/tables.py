"""Plain-text tables of :mod:`spikebench.harness.bench.engine` results and the regression check
``spikebench bench --check`` applies: custom slower than a peer measured in the same run."""

from __future__ import annotations

from typing import Any


def format_table(result: dict[str, Any], header: str, floor_what: str) -> str:
    """The table of any workload: ``header``, then per timed phase median (min–max) ms, ratio
    to custom, activation MB and compile s; the floor (``floor_what``) and custom ÷ floor."""
    lines = [header]
    floor = result["floor_ms"]
    for phase in ("train", "infer"):
        rows = result.get(phase)
        if rows is None:
            continue
        ref = rows.get("custom", {}).get("median_ms")
        lines.append(f"{phase:6s} {'backend':20s} {'median ms':>10s} {'(min–max)':>20s} "
                     f"{'×custom':>8s} {'act. MB':>8s} {'compile s':>9s}")
        for name, r in sorted(rows.items(), key=lambda kv: kv[1]["median_ms"]):
            ratio = f"{r['median_ms'] / ref:8.2f}" if ref else f"{'-':>8s}"
            peak = r.get("peak_mb")
            peak_s = f"{peak:8.1f}" if isinstance(peak, int | float) else f"{'-':>8s}"
            comp = result["train"].get(name, {}).get("compile_s")
            comp_s = f"{comp:9.1f}" if comp is not None else f"{'-':>9s}"
            span = f"({r['min_ms']:.2f}–{r['max_ms']:.2f})"
            lines.append(f"{'':6s} {name:20s} {r['median_ms']:10.2f} {span:>20s} {ratio} {peak_s} "
                         f"{comp_s}")
    custom = result["train"].get("custom", {}).get("median_ms")
    tail = f"act. MB = activations saved for backward; floor ({floor_what}): {floor:.2f} ms"
    if custom:
        tail += f"; custom train / floor = {custom / floor:.2f}"
    if result.get("density"):
        tail += "; custom spike density per layer input " + " / ".join(
            f"{d:.1%}" for d in result["density"])
    lines.append(tail)
    for name, reason in result.get("skipped", {}).items():
        lines.append(f"skipped {name}: {reason}")
    return "\n".join(lines)


def format_bench(result: dict[str, Any]) -> str:
    """A plain-text table: median (min–max) ms, ratio to custom, peak MB; floor and custom/floor."""
    w = result["workload"]
    return format_table(
        result, f"workload: batch {w['batch']}, {w['inputs']}→{w['hidden']}→{w['outputs']} LIF, "
        f"T={w['steps']}, {w['dtype']}, {w['device']}, {w['threads']} threads, "
        f"{repeats_text(w)}", "dense matmuls of the train step")


def repeats_text(workload: dict[str, Any]) -> str:
    """How the medians were sampled: rounds, and the calls per variant and round."""
    block = int(workload.get("block", 1))
    if block <= 1:
        return f"{workload['repeats']} repeats (one call per variant and round)"
    return (f"{workload['repeats']} rounds × {block - 1} timed calls (after 1 untimed) per "
            "variant")


def workload_point(workload: dict[str, Any]) -> str:
    """The workload point a regression message names."""
    if "hidden" in workload:
        return f"T={workload['steps']}, hidden={workload['hidden']}"
    channels = "/".join(str(c) for c in workload.get("channels", ()))
    return f"T={workload['steps']}, conv {workload.get('image_size')}², channels {channels}"


def check_regression(result: dict[str, Any]) -> list[str]:
    """Problems when the custom engine is slower than a peer measured in the same run."""
    problems = []
    for phase in ("train", "infer"):
        rows = result.get(phase, {})
        if "custom" not in rows:
            continue
        mine = rows["custom"]["median_ms"]
        for name, r in rows.items():
            if name != "custom" and r["median_ms"] < mine:
                problems.append(f"{phase}: custom {mine:.2f} ms is slower than {name} "
                                f"{r['median_ms']:.2f} ms ({workload_point(result['workload'])})")
    return problems
