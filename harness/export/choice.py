"""Which network ``spikebench export`` writes, and the study's decisions that go with it.

:func:`choose` picks a refit network of a results folder — by default the cell with the best
mean validation score (``val_<[study].metric>`` over the cell's refit rows; never a test
score), then the refit of ``--repeat`` / ``--fold`` / ``--refit`` (default: the first one
saved) — and reads what the study decided with it: the decision threshold chosen on
validation (results.parquet ``threshold`` of that refit row), the threshold rule, and the
refit's provenance (study, cell, repeat, fold, refit, seed, best trial, spec hash).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from pathlib import Path
from typing import Any

from spikebench.errors import DataError
from spikebench.harness.folder import ResultsFolder

#: The threshold of a network whose study decisions cannot be found (a loose model file).
DEFAULT_THRESHOLD = 0.5
#: ``r<repeat>[f<fold>][s<refit>]``: a refit's key in a model file name (Fold.key).
_KEY = re.compile(r"r(\d+)(?:f(\d+))?(?:s(\d+))?")


@dataclasses.dataclass(frozen=True)
class Choice:
    """The network to export and the study's decisions with it."""

    model: Path
    #: The results folder holding it (None: a loose model file).
    run_dir: Path | None
    #: study, cell, backend, rule, repeat, fold, refit, seed, best_trial, spec_sha256.
    provenance: dict[str, Any]
    threshold: float
    threshold_rule: str
    #: Where the threshold came from (a sentence for the sidecar).
    threshold_source: str


def choose(run: Path, cell: str | None = None, repeat: int | None = None,
           fold: int | None = None, refit: int | None = None) -> Choice:
    """The network of ``run`` (a results folder, or one ``models/*.pt`` file) to export."""
    if run.is_file():
        # a model file inside a results folder's models/ reads that folder; a loose one not
        folder_root = run.parent.parent
        inside = run.parent == ResultsFolder(folder_root).models_dir
        return _decided(run, folder_root if inside else None)
    folder = ResultsFolder(run)
    if not folder.models_dir.is_dir() and not folder.table("results").exists():
        raise DataError(f"{run}: not a spikebench results folder (no results.parquet, no "
                        "models/); give the folder `spikebench study run --out` wrote, or a "
                        "models/*.pt file")
    saved = saved_models(folder)
    if cell is None:
        cell = best_cell_on_validation(folder, {c for c, _ in saved})
    elif cell.count("/") != 1:
        raise DataError(f"--cell must be BACKEND/RULE, got {cell!r}")
    key = cell.replace("/", "__")
    mine = sorted(k for c, k in saved if c == key)
    if not mine:
        have = ", ".join(sorted({c.replace("__", "/") for c, _ in saved})) or "none"
        raise DataError(f"no saved network of {cell} in {folder.models_dir} (cells with saved "
                        f"networks: {have}; rules without a LIF network, e.g. the Tempotron, "
                        "are not exportable)")
    wanted = (repeat, fold, refit)
    if wanted == (None, None, None):
        chosen = mine[0]
    else:
        match = [k for k in mine if all(w is None or w == v for w, v in zip(wanted, k))]
        if not match:
            listing = "; ".join(f"--repeat {r} --fold {f} --refit {s}" for r, f, s in mine)
            raise DataError(f"no saved network of {cell} for repeat {_or_any(repeat)}, fold "
                            f"{_or_any(fold)}, refit {_or_any(refit)}; saved: {listing}")
        chosen = match[0]
    return _decided(_model_path(folder, key, chosen), folder.root)


def _or_any(value: int | None) -> str:
    return "any" if value is None else str(value)


def saved_models(folder: ResultsFolder) -> list[tuple[str, tuple[int, int, int]]]:
    """``(cell key, (repeat, fold, refit))`` of every network in ``models/``."""
    out = []
    if folder.models_dir.is_dir():
        for path in folder.models_dir.glob("*.pt"):
            cell, _, key = path.stem.rpartition("__")
            found = _KEY.fullmatch(key)
            if cell and found:
                out.append((cell, tuple(int(g or 0) for g in found.groups())))
    return sorted(out)  # type: ignore[arg-type]  # three ints per key, by the pattern


def _model_path(folder: ResultsFolder, cell_key: str, key: tuple[int, int, int]) -> Path:
    """The model file of ``key`` (its name as Fold.key spells it: with or without ``f``)."""
    repeat, fold, refit = key
    tail = f"s{refit}" if refit else ""
    for name in (f"r{repeat}f{fold}{tail}", f"r{repeat}{tail}"):
        path = folder.model(cell_key, name)
        if path.exists():
            return path
    raise DataError(f"{folder.models_dir}: no model file for {cell_key} {key}")


