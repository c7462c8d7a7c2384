"""The custom engine's train step with the whole-network C++ pass and layer by layer, in one
process.

    python examples/network_pass_ab.py --threads 2

Times the step ``spikebench bench`` runs (batch 128, 64 → hidden → 2 LIF, input spike
probability 0.3, cross-entropy on output spike counts, LeanAdam) on two identically seeded
custom networks: one with every layer of the forward and backward pass in one C++ call
(``spikebench.backends.custom.WHOLE_NETWORK_PASS``, the default), one with the per-layer Python
loop around the same kernels, in interleaved rounds whose order rotates. Prints both medians and
the saving, and checks that both trained exactly the same weights. The README's figure for the
whole-network pass comes from this script.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F

from spikebench.backends import NetworkSpec, custom, get_backend
from spikebench.harness.bench import engine as bench
from spikebench.harness.optim import adam


def compare(steps: int, hidden: int, threads: int, repeats: int, density: float = 0.3
            ) -> dict[str, float]:
    """Median milliseconds per train step with each path (``whole``, ``per-layer``)."""
    torch.set_num_threads(threads)
    dev = torch.device("cpu")
    spec = NetworkSpec(sizes=(64, hidden, 2))
    x, y = bench.spike_batch((steps, 128, 64), 2, density, 0, dev)
    nets = {name: get_backend("custom").build(spec, device=dev, seed=0)
            for name in ("whole", "per-layer")}
    opts = {name: adam(net.parameters(), lr=1e-3, weight_decay=0.0) for name, net in nets.items()}

    def step(name: str) -> Callable[[], None]:
        def run() -> None:
            custom.WHOLE_NETWORK_PASS = name == "whole"
            try:
                out = nets[name](x)
                loss = F.cross_entropy(out.spikes.sum(0), y)
                opts[name].zero_grad(set_to_none=True)
                loss.backward()
                opts[name].step()
            finally:
                custom.WHOLE_NETWORK_PASS = True
        return run

    samples = bench._time_interleaved({k: step(k) for k in nets}, warmup=20, repeats=repeats)
    for a, b in zip(nets["whole"].parameters(), nets["per-layer"].parameters()):
        if not torch.equal(a, b):
            raise SystemExit("the two paths trained different weights: report this as a bug")
    return {k: statistics.median(v) for k, v in samples.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=25, help="time steps T (default 25)")
    p.add_argument("--hidden", type=int, default=128, help="hidden neurons (default 128)")
    p.add_argument("--density", type=float, default=0.3, help="input spike probability")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--repeats", type=int, default=300, help="timed rounds (default 300)")
    args = p.parse_args()
    ms = compare(args.steps, args.hidden, args.threads, args.repeats, args.density)
    saved = ms["per-layer"] - ms["whole"]
    print(f"layer by layer (Python loop)  {ms['per-layer']:7.3f} ms per step")
    print(f"whole-network C++ pass        {ms['whole']:7.3f} ms per step")
    print(f"saved {saved:.3f} ms ({saved / ms['per-layer']:.1%}); same weights after "
          f"{args.repeats + 20} steps each")


if __name__ == "__main__":
    main()
