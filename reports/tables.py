"""The report's tables as pure functions of :class:`~spikebench.reports.load.StudyTables`.

- :func:`cell_order` — the order cells appear in (the spec's grid order, references last);
- :func:`main_table` — one row per finished cell: every test metric as mean, std over repeats
  (from ``results.parquet``) and a 95 % patient-bootstrap interval (from ``predictions.parquet``,
  see :mod:`spikebench.reports.bootstrap`), plus cost per sample and the energy estimate;
- :func:`coverage_table` — which cells / repeats are missing, skipped or failed, and why;
- :func:`protocol_items` / :func:`splits_table` — the protocol statement.

Numbers stay numbers here; :mod:`spikebench.reports.render` turns them into text.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from spikebench.harness.results import METRICS

from .bootstrap import cell_intervals
from .energy import energy_nj, reference_macs
from .load import StudyTables

TEST_METRICS = tuple(f"test_{m}" for m in METRICS)
REFERENCE_RULES = ("logistic_regression", "mlp")
#: Cost columns of the main table: column → label.
COST_COLUMNS = {
    "train_seconds_per_epoch": "train s / epoch",
    "infer_ms_per_sample": "inference ms / sample",
    "spikes_per_sample": "spikes / sample",
    "synops_per_sample": "synops / sample",
    "macs_per_sample": "MACs / sample",
    "energy_nj_per_sample": "energy nJ / sample",
}
METRIC_LABELS = {
    "accuracy": "accuracy", "balanced_accuracy": "balanced acc.", "roc_auc": "ROC-AUC",
    "pr_auc": "PR-AUC", "f1": "F1", "mcc": "MCC", "patient_roc_auc": "patient ROC-AUC",
    "patient_pr_auc": "patient PR-AUC",
}


def metric_label(column: str) -> str:
    """``test_patient_pr_auc`` → ``patient PR-AUC``."""
    name = column.removeprefix("test_").removeprefix("val_")
    return METRIC_LABELS.get(name, name.replace("_", " "))


def _grid(tables: StudyTables) -> tuple[list[str], list[str]]:
    grid = tables.protocol.get("grid") or tables.spec.get("grid") or {}
    backends = [str(b) for b in grid.get("backends", []) if isinstance(grid, dict)]
    rules = [str(r) for r in grid.get("rules", []) if isinstance(grid, dict)]
    return backends, rules


def _expected_references(tables: StudyTables) -> list[str]:
    study = tables.spec.get("study", {})
    refs = study.get("references") if isinstance(study, dict) else None
    return [str(r) for r in refs] if isinstance(refs, list) else []


def cell_order(tables: StudyTables) -> list[tuple[str, str]]:
    """SNN cells in grid order (backend-major), then any other observed cells, references last."""
    backends, rules = _grid(tables)
    res = tables.results
    observed = list(dict.fromkeys(zip(res["backend"], res["rule"])))
    snn_observed = [c for c in observed if c[0] != "reference"]
    backends = list(dict.fromkeys([*backends, *(b for b, _ in snn_observed)]))
    rules = list(dict.fromkeys([*rules, *(r for _, r in snn_observed)]))
    cells = [(b, r) for b in backends for r in rules]
    refs = list(REFERENCE_RULES) + _expected_references(tables)
    refs += [r for b, r in observed if b == "reference"]
    cells += [("reference", r) for r in dict.fromkeys(refs)]
    return cells


def expected_repeats(tables: StudyTables) -> int:
    """Repeats the study planned (protocol / spec), else the most any cell has."""
    for value in (tables.protocol.get("repeats"),
                  (tables.spec.get("split") or {}).get("repeats")):
        try:
            if value is not None and int(value) > 0:
                return int(value)
        except (TypeError, ValueError):
            continue
    reps = tables.results["repeat"]
    return int(reps.max()) + 1 if reps.notna().any() and reps.max() >= 0 else 0


def _n_features(tables: StudyTables) -> float | None:
    data = tables.protocol.get("data")
    if isinstance(data, dict):
        for key in ("n_features", "features_count"):
            if isinstance(data.get(key), int | float):
                return float(data[key])
    return None


def per_row_cost(tables: StudyTables) -> pd.DataFrame:
    """The finished rows with ``macs_per_sample`` (reference rows) and ``energy_nj_per_sample``
    filled in (see :mod:`spikebench.reports.energy`)."""
    ok = tables.ok.copy()
    if "macs_per_sample" not in ok.columns:
        ok["macs_per_sample"] = np.nan
    ok["macs_per_sample"] = pd.to_numeric(ok["macs_per_sample"], errors="coerce")
    n_features = _n_features(tables)
    macs = []
    for _, row in ok.iterrows():
        value = row["macs_per_sample"]
        if row["kind"] == "reference" and not (isinstance(value, float) and math.isfinite(value)):
            value = reference_macs(row["rule"], row.get("params"), n_features)
        macs.append(value if row["kind"] == "reference" else np.nan)
    ok["macs_per_sample"] = pd.to_numeric(pd.Series(macs, index=ok.index), errors="coerce")
    ok["energy_nj_per_sample"] = [
        energy_nj(k, s, m) for k, s, m in
        zip(ok["kind"], ok["synops_per_sample"], ok["macs_per_sample"])
    ]
    return ok


def main_table(tables: StudyTables, *, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per finished cell (SNN and reference): ``n_repeats``, for every test metric
    ``<m>_mean``, ``<m>_std`` (sample std over repeats, ddof=1), ``<m>_ci_low``, ``<m>_ci_high``
    (patient bootstrap) and for every cost column ``<c>_mean``, ``<c>_std``."""
    ok = per_row_cost(tables)
    preds = tables.primary_predictions()
    metrics = tuple(m.removeprefix("test_") for m in TEST_METRICS)
    rows = []
    for backend, rule in cell_order(tables):
        g = ok[(ok["backend"] == backend) & (ok["rule"] == rule)]
        if g.empty:
            continue
        row: dict[str, Any] = {"backend": backend, "rule": rule, "kind": str(g["kind"].iloc[0]),
                               "n_repeats": int(g["repeat"].nunique())}
        for col in (*TEST_METRICS, *COST_COLUMNS):
            values = pd.to_numeric(g[col], errors="coerce")
            row[f"{col}_mean"] = float(values.mean()) if values.notna().any() else np.nan
            row[f"{col}_std"] = float(values.std()) if values.notna().sum() > 1 else np.nan
        cis: dict[str, tuple[float, float]] = {}
        if preds is not None:
            p = preds[(preds["backend"] == backend) & (preds["rule"] == rule)
                      & preds["repeat"].isin(g["repeat"])]
            if not p.empty:
                cis = cell_intervals(p, metrics, n_bootstrap=n_bootstrap, seed=seed)
        for m in metrics:
            low, high = cis.get(m, (np.nan, np.nan))
            row[f"test_{m}_ci_low"], row[f"test_{m}_ci_high"] = low, high
        rows.append(row)
    return pd.DataFrame(rows)