def read_results(folder: ResultsFolder) -> Any:
    """results.parquet as a DataFrame (a damaged table is one error naming it)."""
    import pandas as pd

    path = folder.table("results")
    if not path.exists():
        raise DataError(f"{path} not found: is {folder.root} a spikebench results folder?")
    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise DataError(f"{path}: unreadable ({type(exc).__name__}: {first}); it is damaged: "
                        "rerun `spikebench study run` with the same spec and --out to rebuild "
                        "it from the per-refit files in rows/") from None


def study_metric(folder: ResultsFolder) -> str:
    """The validation metric the study tuned on (``[study].metric``; default ``pr_auc``)."""
    spec = _read(folder.spec_file, tomllib.loads)
    metric = (spec.get("study") or {}).get("metric") or _read(
        folder.protocol_file, json.loads).get("metric")
    return str(metric or "pr_auc")


def best_cell_on_validation(folder: ResultsFolder, with_model: set[str]) -> str:
    """``backend/rule`` of the SNN cell with a saved network whose refit rows have the best
    mean validation score (the study's metric); test scores are never looked at."""
    res = read_results(folder)
    need = {"status", "kind", "backend", "rule"}
    if not need <= set(res.columns):
        raise DataError(f"{folder.table('results')}: lacks the columns {sorted(need)}")
    metric = study_metric(folder)
    column = f"val_{metric}" if f"val_{metric}" in res.columns else "best_val"
    ok = res[(res["status"] == "ok") & (res["kind"] == "snn")]
    ok = ok[[f"{b}__{r}" in with_model for b, r in zip(ok["backend"], ok["rule"])]]
    if ok.empty or column not in ok.columns:
        raise DataError(f"no saved network in {folder.models_dir} of a finished SNN cell (rules "
                        "without a LIF network, e.g. the Tempotron, are not exportable)")
    means = ok.groupby(["backend", "rule"])[column].mean()
    means = means[means.notna()] if means.notna().any() else means.fillna(0.0)
    best = sorted(means.items(), key=lambda kv: (-float(kv[1]), kv[0]))[0][0]
    return f"{best[0]}/{best[1]}"


def _decided(model: Path, run_dir: Path | None) -> Choice:
    """The study's threshold, threshold rule and provenance of the network in ``model``."""
    from spikebench.backends.serialize import load_network

    _, _, meta = load_network(model)
    cell = str(meta.get("cell") or "")
    backend, _, rule = cell.partition("__")
    provenance: dict[str, Any] = {
        "study": meta.get("study"), "cell": f"{backend}/{rule}" if rule else None,
        "backend": backend or None, "rule": rule or None, "repeat": meta.get("repeat"),
        "fold": meta.get("fold"), "refit": meta.get("refit"), "seed": meta.get("seed"),
        "best_trial": meta.get("best_trial"), "spec_sha256": None,
        "model_file": model.name}
    threshold = meta.get("threshold")
    rule_name = str(meta.get("threshold_rule") or "")
    source = "the model file (meta['threshold'])"
    if run_dir is not None:
        folder = ResultsFolder(run_dir)
        spec = _read(folder.spec_file, tomllib.loads)
        rule_name = rule_name or str((spec.get("study") or {}).get("threshold") or "")
        provenance["spec_sha256"] = (_read(folder.identity_file, json.loads).get("spec_sha256")
                                     or _read(folder.protocol_file, json.loads)
                                     .get("spec_sha256"))
        row = _refit_row(folder, provenance)
        if row is not None:
            provenance.update({k: _plain(row[k]) for k in ("study", "seed", "best_trial")
                               if k in row and _plain(row[k]) is not None})
            if "threshold" in row and _finite(row["threshold"]):
                threshold = float(row["threshold"])
                source = (f"results.parquet: the threshold of this refit's row, chosen on "
                          f"validation ({rule_name or 'rule unknown'})")
    if threshold is None or not _finite(threshold):
        threshold, source = DEFAULT_THRESHOLD, (
            "not found (no results row and no meta['threshold'] for this network): "
            f"the default {DEFAULT_THRESHOLD}")
        rule_name = rule_name or "fixed"
    return Choice(model, run_dir, provenance, float(threshold), rule_name or "unknown", source)


def _refit_row(folder: ResultsFolder, provenance: dict[str, Any]) -> dict[str, Any] | None:
    """The results.parquet row of the refit behind the network (None when absent)."""
    path = folder.table("results")
    if not path.exists() or provenance["backend"] is None:
        return None
    res = read_results(folder)
    keep = (res["backend"] == provenance["backend"]) & (res["rule"] == provenance["rule"])
    for key in ("repeat", "fold", "refit"):
        if key in res.columns and provenance.get(key) is not None:
            keep &= res[key] == int(provenance[key])
    if "status" in res.columns:
        keep &= res["status"] == "ok"
    rows = res[keep]
    return {str(k): v for k, v in rows.iloc[0].items()} if len(rows) else None


def _plain(value: Any) -> Any:
    """A numpy scalar as a Python value (None for NaN)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _read(path: Path, parse: Any) -> dict[str, Any]:
    try:
        out = parse(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}
