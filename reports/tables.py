"""The report's tables as pure functions of :class:`~spikebench.reports.load.StudyTables`.

- :func:`cell_order` — the order cells appear in (the spec's grid order, references last);
- :func:`main_table` — one row per finished cell: every test metric as mean, std over repeats
  (from ``results.parquet``; under ``nested-cv`` from each repeat's pooled out-of-fold
  predictions) and a 95 % interval with a patient and a training term (from
  ``predictions.parquet``: the clustered DeLong kernel for ROC-AUC, one patient resample plan
  shared by all cells otherwise; see :mod:`spikebench.reports.bootstrap`), plus ACs, MACs and the
  energy estimate per sample (:mod:`spikebench.reports.energy`) and, when a rule wrote them,
  the pooling additions per sample (:func:`cost_columns`);
- :func:`lesion_recall_table` — slice recall by tumour-size stratum, when predictions carry
  ``lesion_mm2``;
- :func:`coverage_table` — which cells / repeats are missing, skipped or failed, and why;
- :func:`protocol_items` / :func:`splits_table` — the protocol statement.

Numbers stay numbers here; :mod:`spikebench.reports.render` turns them into text.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pandas as pd

from spikebench.harness.results import METRICS

from .bootstrap import StudyBootstrap
from .energy import energy_nj, operation_counts
from .load import UNIT_KEYS, StudyTables

TEST_METRICS = tuple(f"test_{m}" for m in METRICS)
REFERENCE_RULES = ("logistic_regression", "mlp")
#: The report's tracks: the feature table, and the liver crops (image rules, ``track`` column).
TRACKS = ("features", "images")
#: Cost columns of the main table: column → label. The labels are short (a cost table has many
#: columns and must fit a page): "per test sample" is said once by the table's caption, which
#: also explains the counts (:data:`COST_LEGEND`); the headers keep the units.
COST_COLUMNS = {
    "train_seconds_per_epoch": "train (s / epoch)",
    "infer_ms_per_sample": "inference (ms / sample)",
    "spikes_per_sample": "spikes",
    "synops_per_sample": "synops",
    "acs_per_sample": "ACs",
    "macs_per_sample": "MACs",
    "energy_nj_per_sample": "energy (nJ)",
}
#: Cost columns only some rules write (``pool_adds_per_sample``: the additions of the image
#: rules' average-pooling front-end, which are not synaptic events and not in ``synops`` or
#: the energy); shown only when some finished row has a value.
OPTIONAL_COST_COLUMNS = {
    "pool_adds_per_sample": "pool adds",
}
#: What the cost table's counts are (its caption says it once, not every header).
COST_LEGEND = ("synops = synaptic operations = ACs (accumulates) + MACs "
               "(multiply-accumulates); energy: estimate from ACs and MACs (see Methods)")
#: NeuroBench's metrics (:mod:`spikebench.harness.network_metrics`): main-table column →
#: NeuroBench's name. The report's NeuroBench table shows them under these names.
NEUROBENCH_COLUMNS = {
    "footprint_bytes": "Footprint (bytes)",
    "connection_sparsity": "ConnectionSparsity",
    "activation_sparsity": "ActivationSparsity",
    "macs_per_sample": "Effective_MACs",
    "acs_per_sample": "Effective_ACs",
    "dense_synops_per_sample": "Dense",
}
#: What the NeuroBench table's numbers are (its caption).
NEUROBENCH_LEGEND = (
    "NeuroBench's metrics per test sample under NeuroBench's names, computed by spikebench "
    "(a test checks them against NeuroBench 2.3): Footprint = bytes of weights and biases; "
    "ConnectionSparsity = share of zero weights; ActivationSparsity = share of zero neuron "
    "outputs over all LIF layers and time steps; Effective_MACs / Effective_ACs = the "
    "synaptic operations done (SynOps: non-zero inputs x fan-out); Dense = the SynOps if "
    "every input were non-zero. Footprint, the sparsities and Dense are empty where the model "
    "is not a feed-forward LIF network; a reference's MACs count every input")
POOL_ADDS_NOTE = ("pool adds: additions of the average-pooling front-end, not synaptic "
                  "events (in neither synops nor energy)")
#: Lower edges (mm²) of the lesion-size strata: <100, 100–500, ≥500.
LESION_STRATA_MM2 = (0.0, 100.0, 500.0)
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


def cost_columns(frame: pd.DataFrame, suffix: str = "") -> dict[str, str]:
    """The cost columns to show (column → label): :data:`COST_COLUMNS`, then each of
    :data:`OPTIONAL_COST_COLUMNS` that some row of ``frame`` has a value of (in column
    ``<column><suffix>``; ``suffix="_mean"`` on the main table), so a study whose rules never
    write one gets no empty column."""
    extra = {col: label for col, label in OPTIONAL_COST_COLUMNS.items()
             if f"{col}{suffix}" in frame.columns
             and pd.to_numeric(frame[f"{col}{suffix}"], errors="coerce").notna().any()}
    return {**COST_COLUMNS, **extra}


def neurobench_columns(frame: pd.DataFrame, suffix: str = "") -> dict[str, str]:
    """The columns of :data:`NEUROBENCH_COLUMNS` that some row of ``frame`` has a value of (in
    ``<column><suffix>``); empty for a study without feed-forward LIF networks or written
    before spikebench recorded them."""
    return {col: label for col, label in NEUROBENCH_COLUMNS.items()
            if f"{col}{suffix}" in frame.columns
            and pd.to_numeric(frame[f"{col}{suffix}"], errors="coerce").notna().any()}


def per_row_cost(tables: StudyTables) -> pd.DataFrame:
    """The finished rows with ``acs_per_sample``, ``macs_per_sample``, ``cost_basis`` and
    ``energy_nj_per_sample`` (see :mod:`spikebench.reports.energy`; old folders fall back to
    synaptic operations priced as ACs, labelled so)."""
    ok = tables.ok.copy()
    counts = [operation_counts(k, a, m, s) for k, a, m, s in zip(
        ok["kind"], ok["acs_per_sample"], ok["macs_per_sample"], ok["synops_per_sample"])]
    ok["acs_per_sample"] = [c[0] for c in counts]
    ok["macs_per_sample"] = [c[1] for c in counts]
    ok["cost_basis"] = [c[2] for c in counts]
    ok["energy_nj_per_sample"] = [energy_nj(a, m) for a, m, _ in counts]
    return ok


def study_bootstrap(tables: StudyTables, *, n_bootstrap: int, seed: int, top_k: int = 3
                    ) -> StudyBootstrap | None:
    """One shared resample plan over the primary predictions of every finished model (rows of
    results.parquet with status ok), or None without predictions."""
    preds = tables.primary_predictions()
    if preds is None:
        return None
    done = tables.ok[list(UNIT_KEYS)].dropna().drop_duplicates()
    done["repeat"] = done["repeat"].astype(preds["repeat"].dtype)
    preds = preds.merge(done, on=list(UNIT_KEYS), how="inner")
    if preds.empty:
        return None
    ok = tables.ok
    n_train = (pd.to_numeric(ok["n_train_patients"], errors="coerce")
               + pd.to_numeric(ok["n_val_patients"], errors="coerce").fillna(0)).mean()
    n_test = pd.to_numeric(ok["n_test_patients"], errors="coerce").mean()
    return StudyBootstrap(preds, scheme=tables.scheme, n_bootstrap=n_bootstrap, seed=seed,
                          top_k=top_k, n_train=float(n_train), n_test=float(n_test))


def _track(rows: pd.DataFrame) -> str:
    """A cell's track (features | images); folders from before the image track: features."""
    if "track" not in rows.columns or rows["track"].isna().all():
        return "features"
    return str(rows["track"].dropna().iloc[0])