def coverage_table(tables: StudyTables) -> pd.DataFrame:
    """Per expected or observed cell: state (complete / partial / skipped / failed / not
    started), repeats done of expected, missing repeats, and the reasons given."""
    n_expected = expected_repeats(tables)
    res = tables.results
    rows = []
    for backend, rule in cell_order(tables):
        g = res[(res["backend"] == backend) & (res["rule"] == rule)]
        if g.empty and backend == "reference" and rule not in _expected_references(tables):
            continue  # a default reference name this study never planned
        ok = g[g["status"] == "ok"]
        done = sorted(int(r) for r in ok["repeat"].dropna().unique())
        bad = g[g["status"] != "ok"]
        missing = [r for r in range(n_expected) if r not in done]
        if not g.empty and ok.empty and not bad.empty:
            state = str(bad["status"].iloc[0])
        elif g.empty:
            state = "not started"
        elif missing:
            state = "partial"
        else:
            state = "complete"
        reasons = "; ".join(dict.fromkeys(
            f"{s}: {r}" if r else s for s, r in zip(bad["status"], bad["reason"])))
        rows.append({"backend": backend, "rule": rule, "state": state,
                     "repeats_done": len(done), "repeats_expected": n_expected,
                     "missing_repeats": ", ".join(map(str, missing)), "reason": reasons})
    return pd.DataFrame(rows, columns=["backend", "rule", "state", "repeats_done",
                                       "repeats_expected", "missing_repeats", "reason"])


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items() if v not in (None, ""))
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def protocol_items(tables: StudyTables) -> list[tuple[str, str]]:
    """The protocol statement as (label, text) pairs; fields the protocol lacks are omitted."""
    proto = tables.protocol
    items: list[tuple[str, str]] = []
    if proto.get("study"):
        items.append(("study", str(proto["study"])))
    data = proto.get("data") if isinstance(proto.get("data"), dict) else {}
    for key in ("source", "path", "sha256", "n_patients", "n_slices", "n_features"):
        if data.get(key) not in (None, ""):
            items.append((f"data {key}", str(data[key])))
    excluded = proto.get("excluded_cases")
    if isinstance(excluded, list):
        items.append(("excluded cases", str(len(excluded))))
    for key in ("repeats", "metric"):
        if proto.get(key) not in (None, ""):
            items.append((key, str(proto[key])))
    if proto.get("seeds"):
        items.append(("seeds", _text(proto["seeds"])))
    search = proto.get("search") if isinstance(proto.get("search"), dict) else {}
    storage = proto.get("storage") or search.get("storage")
    if search:
        items.append(("search", _text({k: v for k, v in search.items() if k != "storage"})))
    if storage:
        items.append(("storage", _text(storage)))
    if isinstance(proto.get("machine"), dict):
        items.append(("machine", _text(proto["machine"])))
    if isinstance(proto.get("versions"), dict):
        items.append(("versions", _text(proto["versions"])))
    for key in ("started", "finished"):
        if proto.get(key):
            items.append((key, str(proto[key])))
    if "finished" not in proto and proto:
        items.append(("finished", "not recorded (study still running?)"))
    return items


def excluded_cases(tables: StudyTables) -> pd.DataFrame:
    """The cases the data manifest excluded, with reasons."""
    excluded = tables.protocol.get("excluded_cases")
    rows = [e for e in excluded if isinstance(e, dict)] if isinstance(excluded, list) else []
    return pd.DataFrame(rows, columns=["patient_id", "reason"]) if rows else pd.DataFrame(
        columns=["patient_id", "reason"])


def splits_table(tables: StudyTables) -> pd.DataFrame:
    """Patients and slices per split and repeat, from ``protocol.json``."""
    splits = tables.protocol.get("splits")
    if not isinstance(splits, dict):
        return pd.DataFrame()
    rows = []
    for repeat, info in sorted(splits.items(), key=lambda kv: str(kv[0])):
        if isinstance(info, dict):
            rows.append({"repeat": repeat, **{k: info.get(k) for k in (
                "n_train_patients", "n_val_patients", "n_test_patients",
                "n_train_slices", "n_val_slices", "n_test_slices")}})
    return pd.DataFrame(rows)
