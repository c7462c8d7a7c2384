"""``spikebench bench``: its arguments and what each form of the command runs (engine step,
sweep, conv network, feature extraction, Optuna trial times, protocol extrapolation)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spikebench.errors import UsageError


def say(args: argparse.Namespace, text: str) -> None:
    """Print ``text`` unless the command was given ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(text)


def add_bench_parser(sub: Any) -> None:
    """Add the ``bench`` sub-command to the ``sub`` parsers of the ``spikebench`` CLI."""
    s = sub.add_parser("bench", help="time train/inference steps of every backend side by side")
    s.add_argument("--backends", nargs="+", default=None, metavar="BACKEND",
                   help="backends to time (default: every installed one; with --conv, every "
                   "one with a conv builder)")
    s.add_argument("--json", type=Path, default=None,
                   help="also write the figures as JSON to this file (default: none)")
    for opt, default, what in (
            ("batch", "128; with --conv 16", "samples per step"),
            ("inputs", "64", "input features"),
            ("hidden", "128", "hidden LIF neurons"),
            ("steps", "25; with --conv 8", "time steps T"),
            ("image-size", "64", "with --conv: crop side in pixels")):
        s.add_argument(f"--{opt}", type=int, default=None, help=f"{what} (default: {default})")
    s.add_argument("--conv", action="store_true", help="instead: the train step of the conv "
                   "LIF network on every backend with a conv builder (harness/bench/conv.py)")
    s.add_argument("--channels", type=int, nargs="+", default=None,
                   help="with --conv: channels per conv stage (default: 8 16)")
    s.add_argument("--device", default=None,
                   help="torch device (default: cpu; with --conv, cuda when present)")
    s.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: 2; with --study/--protocol 1, what each of "
                        "2 workers gets on 2 cores)")
    s.add_argument("--repeats", type=int, default=20, help="timed rounds")
    s.add_argument("--block", type=int, default=None,
                   help="consecutive calls of each variant per round, the first untimed "
                        "(default: 5, steps as a trial runs them, caches warm; 1: every call "
                        "right after another variant's)")
    s.add_argument("--density", type=float, default=0.3,
                   help="input spike probability per step")
    s.add_argument("--sweep", action="store_true",
                   help="vary T and hidden size, plus sparse-input points (hidden 512, 10 %% "
                   "and 5 %%)")
    s.add_argument("--compile", nargs="*", default=None, metavar="BACKEND",
                   help="also time torch.compile'd variants (NAME+compile) of these backends "
                        "(no names: every peer of custom); compilation takes minutes per "
                        "shape and is reported as its own column, not timed (default: none)")
    s.add_argument("--check", action="store_true",
                   help="exit 1 when custom is slower than a peer measured in the same run")
    s.add_argument("--extract", type=Path, default=None, metavar="ROOT",
                   help="instead: time feature extraction vs plain reading of ROOT's volumes "
                   "(default: off)")
    s.add_argument("--workers", type=int, default=None,
                   help="with --extract: processes reading volumes (default: 1); with "
                        "--protocol: also predict for this many workers (default: the cores); "
                        "with --verify: workers of the real run (default: 1)")
    s.add_argument("--study", type=Path, default=None, metavar="SPEC",
                   help="instead: mean Optuna trial time per rule and backend on SPEC's cohort "
                   "(default: off)")
    s.add_argument("--protocol", type=Path, default=None, metavar="SPEC",
                   help="instead: run trials of every cell and reference of SPEC past the "
                        "sampler's and the pruner's start-up, time one refit per cell and "
                        "predict the protocol's wall time with an interval (per cell, total, "
                        "1, 2 and N workers) (default: off)")
    s.add_argument("--verify", action="store_true",
                   help="with --protocol: run a reduced protocol of SPEC (2 outer folds, 8 "
                        "trials, 16 phantom patients) for real and print predicted vs "
                        "measured wall time (minutes)")
    s.add_argument("--contention", type=float, default=None,
                   help="with --protocol: per-trial time factor of concurrent workers "
                        "(default: 1.47, measured on 2 cores; docs/performance.md)")
    s.add_argument("--cores", type=int, default=None,
                   help="with --protocol: CPU cores of the schedule model (default: this "
                        "machine's)")
    s.add_argument("--gpu-check", action="store_true",
                   help="instead: engine bench, conv bench and a two-trial study on CUDA, "
                        "written to --json (default: gpu-check.json); exit 2 without CUDA")
    s.add_argument("--throughput", action="store_true",
                   help="with --study: trials/minute of SPEC's first cell with 1 and 2 workers")
    s.add_argument("--trials", type=int, default=None,
                   help="with --study: trials per cell (default: 3); with --protocol: (default: "
                        "the sampler's or pruner's start-up, whichever is longer, + 3); with "
                        "--throughput: per worker count (default: 40; the last trials run "
                        "alone, so a few trials understate the speed-up)")
    s.add_argument("--rules", nargs="+", default=None, metavar="RULE",
                   help="with --study/--protocol: rules to time (default: the spec's grid)")
    s.add_argument("--quiet", action="store_true",
                   help="print nothing on stdout (use with --json); regressions still go to "
                        "stderr")


def run_bench_command(args: argparse.Namespace) -> int:
    """``spikebench bench ...``: check the arguments, then measure."""
    _check_bench_args(args)
    return _bench(args)


