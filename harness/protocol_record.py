"""What ``protocol.json`` records: enough to say exactly what ran and to run it again.

The data (source, path, sha256 of the feature table, excluded cases), the scheme and every
fold's sizes, the seeds, the metric and the pre-specified analysis, the search settings
(storage redacted), the worker count, the resolved start-up trials, the spec's hash, package
versions, the machine, the git commit and dirty flag of the sources, and which kernel path the
custom engine ran.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def protocol_record(session: Any, url: str, started: str, *, workers: int) -> dict[str, Any]:
    """The protocol.json mapping of a study session."""
    from spikebench.harness.folder import spec_identity
    from spikebench.harness.samplers import startup_trials
    from spikebench.harness.storage import redact
    from spikebench.provenance import kernel_path, machine, source_state, versions

    spec, data = session.spec, session.data
    info = _folder_relative(session.folder, dict(data.info))
    excluded = info.pop("excluded_cases", [])
    budget = session.plans[0].trials if session.plans else spec.search.trials
    search = {**spec.search.model_dump(mode="json"), "storage": redact(url), "trials": budget,
              "resolved_startup_trials": startup_trials(spec.search.startup_trials, budget)}
    return {
        "study": spec.study.name,
        "scheme": spec.split.scheme,
        "data": info,
        "excluded_cases": excluded,
        "splits": {f.key: _sizes(data, f) for f in session.folds if f.refit == 0},
        "repeats": spec.split.repeats,
        "refit_seeds": spec.split.n_refits,
        "seeds": {"study": spec.study.seed, "split": spec.split.seed,
                  "refit": sorted({p.refit_seed(f) for p in session.plans[:1]
                                   for f in session.folds})},
        "metric": spec.study.metric,
        "analysis": spec.analysis.model_dump(mode="json"),
        "grid": {"backends": spec.grid.backends, "rules": spec.grid.rules},
        "references": spec.study.references,
        "search": search,
        "workers": workers,
        "spec_sha256": spec_identity(spec)[0],
        "versions": versions(),
        "machine": machine(),
        "source": source_state(),
        "kernel_path": kernel_path(),
        "started": started,
    }


def _sizes(data: Any, fold: Any) -> dict[str, int]:
    out = {"repeat": fold.repeat, "fold": fold.fold}
    for name in ("train", "val", "test"):
        ids = getattr(fold, name)
        out[f"n_{name}_patients"] = len(ids)
        out[f"n_{name}_slices"] = int(np.isin(data.groups, np.asarray(ids, dtype=str)).sum())
    return out


#: ``data`` entries of protocol.json that hold paths (``images.folder`` below ``images``).
_PATHS = ("path", "features")


def _folder_relative(folder: Any, info: dict[str, Any]) -> dict[str, Any]:
    """Paths inside the results folder relative to it (the folder may be reached by another
    path or mounted elsewhere next time); paths outside it as they are."""
    for key in _PATHS:
        if isinstance(info.get(key), str):
            info[key] = folder.relative(info[key])
    images = info.get("images")
    if isinstance(images, dict) and isinstance(images.get("folder"), str):
        info["images"] = {**images, "folder": folder.relative(images["folder"])}
    return info
