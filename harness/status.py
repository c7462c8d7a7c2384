"""``spikebench study status``: per cell, trials complete / pruned / failed / running, the best
validation value, elapsed time and refits done — read from the storage and the folder only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from spikebench.errors import DataError, SpecError

if TYPE_CHECKING:
    import pandas as pd
    from optuna.storages import BaseStorage

    from spikebench.harness.folder import ResultsFolder
    from spikebench.harness.plan import CellPlan
    from spikebench.harness.protocol import Fold
    from spikebench.harness.spec import StudySpec


def study_status(target: str | Path, storage: str | None = None) -> pd.DataFrame:
    """A table of the study's cells (``target``: a results folder, or a spec with --storage)."""
    import pandas as pd

    from spikebench.harness.folder import ResultsFolder
    from spikebench.harness.spec import load_spec
    from spikebench.harness.storage import open_storage, storage_url

    target = Path(target)
    if not target.exists():
        if target.suffix == ".toml":
            raise SpecError(f"{target}: study spec not found")
        raise DataError(f"results folder {target} does not exist; pass the --out folder of "
                        "`spikebench study run` (or a spec file with --storage)")
    if target.is_dir():
        folder = ResultsFolder(target)
        if not folder.spec_file.exists():
            raise DataError(f"{target} is not a study folder (no spec.toml); pass the spec file")
        if folder.spec_file.stat().st_size == 0:
            raise DataError(f"{folder.spec_file} is empty (cut short by a crash or a full disk "
                            "with an older spikebench); rerun `spikebench study run` with the "
                            "study's spec and this --out to rewrite it")
        spec, out = load_spec(folder.spec_file), folder
    else:
        spec, out = load_spec(target), None
    if out is None and not (storage or spec.search.storage):
        raise SpecError("with a spec file and no --storage, pass the results folder instead")
    url = storage_url(out.journal if out else Path("optuna.journal"), spec.search.storage,
                      storage)
    store = open_storage(url, read_only=True)  # status never writes (read-only disks too)
    folds = _folds(out)
    rows = []
    for plan in _plans(spec, folds):
        rows.append(_cell_status(plan, store, out, spec.search.trials))
    return pd.DataFrame(rows)


def _folds(out: ResultsFolder | None) -> list[Fold]:
    """The folds recorded in ``splits.json`` (none before the study has started)."""
    from spikebench.harness.folder import read_json
    from spikebench.harness.protocol import Fold

    if out is None or not out.splits_file.exists():
        return []
    raw = read_json(out.splits_file)
    folds = []
    for f in raw.get("folds", []) if isinstance(raw, dict) else []:
        folds.append(Fold.from_dict(f))
    return folds


def _plans(spec: StudySpec, folds: list[Fold]) -> list[CellPlan]:
    from spikebench.harness.plan import plan_cells

    return [p for p in plan_cells(spec, folds, device="cpu") if p.tuned or p.skip_reason]


def _cell_status(plan: CellPlan, store: BaseStorage, out: ResultsFolder | None, target: int
                 ) -> dict[str, Any]:
    from spikebench.harness.study import load_existing

    counts = dict.fromkeys(("complete", "pruned", "failed", "running", "waiting"), 0)
    best, starts, ends = float("nan"), [], []
    names = list(plan.studies()) or [f"{plan.study}/{plan.backend}/{plan.rule}"]
    for name in names:
        study = load_existing(store, name)
        if study is None:
            continue
        for t in study.get_trials(deepcopy=False):
            key = "failed" if t.state.name == "FAIL" else t.state.name.lower()
            counts[key] = counts.get(key, 0) + 1
            if t.state.name == "COMPLETE":
                best = max(best, t.values[0]) if best == best else t.values[0]
            starts += [t.datetime_start] if t.datetime_start else []
            ends += [t.datetime_complete] if t.datetime_complete else []
    elapsed = (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")
    done = sum(out.has(out.row(plan.key, f.key)) for f in plan.folds) if out else 0
    return {"backend": plan.backend, "rule": plan.rule, **counts,
            "target": plan.trials * max(len(names), 1), "best_val": best, "elapsed_s": elapsed,
            "repeats_done": f"{done}/{len(plan.folds)}", "note": plan.skip_reason}
