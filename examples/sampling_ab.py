"""Call by call or back to back: what ``spikebench bench --block`` changes, measured in one
process.

    python examples/sampling_ab.py --backends custom snntorch --threads 2

Builds the default ``spikebench bench`` train step (batch 128, 64 → 128 → 2 LIF, T = 25,
input spike probability 0.3, the rules' Adam) for each backend and times it both ways with the
benchmark's own sampler (:func:`spikebench.harness.bench._time_interleaved`), the two ways
alternating round by round so that the machine's drift hits both alike: call by call (every
step right after another backend's, ``--block 1``) and back to back (5 steps in a row, the
last 4 timed, the default). Prints the median per backend and way. The README's figures on the
cache refill that call-by-call timing charges come from this script.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F

from spikebench.backends import NetworkSpec, get_backend
from spikebench.harness.bench import engine as bench


def train_step(backend: str, hidden: int, x: torch.Tensor, y: torch.Tensor
               ) -> Callable[[], None]:
    """One train step of ``backend``'s default network (the step ``spikebench bench`` times)."""
    net = get_backend(backend).build(NetworkSpec(sizes=(x.shape[-1], hidden, 2)), seed=0)
    opt = bench.make_optimizer(list(net.parameters()))

    def step() -> None:
        loss = F.cross_entropy(net(x).spikes.sum(0), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def compare(backends: list[str], steps: int, hidden: int, threads: int, rounds: int
            ) -> dict[str, dict[str, float]]:
    """``{way: {backend: median ms}}`` for ``way`` in ``call by call``, ``back to back``."""
    torch.set_num_threads(threads)
    x, y = bench.spike_batch((steps, 128, 64), 2, 0.3, 0, torch.device("cpu"))
    fns = {b: train_step(b, hidden, x, y) for b in backends}
    ways = {"call by call": dict(repeats=4, block=1), "back to back": dict(repeats=1, block=5)}
    samples: dict[str, dict[str, list[float]]] = {w: {b: [] for b in fns} for w in ways}
    for r in range(rounds):
        for way in (list(ways) if r % 2 else list(ways)[::-1]):
            got = bench._time_interleaved(fns, warmup=1 if r == 0 else 0, **ways[way])
            for b, ms in got.items():
                samples[way][b] += ms
    return {w: {b: statistics.median(v) for b, v in per.items()} for w, per in samples.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", nargs="+", default=["custom", "snntorch"])
    p.add_argument("--steps", type=int, default=25, help="time steps T (default 25)")
    p.add_argument("--hidden", type=int, default=128, help="hidden neurons (default 128)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--rounds", type=int, default=40, help="rounds per way (default 40)")
    args = p.parse_args()
    ms = compare(args.backends, args.steps, args.hidden, args.threads, args.rounds)
    for backend in args.backends:
        print(f"{backend:14s} call by call {ms['call by call'][backend]:8.3f} ms   "
              f"back to back {ms['back to back'][backend]:8.3f} ms")


if __name__ == "__main__":
    main()