def _summary(values: pd.Series) -> tuple[float, float]:
    values = pd.to_numeric(values, errors="coerce")
    mean = float(values.mean()) if values.notna().any() else np.nan
    return mean, float(values.std()) if values.notna().sum() > 1 else np.nan


def main_table(tables: StudyTables, *, n_bootstrap: int = 1000, seed: int = 0,
               bootstrap: StudyBootstrap | None = None) -> pd.DataFrame:
    """One row per finished cell (SNN and reference): ``n_repeats``, for every test metric
    ``<m>_mean``, ``<m>_std`` (sample std over repeats, ddof=1), ``<m>_ci_low``, ``<m>_ci_high``
    (patient bootstrap), for every cost column (:func:`cost_columns`: optional ones only when
    some row has them) and NeuroBench column (:func:`neurobench_columns`) ``<c>_mean``,
    ``<c>_std``, and ``cost_basis``. ``bootstrap`` (shared
    with the paired tests) is built here when not given."""
    ok = per_row_cost(tables)
    costs = {**cost_columns(ok), **neurobench_columns(ok)}
    sb = bootstrap or study_bootstrap(tables, n_bootstrap=n_bootstrap, seed=seed)
    metrics = tuple(m.removeprefix("test_") for m in TEST_METRICS)
    rows = []
    for backend, rule in cell_order(tables):
        g = ok[(ok["backend"] == backend) & (ok["rule"] == rule)]
        if g.empty:
            continue
        row: dict[str, Any] = {"backend": backend, "rule": rule, "kind": str(g["kind"].iloc[0]),
                               "track": _track(g),
                               # training runs: repeats × refit seeds
                               "n_repeats": len(g[["repeat", "refit"]].drop_duplicates()),
                               "n_refits": len(g),  # the cost columns' spread is over these
                               "cost_basis": ", ".join(dict.fromkeys(g["cost_basis"]))}
        for col in (*TEST_METRICS, *costs):
            row[f"{col}_mean"], row[f"{col}_std"] = _summary(
                g.groupby(["repeat", "refit"])[col].mean() if col in TEST_METRICS else g[col])
        # the cell's bootstrap when it has predictions
        boot = sb if sb is not None and (backend, rule) in sb.cells else None
        if boot is not None:
            boot.prefetch((backend, rule), metrics)
        for m in metrics:
            low, high = boot.interval((backend, rule), m) if boot is not None else (np.nan,
                                                                                     np.nan)
            row[f"test_{m}_ci_low"], row[f"test_{m}_ci_high"] = low, high
            if boot is not None and (boot.scheme == "nested-cv"  # the pooled out-of-fold
                                     or not np.isfinite(row[f"test_{m}_mean"])):  # estimate
                point, _ = boot.per_run((backend, rule), m)
                row[f"test_{m}_mean"], row[f"test_{m}_std"] = _summary(pd.Series(point))
        rows.append(row)
    return pd.DataFrame(rows)


