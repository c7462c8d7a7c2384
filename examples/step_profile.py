"""Where the custom engine's train step spends its time, measured in place.

    python examples/step_profile.py --steps 25 --threads 2

Runs the train step that ``spikebench bench`` times (forward over T, cross-entropy on output
spike counts, backward, fused Adam; batch 128, 64 → hidden → 2 LIF, input spike probability
0.3) and times each part with ``time.perf_counter`` around the very calls the engine makes —
no profiler, whose per-operator overhead inflates the Python share. Prints milliseconds per
step for: the forward products and LIF passes, each part of the network's hand-written backward
(weight and input gradients, LIF backward, bias sums), the parts outside the engine that every
backend pays alike (loss, ``zero_grad``, the autograd engine around the node, the optimizer),
and the dense-product floor ``spikebench bench`` divides by. The parts inside the engine are
visible only on the layer-by-layer path; the default whole-network C++ pass is then timed in
the same run, forward and backward node as totals. The README's "where the time goes" figures
come from this script.
"""

from __future__ import annotations

import argparse
import collections
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from spikebench.backends import NetworkSpec, custom, get_backend
from spikebench.harness.bench import engine as bench

Timings = collections.defaultdict


def _timed(times: dict[str, float], key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` adding its wall time to ``times[key]`` on every call."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        times[key] += time.perf_counter() - start
        return out

    return wrapper


class _TimedTensorOps:
    """Times the products and sums the network's backward issues, by what they compute."""

    def __init__(self, times: dict[str, float]) -> None:
        self.times = times

    def __enter__(self) -> _TimedTensorOps:
        self.mm, self.sum, self.torch_mm = torch.Tensor.mm, torch.Tensor.sum, custom.torch.mm
        times = self.times
        torch.Tensor.mm = _timed(times, "backward: weight gradients", self.mm)
        torch.Tensor.sum = _timed(times, "backward: bias sums", self.sum)
        custom.torch.mm = _timed(times, "backward: input gradients", self.torch_mm)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.Tensor.mm, torch.Tensor.sum, custom.torch.mm = self.mm, self.sum, self.torch_mm


def profile(steps: int, hidden: int, threads: int, repeats: int, *, whole: bool = False
            ) -> dict[str, float]:
    """Milliseconds per train step by part (see the module docstring). The parts inside the
    engine are timed on the layer-by-layer path (``whole=False``), where each product and kernel
    is a Python-level call; ``whole=True`` times the default whole-network C++ pass, whose
    forward and backward node are one call each (only their totals are visible)."""
    custom.WHOLE_NETWORK_PASS = whole
    torch.set_num_threads(threads)
    spec = NetworkSpec(sizes=(64, hidden, 2))
    net = get_backend("custom").build(spec, device=torch.device("cpu"), seed=0)
    x, y = bench.spike_batch((steps, 128, 64), 2, 0.3, 0, torch.device("cpu"))
    opt = bench.make_optimizer(list(net.parameters()))
    floor = bench.product_floor(spec.sizes, 128, steps, torch.device("cpu"))
    times: dict[str, float] = Timings(float)
    patched = {name: getattr(custom, name) for name in ("_currents", "_lif_step",
                                                        "lif_backward_")}
    custom._currents = _timed(times, "forward: input products", patched["_currents"])
    custom._lif_step = _timed(times, "forward: LIF", patched["_lif_step"])
    custom.lif_backward_ = _timed(times, "backward: LIF", patched["lif_backward_"])
    node = custom.LIFNetworkFunction.backward
    custom.LIFNetworkFunction.backward = staticmethod(
        _timed(times, "backward: whole node", node))

    def step() -> None:
        t0 = time.perf_counter()
        out = net(x)
        t1 = time.perf_counter()
        loss = F.cross_entropy(out.spikes.sum(0), y)
        t2 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        with _TimedTensorOps(times):
            loss.backward()
        t4 = time.perf_counter()
        opt.step()
        t5 = time.perf_counter()
        for key, seconds in (("forward: whole", t1 - t0), ("outside: loss", t2 - t1),
                             ("outside: zero_grad", t3 - t2), ("backward: engine + node", t4 - t3),
                             ("outside: optimizer", t5 - t4), ("step", t5 - t0)):
            times[key] += seconds

    try:
        for _ in range(20):
            step()
        times.clear()
        for _ in range(repeats):
            step()
        start = time.perf_counter()
        for _ in range(repeats):
            floor()
        times["floor (dense products)"] = time.perf_counter() - start
    finally:
        for name, fn in patched.items():
            setattr(custom, name, fn)
        custom.LIFNetworkFunction.backward = staticmethod(node)
        custom.WHOLE_NETWORK_PASS = True
    return {key: seconds / repeats * 1e3 for key, seconds in times.items()}


def report(ms: dict[str, float]) -> str:
    """The table the script prints, with the derived rows."""
    node = ms["backward: whole node"]
    rows = dict(ms)
    rows["forward: other (Python, pool, stack)"] = (ms["forward: whole"]
                                                   - ms["forward: input products"]
                                                   - ms["forward: LIF"])
    rows["backward: node other (Python, workspace)"] = node - sum(
        ms.get(f"backward: {k}", 0.0) for k in ("LIF", "weight gradients", "input gradients",
                                                 "bias sums"))
    rows["outside: autograd engine around the node"] = ms["backward: engine + node"] - node
    fixed = sum(rows[k] for k in ("outside: loss", "outside: zero_grad", "outside: optimizer",
                                  "outside: autograd engine around the node"))
    lines = [f"{key:44s} {value:7.3f} ms" for key, value in sorted(rows.items())
             if key not in ("backward: engine + node", "forward: whole", "step",
                            "floor (dense products)", "backward: whole node")]
    floor = ms["floor (dense products)"]
    lines += [f"{'step':44s} {ms['step']:7.3f} ms",
              f"{'floor (dense products)':44s} {floor:7.3f} ms",
              f"step / floor {ms['step'] / floor:.2f}; outside the engine (every backend pays "
              f"it) {fixed:.3f} ms; (step - outside) / floor {(ms['step'] - fixed) / floor:.2f}"]
    return "\n".join(lines)


def report_whole(ms: dict[str, float], parts: dict[str, float]) -> str:
    """The default path's totals, against the layer-by-layer parts measured in the same run."""
    node = ms["backward: whole node"]
    inside = sum(parts[f"forward: {k}"] for k in ("input products", "LIF")) + sum(
        parts.get(f"backward: {k}", 0.0) for k in ("LIF", "weight gradients",
                                                    "input gradients", "bias sums"))
    floor = ms["floor (dense products)"]
    return "\n".join([
        "whole-network C++ pass (the default):",
        f"{'forward (one call)':44s} {ms['forward: whole']:7.3f} ms",
        f"{'backward node (one call)':44s} {node:7.3f} ms",
        f"{'  of which not products/kernels (from above)':44s} "
        f"{ms['forward: whole'] + node - inside:7.3f} ms",
        f"{'outside: autograd engine around the node':44s} "
        f"{ms['backward: engine + node'] - node:7.3f} ms",
        f"{'step':44s} {ms['step']:7.3f} ms",
        f"{'floor (dense products)':44s} {floor:7.3f} ms",
        f"step / floor {ms['step'] / floor:.2f}"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=25, help="time steps T (default 25)")
    p.add_argument("--hidden", type=int, default=128, help="hidden neurons (default 128)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--repeats", type=int, default=400, help="timed steps (default 400)")
    args = p.parse_args()
    parts = profile(args.steps, args.hidden, args.threads, args.repeats)
    print("layer-by-layer path (custom.WHOLE_NETWORK_PASS = False), by part:")
    print(report(parts))
    print()
    print(report_whole(profile(args.steps, args.hidden, args.threads, args.repeats, whole=True),
                       parts))


if __name__ == "__main__":
    main()
