"""The ``spikebench`` command line. Imports are lazy so ``spikebench --help`` is instant."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from spikebench import __version__
from spikebench.errors import SpikebenchError

#: The shipped spec ``spikebench demo`` runs (package data ``spikebench/studies/demo.toml``).
DEMO_SPEC = "demo"
QUIET_HELP = "no progress bars and no summary (errors still go to stderr)"


class UsageError(SpikebenchError):
    """A command line argparse refuses (printed as one line, exit code 2)."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one ``spikebench: error:`` line and exit code 2
    returned by :func:`main` (not a usage dump and ``SystemExit``)."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def bounded(low: int, high: int) -> Any:
    """An argparse type: an integer in ``[low, high]`` (absurd values are refused before any
    work, with the flag named by argparse)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range [{low}, {high}]")
        return value

    parse.__name__ = "integer"
    return parse


#: Bounds of the CLI's integer flags: above them a run would not finish or not fit in memory.
TRIALS = bounded(1, 100_000)
WORKERS = bounded(1, 256)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="spikebench",
        description="Leakage-free benchmark of spiking neural network backends × learning rules "
        "on liver CT (Medical Segmentation Decathlon Task03).",
    )
    p.add_argument("--version", action="version", version=f"spikebench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("demo", help="phantom data -> study -> report, end to end (minutes)")
    s.add_argument("--out", default="results/demo", help="results folder (default results/demo)")
    s.add_argument("--spec", default=None,
                   help=f"study spec file or shipped spec name (default {DEMO_SPEC!r})")
    s.add_argument("--trials", type=TRIALS, default=None, help="override [search].trials")
    s.add_argument("--workers", type=WORKERS, default=1)
    s.add_argument("--quiet", action="store_true", help=QUIET_HELP)

    s = sub.add_parser("phantom", help="write a synthetic data set in the MSD Task03 layout")
    s.add_argument("out", type=Path)
    s.add_argument("--cases", type=bounded(1, 1000), default=12,
                   help="training volumes (default 12)")
    s.add_argument("--seed", type=bounded(0, 2**32 - 1), default=0)
    s.add_argument("--shape", type=bounded(1, 2048), nargs=2, default=(96, 96),
                   metavar=("H", "W"))
    s.add_argument("--slices", type=bounded(1, 1024), nargs=2, default=(24, 48),
                   metavar=("MIN", "MAX"))
    s.add_argument("--test-cases", type=bounded(0, 1000), default=2)
    s.add_argument("--quiet", action="store_true", help=QUIET_HELP)

    s = sub.add_parser("extract", help="features per liver slice from an MSD-layout folder")
    s.add_argument("root", type=Path, help="folder holding dataset.json")
    s.add_argument("--out", type=Path, required=True, help="features .parquet to write")
    s.add_argument("--workers", type=WORKERS, default=1)
    s.add_argument("--min-lesion-voxels", type=bounded(1, 10**9), default=1)
    s.add_argument("--on-error", choices=("fail", "skip"), default="fail")
    s.add_argument("--quiet", action="store_true", help=QUIET_HELP)

    s = sub.add_parser("study", help="run or inspect an Optuna study")
    ss = s.add_subparsers(dest="study_command", required=True, metavar="ACTION")
    r = ss.add_parser("run", help="run (or resume) a study spec")
    r.add_argument("spec", help="study spec file, or the name of a shipped spec "
                   "(demo, msd-liver, multi-objective); a path that exists wins")
    r.add_argument("--out", type=Path, required=True, help="results folder")
    r.add_argument("--trials", type=TRIALS, default=None,
                   help="override [search].trials per cell")
    r.add_argument("--storage", default=None,
                   help="Optuna storage URL, e.g. postgresql://user:pw@host/db "
                   "(default: journal file in --out; or $SPIKEBENCH_STORAGE)")
    r.add_argument("--workers", type=WORKERS, default=1, help="local worker processes")
    r.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    st = ss.add_parser("status", help="per-cell trial counts, best value, elapsed")
    st.add_argument("target", type=Path, help="results folder or spec file")
    st.add_argument("--storage", default=None)

    s = sub.add_parser("report", help="tables, statistics and figures from a results folder")
    s.add_argument("dir", type=Path)
    s.add_argument("--out", type=Path, default=None, help="default DIR/report")
    s.add_argument("--bootstrap", type=bounded(1, 100_000), default=1000,
                   help="bootstrap resamples")
    s.add_argument("--quiet", action="store_true", help=QUIET_HELP)

    sub.add_parser("backends", help="installed backends, versions, supported rules")
    sub.add_parser("rules", help="installed learning rules and the backends serving each")
    sub.add_parser("datasets", help="installed data sources (the [data] source plug-ins)")

    s = sub.add_parser("bench", help="time train/inference steps of every backend side by side")
    s.add_argument("--backends", nargs="+", default=None)
    s.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    for opt, default in (("batch", "128; --conv 16"), ("inputs", "64"), ("hidden", "128"),
                         ("steps", "T, 25; --conv 8"), ("image-size", "with --conv, 64")):
        s.add_argument(f"--{opt}", type=int, default=None, help=f"default {default}")
    s.add_argument("--conv", action="store_true", help="instead: the train step of the conv "
                   "LIF network on every backend with a conv builder (harness/bench_conv.py)")
    s.add_argument("--channels", type=int, nargs="+", default=None,
                   help="with --conv: channels per conv stage (default 8 16)")
    s.add_argument("--device", default=None, help="default cpu; --conv: cuda when present")
    s.add_argument("--threads", type=int, default=None,
                   help="torch threads (default 2; with --study/--protocol 1, what each of "
                        "2 workers gets on 2 cores)")
    s.add_argument("--repeats", type=int, default=20)
    s.add_argument("--density", type=float, default=0.3,
                   help="input spike probability per step (default 0.3)")
    s.add_argument("--sweep", action="store_true",
                   help="vary T and hidden size, plus a sparse-input point (hidden 512, 10 %%)")
    s.add_argument("--compile", nargs="*", default=None, metavar="BACKEND",
                   help="also time torch.compile'd variants (NAME+compile) of these backends "
                        "(no names: every peer of custom); compilation takes minutes per "
                        "shape and is reported as its own column, not timed")
    s.add_argument("--check", action="store_true",
                   help="exit 1 when custom is slower than a peer measured in the same run")
    s.add_argument("--extract", type=Path, default=None, metavar="ROOT",
                   help="instead: time feature extraction vs plain reading of ROOT's volumes")
    s.add_argument("--workers", type=int, default=1, help="with --extract")
    s.add_argument("--study", type=Path, default=None, metavar="SPEC",
                   help="instead: mean Optuna trial time per rule and backend on SPEC's cohort")
    s.add_argument("--protocol", type=Path, default=None, metavar="SPEC",
                   help="instead: run a few trials of every cell of SPEC and extrapolate the "
                        "full protocol's wall time (per cell, total, by workers)")
    s.add_argument("--throughput", action="store_true",
                   help="with --study: trials/minute of SPEC's first cell with 1 and 2 workers")
    s.add_argument("--trials", type=int, default=None,
                   help="with --study/--protocol: trials per cell (default 3); with "
                        "--throughput: per worker count (default 40; the last trials run "
                        "alone, so a few trials understate the speed-up)")
    s.add_argument("--rules", nargs="+", default=None, help="with --study/--protocol")
    s.add_argument("--quiet", action="store_true",
                   help="print nothing on stdout (use with --json); regressions still go to "
                        "stderr")

    s = sub.add_parser("export", help="export a trained network of a results folder to NIR")
    s.add_argument("run", type=Path, help="results folder (or one models/*.pt file)")
    s.add_argument("--to", type=Path, required=True, help="output .nir file")
    s.add_argument("--cell", default=None, help="backend/rule (default: best on test)")
    s.add_argument("--repeat", type=bounded(0, 10_000), default=0)
    s.add_argument("--allow-approximate", action="store_true",
                   help="export a network NIR cannot represent exactly (subtract / no reset) "
                        "as its reset-to-zero approximation and print the measured "
                        "disagreement")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors are one ``spikebench: error:`` line and exit code 2,
    Ctrl-C is one line and exit code 130, a closed output pipe exit code 141 and nothing
    (``SPIKEBENCH_DEBUG=1`` shows tracebacks)."""
    import os

    try:
        args = _parser().parse_args(argv)
        return int(_dispatch(args) or 0)
    except SpikebenchError as exc:
        print(f"spikebench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `spikebench ... | head`: the reader left; end quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        if os.environ.get("SPIKEBENCH_DEBUG"):
            raise
        from spikebench.oserror import describe_os_error

        print(f"spikebench: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _quiet_exit()
        print("spikebench: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


def entry() -> int:
    """The ``spikebench`` command: :func:`main`, then Ctrl-C is ignored while the interpreter
    shuts down. The work is done by then; without this a late Ctrl-C kills the process with
    no message (Python restores the default SIGINT action near the end of its shut-down)."""
    code = main()
    _quiet_exit()
    if code == 130:
        _exit_interrupted()
    return code


def _exit_interrupted() -> None:
    """Exit with code 130 after clean-up. Not through the interpreter's own exit: CPython 3.11
    can remember an interrupt as unhandled although :func:`main` caught it (an interrupt that
    escaped code run through its ``PyRun_*`` entry points), and then kills the process with
    SIGINT at the very end, so the exit code would be -2 (seen in 3 of 80 random Ctrl-Cs)."""
    import atexit
    import os

    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(130)


def _quiet_exit() -> None:
    """After Ctrl-C: a second Ctrl-C during clean-up (atexit handlers, worker shutdown) must
    not print a traceback either."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _dispatch(args: argparse.Namespace) -> int | None:
    """Run the sub-command ``args.command`` (one handler per command)."""
    listings = {"backends": _list_backends, "rules": _list_rules, "datasets": _list_datasets}
    if args.command in listings:
        listings[args.command]()
        return 0
    handlers = {"phantom": _phantom, "extract": _extract, "study": _study, "demo": _demo,
                "report": _report, "bench": _checked_bench, "export": _export}
    return handlers[args.command](args)


def _phantom(args: argparse.Namespace) -> int:
    from spikebench.datasets.phantom import write_phantom

    out = write_phantom(args.out, cases=args.cases, seed=args.seed, shape=tuple(args.shape),
                        slices=tuple(args.slices), test_cases=args.test_cases,
                        progress=not args.quiet)
    _say(args, f"wrote {args.cases} training + {args.test_cases} test volumes to {out}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from spikebench.datasets.features import extract_features

    res = extract_features(args.root, args.out, workers=args.workers,
                           min_lesion_voxels=args.min_lesion_voxels, on_error=args.on_error,
                           progress=not args.quiet)
    _say(args, f"{res.n_rows} slices from {res.n_cases} cases -> {args.out} "
         f"({res.seconds:.1f} s)")
    for pid, reason in res.skipped:
        _say(args, f"  skipped {pid}: {reason}")
    return 0


def _study(args: argparse.Namespace) -> int:
    if args.study_command == "run":
        return _study_run(_resolve_spec(args.spec), args.out, args.trials, args.storage,
                          args.workers, not args.quiet)
    from spikebench.harness.status import study_status

    print(_table(study_status(args.target, args.storage)))
    return 0


def _demo(args: argparse.Namespace) -> int:
    spec = _resolve_spec(args.spec or DEMO_SPEC)
    code = _study_run(spec, Path(args.out), args.trials, None, args.workers, not args.quiet)
    from spikebench.reports import build_report

    report = build_report(Path(args.out))
    _say(args, f"report: {report / 'report.html'}")
    return code


def _report(args: argparse.Namespace) -> int:
    from spikebench.reports import build_report

    out = build_report(args.dir, args.out, n_bootstrap=args.bootstrap)
    _say(args, f"report written to {out} (report.md, report.html, tables/, figures/)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from spikebench.harness.export import export_run

    result = export_run(args.run, args.to, cell=args.cell, repeat=args.repeat,
                        allow_approximate=args.allow_approximate)
    print(result.report())
    return 0


def _say(args: argparse.Namespace, text: str) -> None:
    """Print ``text`` unless the command was given ``--quiet``."""
    if not getattr(args, "quiet", False):
        print(text)


def _resolve_spec(spec: str | Path) -> Path:
    """A spec path that exists, else the spec of that name shipped with the package."""
    from spikebench.studies import resolve_spec

    return resolve_spec(spec)


def _study_run(spec: Path, out: Path, trials: int | None, storage: str | None, workers: int,
               progress: bool) -> int:
    """Run the study; with ``progress`` (no ``--quiet``) also print its summary table."""
    import time

    from spikebench.harness.study import run_study
    from spikebench.harness.summary import summary_table

    started = time.perf_counter()
    run_study(spec, out, trials=trials, storage=storage, workers=workers, progress=progress)
    if progress:
        print(summary_table(out))
        print(f"\nresults folder: {out.resolve()}  ({time.perf_counter() - started:.0f} s)")
    return 0


def _table(frame: Any) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def _list_backends() -> None:
    from spikebench.backends import available_backends, get_backend

    for name in available_backends():
        try:
            d = get_backend(name).describe()
        except SpikebenchError as exc:
            print(f"{name:14s} not usable: {exc}")
            continue
        print(f"{name:14s} {d['version']:10s} rules: {', '.join(d['rules'])}; "
              f"resets: {', '.join(d['resets'])}; surrogates: {', '.join(d['surrogates'])}")


def _list_datasets() -> None:
    from spikebench.datasets.sources import available_sources, get_source

    for name in available_sources():
        try:
            source = get_source(name)
        except SpikebenchError as exc:
            print(f"{name:10s} not usable: {exc}")
            continue
        keys = ", ".join(source.Options.model_fields)
        print(f"{name:10s} {source.summary}\n{'':10s} [data] keys: {keys}")


def _list_rules() -> None:
    from spikebench.backends import available_backends, get_backend
    from spikebench.harness.rules import available_rules, get_rule

    backends = {}
    for name in available_backends():
        try:
            backends[name] = get_backend(name)
        except SpikebenchError:
            continue
    for name in available_rules():
        try:
            rule = get_rule(name)
        except SpikebenchError as exc:
            print(f"{name:10s} not usable: {exc}")
            continue
        if not rule.needs_backend:
            print(f"{name:10s} {rule.summary}\n{'':10s} backends: none needed (non-spiking)")
            continue
        serve = [b for b, be in backends.items() if name in be.rules]
        cannot = [b for b in backends if b not in serve]
        line = f"{name:10s} {rule.summary}\n{'':10s} backends: {', '.join(serve) or '-'}"
        if cannot:
            line += f"; not on: {', '.join(cannot)} (framework lacks the primitive)"
        print(line)


def _checked_bench(args: argparse.Namespace) -> int:
    _check_bench_args(args)
    return _bench(args)


def _check_bench_args(args: argparse.Namespace) -> None:
    """Refuse unknown backends and absurd sizes before ``bench`` measures anything."""
    limits = {"batch": 65_536, "inputs": 65_536, "hidden": 16_384, "steps": 10_000,
              "threads": 1024, "repeats": 100_000, "workers": 256, "trials": 100_000,
              "image_size": 8192}
    for name, high in limits.items():
        value = getattr(args, name, None)
        if value is not None and not 1 <= value <= high:
            raise UsageError(f"bench --{name.replace('_', '-')}: {value} is out of range "
                             f"[1, {high}]")
    from spikebench.harness.bench_conv import conv_option_problem

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
    """``bench --study SPEC [--throughput]`` and ``bench --protocol SPEC``."""
    if args.throughput:
        from spikebench.harness.bench_study import format_throughput, study_throughput

        res = study_throughput(args.study, trials=args.trials or 40, workers=(1, 2))
        _say(args, format_throughput(res))
    else:
        from spikebench.harness import bench_protocol as bp

        spec = args.protocol or args.study
        res = bp.trial_times(spec, trials=args.trials or 3, backends=args.backends,
                             rules=args.rules, threads=args.threads or 1)
        _say(args, bp.format_trial_times(res))
        if args.protocol is not None:
            res["protocol"] = bp.extrapolate(res)
            _say(args, bp.format_protocol(res, res["protocol"]))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str))
    return 0


def _bench(args: argparse.Namespace) -> int:
    if args.study is not None or args.protocol is not None:
        return _bench_study(args)
    if args.extract is not None:
        from spikebench.datasets.extract_bench import benchmark_extraction

        res = benchmark_extraction(args.extract, workers=args.workers)
        _say(args, json.dumps(res, indent=2))
        if args.json:
            args.json.write_text(json.dumps(res, indent=2))
        return 0
    from spikebench.harness import bench

    kw: dict[str, Any] = dict(threads=args.threads or 2, repeats=args.repeats,
                              compile=args.compile, density=args.density)
    if args.conv:
        from spikebench.harness.bench_conv import format_conv_bench, run_conv_bench

        res = run_conv_bench(args.backends, batch=args.batch or 16, steps=args.steps or 8,
                             image_size=args.image_size or 64, channels=args.channels or (8, 16),
                             device=args.device, **kw)
        _say(args, format_conv_bench(res))
        return _bench_done(args, res, bench.check_regression(res))
    kw.update(batch=args.batch or 128, inputs=args.inputs or 64, hidden=args.hidden or 128,
              steps=args.steps or 25, device=args.device or "cpu")
    if args.sweep:
        from spikebench.harness.bench_targets import format_sweep

        results = bench.sweep(args.backends, **kw)
        for res in results:
            _say(args, bench.format_bench(res) + "\n")
        _say(args, format_sweep(results))
        payload: Any = results
        problems = [p for res in results for p in bench.check_regression(res)]
    else:
        res = bench.run_bench(args.backends, **kw)
        _say(args, bench.format_bench(res))
        payload, problems = res, bench.check_regression(res)
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


if __name__ == "__main__":
    raise SystemExit(main())