def lesion_recall_table(tables: StudyTables, strata_mm2: tuple[float, ...] = LESION_STRATA_MM2
                        ) -> pd.DataFrame:
    """Per cell and lesion-size stratum (``[edge_i, edge_{i+1})`` mm², last open): lesion slices,
    patients, and recall = share of lesion slices called positive at the row's threshold,
    pooled over repeats and folds. Empty when predictions lack ``lesion_mm2``."""
    preds = tables.primary_predictions()
    if preds is None or "lesion_mm2" not in preds.columns:
        return pd.DataFrame()
    lesions = preds[(preds["label"] == 1) & preds["lesion_mm2"].notna()].copy()
    if lesions.empty:
        return pd.DataFrame()
    edges = [*strata_mm2, np.inf]
    names = [f"≥{lo:g}" if hi == np.inf else (f"<{hi:g}" if lo <= 0 else f"{lo:g}–{hi:g}")
             for lo, hi in pairwise(edges)]
    lesions["stratum"] = pd.cut(lesions["lesion_mm2"], edges, right=False, labels=names)
    lesions["hit"] = lesions["prob"] >= lesions["threshold"]
    rows = []
    for backend, rule in cell_order(tables):
        g = lesions[(lesions["backend"] == backend) & (lesions["rule"] == rule)]
        for name in names:
            s = g[g["stratum"] == name]
            if len(g):
                rows.append({"backend": backend, "rule": rule, "lesion_mm2": name,
                             "slices": len(s), "patients": s["patient_id"].nunique(),
                             "recall": float(s["hit"].mean()) if len(s) else np.nan})
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


#: What a scheme means, where its name alone does not say it.
SCHEME_NOTES = {"predefined": " (the data source's own split: tuned on its train / validation "
                              "sets, its test set tested once per run)"}


def protocol_items(tables: StudyTables) -> list[tuple[str, str]]:
    """The protocol statement as (label, text) pairs; fields the protocol lacks are omitted."""
    proto = tables.protocol
    items = _data_items(proto)
    excluded = proto.get("excluded_cases")
    if isinstance(excluded, list):
        items.append(("excluded cases", str(len(excluded))))
    for key in ("repeats", "metric"):
        if proto.get(key) not in (None, ""):
            items.append((key, str(proto[key])))
    items.append(("scheme", tables.scheme + ("" if proto.get("scheme") else
                                              " (not recorded: old folder, assumed)")
                  + SCHEME_NOTES.get(tables.scheme, "")))
    if proto.get("seeds"):
        items.append(("seeds", _text(proto["seeds"])))
    items += _search_items(proto)
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


def _data_items(proto: dict[str, Any]) -> list[tuple[str, str]]:
    items = [("study", str(proto["study"]))] if proto.get("study") else []
    data = proto.get("data")
    data = data if isinstance(data, dict) else {}
    return items + [(f"data {key}", str(data[key])) for key in (
        "source", "path", "sha256", "n_patients", "n_slices", "n_features")
        if data.get(key) not in (None, "")]


def _search_items(proto: dict[str, Any]) -> list[tuple[str, str]]:
    search = proto.get("search")
    search = search if isinstance(search, dict) else {}
    storage = proto.get("storage") or search.get("storage")
    items = []
    if search:
        items.append(("search", _text({k: v for k, v in search.items() if k != "storage"})))
    if storage:
        items.append(("storage", _text(storage)))
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