def _check_bench_args(args: argparse.Namespace) -> None:
    """Refuse unknown backends and absurd sizes before ``bench`` measures anything."""
    limits = {"batch": 65_536, "inputs": 65_536, "hidden": 16_384, "steps": 10_000,
              "threads": 1024, "repeats": 100_000, "block": 1000, "workers": 256,
              "trials": 100_000, "image_size": 8192, "cores": 4096}
    for name, high in limits.items():
        value = getattr(args, name, None)
        if value is not None and not 1 <= value <= high:
            raise UsageError(f"bench --{name.replace('_', '-')}: {value} is out of range "
                             f"[1, {high}]")
    if args.contention is not None and not 1.0 <= args.contention <= 100.0:
        raise UsageError(f"bench --contention: {args.contention} is out of range [1, 100] "
                         "(a factor on each trial's time; 1 = no slowdown)")
    if args.verify and args.protocol is None:
        raise UsageError("bench --verify: checks a protocol estimate; give --protocol SPEC")
    from spikebench.harness.bench.conv import conv_option_problem

    if problem := conv_option_problem(vars(args)):
        raise UsageError(f"bench {problem}")
    if args.backends:
        from spikebench.backends import available_backends
        from spikebench.backends.conv import conv_backends

        known = conv_backends() if args.conv else available_backends()
        unknown = [b for b in args.backends if b not in known]
        if unknown:
            what = "backend(s) without a conv builder" if args.conv else "unknown backend(s)"
            raise UsageError(f"bench --backends: {what} {', '.join(unknown)}; "
                             f"{'with --conv' if args.conv else 'installed'}: {', '.join(known)}")


def _bench_study(args: argparse.Namespace) -> int:
    """``bench --study SPEC [--throughput]`` and ``bench --protocol SPEC [--verify]``."""
    res: dict[str, Any]
    if args.throughput:
        from spikebench.harness.bench.throughput import format_throughput, study_throughput

        res = study_throughput(args.study, trials=args.trials or 40, workers=(1, 2))
        say(args, format_throughput(res))
    elif args.verify:
        from spikebench.harness.bench.verify import format_verify, verify

        res = verify(args.protocol, workers=args.workers or 1, backends=args.backends,
                     rules=args.rules, sample=args.trials, cores=args.cores,
                     contention=args.contention)
        say(args, format_verify(res))
    elif args.protocol is not None:
        res = _protocol(args)
    else:
        from spikebench.harness.bench import protocol as bp

        res = bp.trial_times(args.study, trials=args.trials or 3, backends=args.backends,
                             rules=args.rules, threads=args.threads or 1)
        say(args, bp.format_trial_times(res))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str))
    return 0


def _protocol(args: argparse.Namespace) -> dict[str, Any]:
    """``bench --protocol SPEC``: measure every cell, then the expected wall time."""
    import os

    from spikebench.harness.bench import estimate as est
    from spikebench.harness.bench import protocol as bp

    res = bp.trial_times(args.protocol, trials=args.trials, backends=args.backends,
                         rules=args.rules, threads=args.threads or 1, references=True,
                         refits=1)
    say(args, bp.format_trial_times(res))
    cores = args.cores or os.cpu_count() or 1
    workers = sorted({1, 2, args.workers or cores})
    contention = est.CONTENTION if args.contention is None else args.contention
    res["estimate"] = est.estimate(res, workers=workers, cores=cores, contention=contention)
    say(args, est.format_estimate(res, res["estimate"]))
    return res


def _bench(args: argparse.Namespace) -> int:
    if args.gpu_check:
        from spikebench.harness.bench.gpu import gpu_check

        report = gpu_check(args.json or Path("gpu-check.json"),
                           say=lambda text: say(args, text))
        return 0 if report["ok"] else 1
    if args.study is not None or args.protocol is not None:
        return _bench_study(args)
    if args.extract is not None:
        from spikebench.datasets.extract_bench import benchmark_extraction

        res = benchmark_extraction(args.extract, workers=args.workers or 1)
        say(args, json.dumps(res, indent=2))
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))
        return 0
    from spikebench.harness.bench import engine as bench
    from spikebench.harness.bench.tables import check_regression, format_bench

    kw: dict[str, Any] = dict(threads=args.threads or 2, repeats=args.repeats,
                              compile=args.compile, density=args.density,
                              block=args.block if args.block is not None else bench.BLOCK)
    if args.conv:
        from spikebench.harness.bench.conv import format_conv_bench, run_conv_bench

        res = run_conv_bench(args.backends, batch=args.batch or 16, steps=args.steps or 8,
                             image_size=args.image_size or 64, channels=args.channels or (8, 16),
                             device=args.device, **kw)
        say(args, format_conv_bench(res))
        return _bench_done(args, res, check_regression(res))
    kw.update(batch=args.batch or 128, inputs=args.inputs or 64, hidden=args.hidden or 128,
              steps=args.steps or 25, device=args.device or "cpu")
    if args.sweep:
        from spikebench.harness.bench.targets import format_sweep

        results = bench.sweep(args.backends, **kw)
        for res in results:
            say(args, format_bench(res) + "\n")
        say(args, format_sweep(results))
        payload: Any = results
        problems = [p for res in results for p in check_regression(res)]
    else:
        res = bench.run_bench(args.backends, **kw)
        say(args, format_bench(res))
        payload, problems = res, check_regression(res)
    return _bench_done(args, payload, problems)


def _bench_done(args: argparse.Namespace, payload: Any, problems: list[str]) -> int:
    """Write ``--json``; with ``--check``, report ``problems`` on stderr and exit 1."""
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2))
    if args.check and problems:
        for p in problems:
            print(f"REGRESSION: {p}", file=sys.stderr)
        return 1
    return 0
