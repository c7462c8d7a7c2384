"""``spikebench bench --gpu-check`` (``make gpu-check``): is this GPU set up, and how fast is it?

One command runs, on CUDA, the dense engine benchmark (:func:`~spikebench.harness.bench.
engine.run_bench`), the convolutional one (:func:`~spikebench.harness.bench.conv.
run_conv_bench`) and a two-trial study of the demo's cells (:func:`two_trial_study`: every
backend × the surrogate and convolutional rules, with the CNN reference, holdout, one repeat)
and writes one JSON file: the device's name and compute capability, the torch, CUDA and cuDNN
versions, the machine, and each part's result or the error that stopped it. Without a CUDA
device it writes nothing and fails with one line saying why
(:func:`~spikebench.harness.plan.cuda_problem`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spikebench.errors import BackendError
from spikebench.harness.plan import cuda_problem

#: The demo's rules the two-trial study runs on CUDA (the dense and the convolutional path).
STUDY_RULES = ("surrogate", "conv_surrogate")


def device_info() -> dict[str, Any]:
    """Name, compute capability and memory of CUDA device 0 and the torch, CUDA and cuDNN
    versions (call only when :func:`cuda_problem` is empty)."""
    import torch

    from spikebench.provenance import machine, versions

    props = torch.cuda.get_device_properties(0)
    return {"device": torch.cuda.get_device_name(0),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(0))),
            "memory_gb": round(props.total_memory / 2**30, 2),
            "device_count": torch.cuda.device_count(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "versions": versions(), "machine": machine()}


def two_trial_study(device: str = "cuda", trials: int = 2) -> dict[str, Any]:
    """The demo spec's backends × :data:`STUDY_RULES` (and the CNN reference), ``trials``
    trials, holdout with one repeat, on ``device``; returns the wall time and per cell its
    status, device and training seconds as ``results.parquet`` records them."""
    import pandas as pd

    from spikebench.harness.folder import ResultsFolder
    from spikebench.harness.spec import load_spec
    from spikebench.harness.study import run_study
    from spikebench.studies import resolve_spec

    spec = load_spec(resolve_spec("demo"))
    spec = spec.model_copy(update={
        "grid": spec.grid.model_copy(update={"rules": list(STUDY_RULES)}),
        "study": spec.study.model_copy(update={"device": device, "references": ["cnn"],
                                               "name": "gpu-check"}),
        "split": spec.split.model_copy(update={"repeats": 1}),
        "search": spec.search.model_copy(update={"trials": trials, "storage": ""}),
        "space": {k: v for k, v in spec.space.items() if k in (*STUDY_RULES, "cnn")}})
    with tempfile.TemporaryDirectory(prefix="spikebench-gpu-check-") as tmp:
        started = time.perf_counter()
        run_study(spec, Path(tmp) / "run", progress=False)
        wall = time.perf_counter() - started
        rows = pd.read_parquet(ResultsFolder(Path(tmp) / "run").table("results"))
    cells = {f"{r.backend}/{r.rule}": {"status": r.status, "device": r.device,
                                       "train_seconds": r.train_seconds,
                                       "reason": getattr(r, "reason", "") or ""}
             for r in rows.itertuples()}
    return {"wall_s": wall, "trials": trials, "cells": cells}


def _part(run: Callable[[], Any]) -> tuple[Any, str]:
    """``(result, "")`` or ``(None, error)``: one part's failure does not lose the others."""
    try:
        return run(), ""
    except Exception as exc:  # the check reports every failure it meets, whatever it is
        return None, f"{type(exc).__name__}: {exc}"


def gpu_check(out: Path, *, say: Callable[[str], None] = print, repeats: int = 10,
              parts: dict[str, Callable[[], Any]] | None = None) -> dict[str, Any]:
    """Run the GPU check and write its JSON to ``out`` (module docstring).

    Parameters
    ----------
    out : Path
        The JSON file to write.
    say : callable
        Receives one line per part as it ends.
    repeats : int
        Timed rounds of the engine and conv benchmarks.
    parts : dict, optional
        Name -> callable (default: ``engine``, ``conv``, ``study`` on CUDA).

    Returns
    -------
    dict
        What was written: ``info`` (:func:`device_info`), ``ok``, and per part its result
        or ``{"error": ...}``.

    Raises
    ------
    BackendError
        No CUDA device (:func:`~spikebench.harness.plan.cuda_problem`); nothing is
        written.
    """
    from spikebench.io import write_json

    problem = cuda_problem()
    if problem:
        raise BackendError(problem)
    if parts is None:
        from spikebench.harness.bench.conv import run_conv_bench
        from spikebench.harness.bench.engine import run_bench

        parts = {"engine": lambda: run_bench(device="cuda", repeats=repeats),
                 "conv": lambda: run_conv_bench(device="cuda", repeats=repeats),
                 "study": two_trial_study}
    report: dict[str, Any] = {"info": device_info()}
    for name, run in parts.items():
        started = time.perf_counter()
        result, error = _part(run)
        report[name] = {"error": error} if error else result
        say(f"gpu-check {name}: {'FAILED ' + error if error else 'ok'} "
            f"({time.perf_counter() - started:.0f} s)")
    report["ok"] = not any(isinstance(report[n], dict) and report[n].get("error")
                           for n in parts)
    write_json(out, report)
    say(f"gpu-check: {'ok' if report['ok'] else 'FAILED'}; {report['info']['device']}, "
        f"torch {report['info']['torch']}, CUDA {report['info']['cuda']} -> {out}")
    return report
