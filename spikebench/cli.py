"""The ``spikebench`` command line. Imports are lazy so ``spikebench --help`` is instant."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, NoReturn

from spikebench import __version__
from spikebench.cli_bench import add_bench_parser, run_bench_command, say
from spikebench.cli_listings import list_backends, list_datasets, list_rules
from spikebench.errors import SpikebenchError, UsageError

#: The shipped spec ``spikebench demo`` runs (package data ``spikebench/studies/demo.toml``).
DEMO_SPEC = "demo"
#: Exit codes: 0 done; 2 an error (one ``spikebench: error:`` line, nothing half-written);
#: 3 a study ran to the end but left cells failed (each named with its error on stderr; the
#: rest of the results are written; rerunning the same command retries them); 130 Ctrl-C;
#: 141 the reader of the output went away.
EXIT_ERROR, EXIT_CELLS_FAILED = 2, 3
QUIET_HELP = "no progress bars and no summary (errors still go to stderr)"


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default, ``(default: 12)``, unless the help already
    states it (a default of ``None`` means "from the spec" or similar, which the help says in
    words) or the flag is a switch (``--quiet``: off unless given)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            default = action.default
            shown = (" ".join(map(str, default)) if isinstance(default, (tuple, list))
                     else str(default))
            text += f" (default: {shown})"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one ``spikebench: error:`` line and exit code 2
    returned by :func:`main` (not a usage dump and ``SystemExit``), and every sub-command's
    help shows the defaults (:class:`HelpFormatter`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        # main() prints the one "spikebench: error:" prefix; the sub-command comes next
        command = self.prog.removeprefix("spikebench").strip()
        raise UsageError(f"{command + ': ' if command else ''}{message} "
                         f"(see {self.prog} --help)")


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


def _shipped_spec_names() -> str:
    """The names of the specs shipped with the installed package (``demo, msd-liver, ...``)."""
    from spikebench.studies import shipped_specs

    return ", ".join(shipped_specs()) or "none installed"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="spikebench",
        description="Leakage-free benchmark of spiking neural network backends × learning rules "
        "on liver CT (Medical Segmentation Decathlon Task03).",
    )
    p.add_argument("--version", action="version", version=f"spikebench {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           help="`spikebench COMMAND --help` documents its arguments")
    shipped = _shipped_spec_names()

    s = sub.add_parser("demo", help="phantom data -> study -> report, end to end (minutes)",
                       description="Run a shipped study spec on phantom data it generates, "
                       "then write its report.")
    s.add_argument("--out", default="results/demo", help="results folder")
    s.add_argument("--spec", default=None,
                   help=f"study spec file, or the name of a shipped spec ({shipped}) "
                   f"(default: {DEMO_SPEC})")
    s.add_argument("--trials", type=TRIALS, default=None,
                   help="Optuna trials per cell (default: the spec's [search].trials)")
    s.add_argument("--workers", type=WORKERS, default=1,
                   help="local worker processes; 1 reproduces bit for bit")
    s.add_argument("--quiet", action="store_true", help=QUIET_HELP)

    s = sub.add_parser("phantom", help="write a synthetic data set in the MSD Task03 layout")
    s.add_argument("out", type=Path, help="folder to write (dataset.json, imagesTr/, labelsTr/)")
    s.add_argument("--cases", type=bounded(1, 1000), default=12, help="training volumes")
    s.add_argument("--seed", type=bounded(0, 2**32 - 1), default=0,
                   help="random seed of the generated patients")
    s.add_argument("--shape", type=bounded(1, 2048), nargs=2, default=(96, 96),
                   metavar=("H", "W"), help="in-plane size of every slice, in voxels")
    s.add_argument("--slices", type=bounded(1, 1024), nargs=2, default=(24, 48),
                   metavar=("MIN", "MAX"), help="slices per volume, drawn in [MIN, MAX]")
    s.add_argument("--test-cases", type=bounded(0, 1000), default=2,
                   help="unlabelled volumes in imagesTs/, as the MSD release has")
    s.add_argument("--quiet", action="store_true", help=QUIET_HELP)

    s = sub.add_parser("extract", help="features per liver slice from an MSD-layout folder")
    s.add_argument("root", type=Path, help="folder holding dataset.json")
    s.add_argument("--out", type=Path, required=True, help="features .parquet to write")
    s.add_argument("--workers", type=WORKERS, default=1,
                   help="processes reading volumes in parallel")
    s.add_argument("--min-lesion-voxels", type=bounded(1, 10**9), default=1,
                   help="tumour voxels a slice needs to count as a lesion slice")
    s.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                   help="a bad case stops the run (fail) or is listed in the manifest and "
                   "left out (skip)")
    s.add_argument("--quiet", action="store_true", help=QUIET_HELP)

    s = sub.add_parser("study", help="run or inspect an Optuna study")
    ss = s.add_subparsers(dest="study_command", required=True, metavar="ACTION",
                          help="`spikebench study ACTION --help` documents its arguments")
    r = ss.add_parser("run", help="run (or resume) a study spec",
                      epilog="exit codes: 0 done; 2 an error (one line, nothing lost); 3 the "
                             "study ran but cells failed (named on stderr; rerun to retry "
                             "them); 130 interrupted (rerun to resume)")
    r.add_argument("spec", help=f"study spec file, or the name of a shipped spec ({shipped}); "
                   "a path that exists wins")
    r.add_argument("--out", type=Path, required=True, help="results folder")
    r.add_argument("--trials", type=TRIALS, default=None,
                   help="Optuna trials per cell (default: the spec's [search].trials)")
    r.add_argument("--storage", default=None,
                   help="Optuna storage URL, e.g. postgresql+psycopg://user:pw@host/db "
                   "(default: $SPIKEBENCH_STORAGE, else the spec's [search].storage, else "
                   "the journal file in --out)")
    r.add_argument("--workers", type=WORKERS, default=1, help="local worker processes")
    r.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    st = ss.add_parser("status", help="per-cell trial counts, best value, elapsed")
    st.add_argument("target", type=Path,
                    help="results folder, or a spec file together with --storage")
    st.add_argument("--storage", default=None,
                    help="Optuna storage URL of the study (default: $SPIKEBENCH_STORAGE, "
                    "else the spec's [search].storage, else the journal file in the results "
                    "folder)")

    s = sub.add_parser("report", help="tables, statistics and figures from a results folder")
    s.add_argument("dir", type=Path, help="results folder of a study (finished or running)")
    s.add_argument("--out", type=Path, default=None, help="report folder (default: DIR/report)")
    s.add_argument("--bootstrap", type=bounded(1, 100_000), default=None,
                   help="patient-bootstrap resamples of the intervals and tests (default: the "
                   "study's pre-specified [analysis].n_bootstrap)")
    s.add_argument("--bootstrap-seed", type=bounded(0, 2**32 - 1), default=None,
                   help="seed of the patient resamples (default: the study's pre-specified "
                   "[analysis].bootstrap_seed)")
    s.add_argument("--quiet", action="store_true", help=QUIET_HELP)

    s = sub.add_parser("calibrate", help="error rates of a spec's design, by simulation: "
                       "coverage, type-I error, power, false equivalence")
    s.add_argument("spec", help="study spec (a path, or the name of a shipped spec)")
    s.add_argument("--results", type=Path, default=None,
                   help="a results folder of this design: simulate its measured cohort and "
                   "between-run spread (default: none, the spec's [calibration] assumptions)")
    s.add_argument("--replicates", type=bounded(10, 100_000), default=None,
                   help="simulated studies per cohort composition (default: the spec's "
                   "[calibration].replicates, 400)")
    s.add_argument("--seed", type=bounded(0, 2**32 - 1), default=None,
                   help="seed of the simulation (default: the spec's [calibration].seed)")
    s.add_argument("--json", action="store_true",
                   help="print one JSON object per cohort composition (a list)")
    s.add_argument("--quiet", action="store_true", help=QUIET_HELP)

    sub.add_parser("backends", help="installed backends, versions, supported rules")
    sub.add_parser("rules", help="installed learning rules and the backends serving each")
    sub.add_parser("datasets", help="installed data sources (the [data] source plug-ins)")

    add_bench_parser(sub)

    s = sub.add_parser("export", help="export a trained network of a results folder to NIR")
    s.add_argument("run", type=Path, help="results folder (or one models/*.pt file)")
    s.add_argument("--to", type=Path, required=True, help="output .nir file")
    s.add_argument("--cell", default=None,
                   help="backend/rule (default: the best mean validation score)")
    s.add_argument("--repeat", type=bounded(0, 10_000), default=None,
                   help="which refit network: repeat (default: the first saved)")
    s.add_argument("--fold", type=bounded(0, 10_000), default=None,
                   help="outer fold of nested CV (default: the first saved)")
    s.add_argument("--refit", type=bounded(0, 10_000), default=None,
                   help="refit seed index (default: the first saved)")
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
        code = int(_dispatch(args) or 0)
        if _SWALLOWED_INTERRUPT:  # a Ctrl-C the runtime swallowed (see _redelivering)
            _SWALLOWED_INTERRUPT.clear()
            raise KeyboardInterrupt
        return code
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
    except RuntimeError as exc:  # a loop of symbolic links found by Path.resolve (< 3.13)
        from spikebench.oserror import describe_os_error, symlink_loop

        loop = symlink_loop(exc)
        if loop is None or os.environ.get("SPIKEBENCH_DEBUG"):
            raise
        print(f"spikebench: error: {describe_os_error(loop)}", file=sys.stderr)
        return 2


def entry() -> int:
    """The ``spikebench`` command: :func:`main`, then Ctrl-C is ignored while the interpreter
    shuts down. The work is done by then; without this a late Ctrl-C kills the process with
    no message (Python restores the default SIGINT action near the end of its shut-down)."""
    sys.unraisablehook = _redelivering(sys.unraisablehook)
    code = main()
    _quiet_exit()
    if code == 130:
        _exit_interrupted()
    return code


#: Set when a Ctrl-C was swallowed by a callback (see :func:`_redelivering`).
_SWALLOWED_INTERRUPT: list[bool] = []


def _redelivering(default: Any) -> Any:
    """An unraisable-exception hook that hands a swallowed Ctrl-C back to :func:`main`.

    A Ctrl-C that lands inside a callback Python cannot propagate from (a weakref callback of
    the import system's module locks, a ``__del__``) is printed as "Exception ignored in ..."
    with a traceback and dropped, and the command would carry on. The hook prints nothing,
    raises SIGINT again so that the interrupt reaches ``main`` at its next instruction, and
    leaves a mark that ``main`` checks when the command returns, in case Python delivered the
    new signal inside the hook itself: either way one line and exit 130.
    """
    import contextlib
    import signal

    def hook(unraisable: Any) -> None:
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            default(unraisable)
            return
        _SWALLOWED_INTERRUPT.append(True)
        # delivered here, where it cannot propagate either: main sees the mark instead
        with contextlib.suppress(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)

    return hook


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
    listings = {"backends": list_backends, "rules": list_rules, "datasets": list_datasets}
    if args.command in listings:
        listings[args.command]()
        return 0
    handlers = {"phantom": _phantom, "extract": _extract, "study": _study, "demo": _demo,
                "report": _report, "bench": run_bench_command, "export": _export,
                "calibrate": _calibrate}
    return handlers[args.command](args)


def _phantom(args: argparse.Namespace) -> int:
    from spikebench.datasets.phantom import write_phantom

    out = write_phantom(args.out, cases=args.cases, seed=args.seed, shape=tuple(args.shape),
                        slices=tuple(args.slices), test_cases=args.test_cases,
                        progress=not args.quiet)
    say(args, f"wrote {args.cases} training + {args.test_cases} test volumes to {out}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from spikebench.datasets.features import extract_features

    res = extract_features(args.root, args.out, workers=args.workers,
                           min_lesion_voxels=args.min_lesion_voxels, on_error=args.on_error,
                           progress=not args.quiet)
    say(args, f"{res.n_rows} slices from {res.n_cases} cases -> {args.out} "
         f"({res.seconds:.1f} s)")
    for pid, reason in res.skipped:
        say(args, f"  skipped {pid}: {reason}")
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
    say(args, f"report: {report / 'report.html'}")
    return code


def _calibrate(args: argparse.Namespace) -> int:
    import json

    from spikebench.harness.spec import load_spec
    from spikebench.reports.calibration import (
        calibrate,
        composition_from_results,
        format_results,
    )

    spec = load_spec(_resolve_spec(args.spec))
    measured = None
    if args.results is not None:
        from spikebench.reports import load_study

        measured = composition_from_results(load_study(args.results))
        if measured is None:
            raise UsageError(f"calibrate --results {args.results}: no predictions.parquet to "
                             "measure the cohort from; run the study (or leave --results out)")
    notice = None if args.quiet or args.json else (lambda text: print(text, file=sys.stderr))
    results = calibrate(spec, measured=measured, replicates=args.replicates, seed=args.seed,
                        progress=notice)
    if args.json:
        print(json.dumps([r.as_dict() for r in results], indent=2))
    else:
        say(args, format_results(results))
    return 0


def _report(args: argparse.Namespace) -> int:
    from spikebench.reports import build_report

    out = build_report(args.dir, args.out, n_bootstrap=args.bootstrap,
                       seed=args.bootstrap_seed)
    say(args, f"report written to {out} (report.md, report.html, tables/, figures/)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from spikebench.harness.export import export_run

    result = export_run(args.run, args.to, cell=args.cell, repeat=args.repeat, fold=args.fold,
                        refit=args.refit, allow_approximate=args.allow_approximate)
    print(result.report())
    return 0


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
    return _failed_cells(out)


def _failed_cells(out: Path) -> int:
    """Exit code 3 and one line per failed cell (its real error) when the study left any."""
    from spikebench.harness.folder import ResultsFolder

    failed = ResultsFolder(out).failed_cells()
    for cell, reason in sorted(failed.items()):
        print(f"spikebench: cell {cell} failed: {reason}", file=sys.stderr)
    if failed:
        print(f"spikebench: {len(failed)} cell(s) failed (the other results are written); "
              "rerun the same command to retry them", file=sys.stderr)
        return EXIT_CELLS_FAILED
    return 0


def _table(frame: Any) -> str:
    return frame.to_string(index=False, float_format=lambda v: f"{v:.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
