"""The short results table printed after a study (the full report is ``spikebench report``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikebench.errors import DataError
from spikebench.harness.folder import ResultsFolder


def summary_frame(out: str | Path):  # -> pandas.DataFrame
    """Per cell: repeats done, test balanced accuracy and patient PR-AUC (mean ± std), training
    seconds; skipped/failed cells with their reason; and the majority-class baseline."""
    import pandas as pd

    path = ResultsFolder(out).table("results")
    if not path.exists():
        raise DataError(f"{path} not found: run `spikebench study run SPEC --out {out}` first")
    res = pd.read_parquet(path)
    rows = []
    if res.empty:
        return pd.DataFrame()
    for (backend, rule), g in res.groupby(["backend", "rule"], sort=True):
        ok = g[g["status"] == "ok"]
        if ok.empty:
            rows.append({"backend": backend, "rule": rule, "repeats": 0,
                         "note": f"{g['status'].iloc[0]}: {g['reason'].iloc[0]}"[:90]})
            continue
        row = {"backend": backend, "rule": rule, "repeats": len(ok)}
        for col, label in (("test_balanced_accuracy", "test bal. acc"),
                           ("test_patient_pr_auc", "test patient PR-AUC"),
                           ("test_pr_auc", "test slice PR-AUC")):
            vals = ok[col].astype(float)
            # sample std (ddof=1), as in the report's tables; 0 for a single repeat
            std = np.nanstd(vals, ddof=1) if vals.notna().sum() > 1 else 0.0
            row[label] = f"{np.nanmean(vals):.3f} ± {std:.3f}"
        row["train s"] = f"{ok['train_seconds'].mean():.2f}"
        row["note"] = ""
        rows.append(row)
    ok = res[res["status"] == "ok"]
    if not ok.empty:
        first = ok.iloc[0]
        prevalence = _test_prevalence(Path(out), int(first["repeat"]))
        rows.append({"backend": "baseline", "rule": "majority class", "repeats": "",
                     "test bal. acc": "0.500", "test slice PR-AUC":
                     f"{prevalence:.3f}" if prevalence == prevalence else "",
                     "note": "predicts the majority class for every slice"})
    return pd.DataFrame(rows).fillna("")


def _test_prevalence(out: Path, repeat: int) -> float:
    import pandas as pd

    path = ResultsFolder(out).table("predictions")
    if not path.exists():
        return float("nan")
    pred = pd.read_parquet(path, columns=["repeat", "label", "backend", "rule", "steps",
                                          "train_steps"])
    pred = pred[(pred["repeat"] == repeat) & (pred["steps"] == pred["train_steps"])]
    if pred.empty:
        return float("nan")
    one = pred[["backend", "rule"]].iloc[0]  # one cell: its test slices of this repeat
    first = pred[(pred["backend"] == one["backend"]) & (pred["rule"] == one["rule"])]
    return float(first["label"].mean()) if len(first) else float("nan")


def summary_table(out: str | Path) -> str:
    frame = summary_frame(out)
    return frame.to_string(index=False) if not frame.empty else "(no results yet)"
