"""The engine benchmark's sweep as one table of ratios, and its speed targets checked on it.

All ratios come from one :func:`spikebench.harness.bench.engine.sweep` run (same process,
interleaved repeats), so load from other processes hits every backend alike:

* ``× eager`` / ``× compiled``: a peer's median train step ÷ custom's (> 1: custom faster);
* ``custom ÷ floor``: custom's train step ÷ the dense matrix products of that step.

Targets: custom ≥ 2× the best compiled peer at the default workload and ≥ 1.5× at every point;
≥ 3× every eager peer at every point; custom ÷ floor ≤ 1.5 at T ≥ 50, ≤ 2 at the default
workload, and < 1 wherever the event-driven path applies (input density under 30 %).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from spikebench.harness.bench.engine import COMPILE_SUFFIX

DEFAULT_POINT = (25, 128)
EVENT_DENSITY = 0.30


def _point(res: dict[str, Any]) -> tuple[int, int]:
    return int(res["workload"]["steps"]), int(res["workload"]["hidden"])


def _where(res: dict[str, Any]) -> str:
    t, h = _point(res)
    d = res["workload"].get("input_density", 0.3)
    return f"T={t}, hidden {h}" + (f", input density {d:.0%}" if d != 0.3 else "")


def point_ratios(res: dict[str, Any]) -> dict[str, Any]:
    """Ratios of one benchmark result (see the module docstring)."""
    train = res["train"]
    custom = train.get("custom", {}).get("median_ms")
    if not custom:
        return {"point": _point(res), "eager": {}, "compiled": {}, "floor": None}
    eager = {n: r["median_ms"] / custom for n, r in train.items()
             if n != "custom" and not n.endswith(COMPILE_SUFFIX)}
    compiled = {n: r["median_ms"] / custom for n, r in train.items()
                if n.endswith(COMPILE_SUFFIX)}
    return {"point": _point(res), "eager": eager, "compiled": compiled,
            "floor": custom / res["floor_ms"], "custom_ms": custom,
            "density": res.get("density", [])}


def check_targets(results: Sequence[dict[str, Any]]) -> list[tuple[str, bool, str]]:
    """``(target, met, evidence)`` for every target that the sweep's points can judge."""
    out: list[tuple[str, bool, str]] = []
    for res in results:
        r = point_ratios(res)
        t, h = r["point"]
        where = _where(res)
        default = (t, h) == DEFAULT_POINT and where == f"T={t}, hidden {h}"
        if r["floor"] is None:
            continue
        if r["compiled"]:
            name, best = min(r["compiled"].items(), key=lambda kv: kv[1])
            need = 2.0 if default else 1.5
            out.append((f"≥ {need}× best compiled peer ({where})", best >= need,
                        f"{name} {best:.2f}×"))
        for name, ratio in r["eager"].items():
            out.append((f"≥ 3× eager {name} ({where})", ratio >= 3.0, f"{ratio:.2f}×"))
        if t >= 50:
            out.append((f"custom ÷ floor ≤ 1.5 ({where})", r["floor"] <= 1.5, f"{r['floor']:.2f}"))
        if default:
            out.append((f"custom ÷ floor ≤ 2 ({where})", r["floor"] <= 2.0, f"{r['floor']:.2f}"))
        if res["workload"].get("input_density", 0.3) < EVENT_DENSITY:
            out.append((f"custom ÷ floor < 1, event-driven ({where})", r["floor"] < 1.0,
                        f"{r['floor']:.2f}"))
    return out


def format_sweep(results: Sequence[dict[str, Any]]) -> str:
    """One row per sweep point: custom ms, each peer's ratio, custom ÷ floor, densities."""
    rows = [point_ratios(r) for r in results]
    peers = sorted({n for r in rows for n in (*r["eager"], *r["compiled"])})
    head = (f"{'T':>4} {'hidden':>6} {'in.dens':>7} {'custom ms':>9} "
            + " ".join(f"{p:>20s}" for p in peers) + f" {'custom÷floor':>12} density")
    lines = ["train step, peer median ÷ custom median (same run):", head]
    for res, r in zip(results, rows):
        if r["floor"] is None:
            continue
        t, h = r["point"]
        d_in = res["workload"].get("input_density", 0.3)
        ratios = {**r["eager"], **r["compiled"]}
        cells = " ".join(f"{ratios[p]:>19.2f}×" if p in ratios else f"{'-':>20s}" for p in peers)
        dens = "/".join(f"{d:.0%}" for d in r["density"])
        lines.append(f"{t:>4} {h:>6} {d_in:>7.0%} {r['custom_ms']:>9.2f} {cells} "
                     f"{r['floor']:>12.2f} {dens}")
    lines.append("targets:")
    for name, met, evidence in check_targets(results):
        lines.append(f"  [{'met' if met else 'MISSED'}] {name}: {evidence}")
    return "\n".join(lines)
