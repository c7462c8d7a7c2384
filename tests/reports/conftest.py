"""A synthetic study folder generator that follows ``spikebench.harness.results`` exactly.

Predictions are seeded random probabilities per patient / slice whose separation of lesion and
normal slices is set per cell (``strength``); results rows carry test metrics computed from
those predictions with the harness's own metric code, so a report that recomputes them must
agree. Trials, active-learning curves, a skipped cell and reference rows are included.
:func:`image_study` rewrites such a folder as a study with image-track cells (the widest
report: the ``image_report`` fixture).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from spikebench.harness.metrics import all_metrics
from spikebench.harness.results import (
    CURVE_COLUMNS,
    METRICS,
    PREDICTION_COLUMNS,
    RESULT_COLUMNS,
)
from spikebench.io import write_json, write_parquet

#: Columns a results folder written before folds, thresholds and the AC/MAC split lacked.
NEW_COLUMNS = ("fold", "refit", "threshold", "acs_per_sample", "macs_per_sample", "best_trial")

TRAIN_STEPS = 8
STEPS = (4, 8, 16)
N_FEATURES = 12
#: The image-track rules of :func:`image_study`.
IMAGE_RULES = ("image_tempotron", "conv_surrogate")
#: ``C (S² − g²)`` of a 3-channel 64 × 64 crop pooled to 8 × 8 (image_tempotron's formula).
POOL_ADDS = 3 * (64 * 64 - 8 * 8)


@dataclass
class StudyPlan:
    """What to generate (defaults: a demo-size study)."""

    backends: tuple[str, ...] = ("custom", "snntorch", "spikingjelly")
    rules: tuple[str, ...] = ("surrogate", "tempotron", "active")
    repeats: int = 5
    n_patients: int = 60
    test_fraction: float = 0.25
    references: tuple[str, ...] = ("logistic_regression", "mlp")
    #: separation per (backend, rule); default 1.5
    strength: dict[tuple[str, str], float] = field(default_factory=dict)
    #: cells whose predictions reuse another cell's noise (an exact tie)
    same_as: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (backend, rule) -> repeats that are missing (still running)
    missing: dict[tuple[str, str], tuple[int, ...]] = field(default_factory=dict)
    trials: bool = True
    curves: bool = True
    protocol: bool = True
    n_trials: int = 12
    seed: int = 0
    #: write the old format: no fold / threshold / acs / macs columns, no scheme
    legacy: bool = False
    #: protocol.json "analysis" (None: absent, the defaults apply)
    analysis: dict | None = None
    #: decision thresholds of the SNN rows, repeat r taking ``thresholds[r % len]`` (its test
    #: metrics thresholded there, as the harness does); empty: 0.5 everywhere
    thresholds: tuple[float, ...] = ()


def _patients(rng: np.random.Generator, n: int) -> pd.DataFrame:
    rows = []
    for p in range(n):
        n_slices = int(rng.integers(12, 28))
        lesion = np.zeros(n_slices, dtype=int)
        if p % 2 == 0:
            start = int(rng.integers(0, n_slices - 6))
            lesion[start:start + int(rng.integers(2, 6))] = 1
        rows += [{"patient_id": f"liver_{p:03d}", "slice_idx": i, "label": int(lesion[i])}
                 for i in range(n_slices)]
    return pd.DataFrame(rows)


def _probs(labels: np.ndarray, strength: float, noise: np.ndarray, steps: int) -> np.ndarray:
    # fewer time steps → weaker separation, more → slightly stronger
    s = strength * (min(steps, TRAIN_STEPS * 2) / TRAIN_STEPS) ** 0.5
    logit = s * (labels - 0.5) * 2 + noise - 0.6
    return 1 / (1 + np.exp(-logit))


def make_study(root: Path, plan: StudyPlan | None = None) -> Path:
    """Write a complete results folder for ``plan`` into ``root`` and return ``root``."""
    plan = plan or StudyPlan()
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(plan.seed)
    data = _patients(rng, plan.n_patients)
    ids = np.array(sorted(data["patient_id"].unique()))
    splits, per_split = _splits(plan, data, ids)
    results, preds, trials, curves = [], [], [], []
    cells = [(b, rl) for b in plan.backends for rl in plan.rules]
    for ci, cell in enumerate(cells):
        backend, rule = cell
        if cell in plan.skipped:
            results.append(_row(plan, backend, rule, "snn", -1, status="skipped",
                                reason=plan.skipped[cell]))
            continue
        strength = plan.strength.get(cell, 1.5)
        noise_cell = plan.same_as.get(cell, cell)
        noise_index = cells.index(noise_cell)
        for r in range(plan.repeats):
            if r in plan.missing.get(cell, ()):
                continue
            test = data[data["patient_id"].isin(splits[str(r)]["test"])].reset_index(drop=True)
            noise = np.random.default_rng([plan.seed, noise_index, r]).normal(0, 1, len(test))
            pred = _cell_predictions(test, backend, rule, r, strength, noise)
            preds.append(pred)
            at_t = pred[pred["steps"] == TRAIN_STEPS]
            row = _row(plan, backend, rule, "snn", r)
            threshold = plan.thresholds[r % len(plan.thresholds)] if plan.thresholds else 0.5
            for prefix in ("test_", "val_"):  # the synthetic validation mirrors the test
                row.update(all_metrics(at_t["label"].to_numpy(), at_t["prob"].to_numpy(),
                                       at_t["patient_id"].to_numpy(), prefix,
                                       threshold=threshold))
            row.update(_cost(rng, ci, r, per_split[str(r)]))
            row.update(fold=0, refit=0, threshold=threshold,
                       acs_per_sample=0.8 * row["synops_per_sample"],
                       macs_per_sample=0.2 * row["synops_per_sample"])
            results.append(row)
            if plan.curves and rule == "active":
                curves += _curves(backend, rule, r, rng)
        if plan.trials:
            trials += _trials(backend, rule, plan.n_trials, rng, strength)
    for name in plan.references:
        for r in range(plan.repeats):
            _reference_repeat(plan, data, splits, per_split, rng, name, r, results, preds)
    _write_tables(root, plan, results, preds, trials, curves)
    write_json(root / "splits.json", splits)
    if plan.protocol:
        _write_protocol(root, plan, ids, data, per_split)
    return root


def _cell_predictions(test: pd.DataFrame, backend: str, rule: str, r: int, strength: float,
                      noise: np.ndarray) -> pd.DataFrame:
    """One cell's test predictions for repeat ``r`` at every evaluated number of time steps."""
    frames = []
    for steps in STEPS:
        frames.append(test.assign(
            backend=backend, rule=rule, repeat=r, seed=r, steps=steps,
            train_steps=TRAIN_STEPS,
            prob=_probs(test["label"].to_numpy(), strength, noise, steps)))
    return pd.concat(frames, ignore_index=True).assign(fold=0, refit=0)


def _write_tables(root: Path, plan: StudyPlan, results: list, preds: list, trials: list,
                  curves: list) -> None:
    """results.parquet, and predictions / trials / curves .parquet when there are any."""
    frame = pd.DataFrame(results)
    columns = [*dict.fromkeys([*RESULT_COLUMNS, "threshold"]),
               *(f"{p}_{m}" for p in ("val", "test") for m in METRICS)]
    write_parquet(root / "results.parquet", frame[_written(plan, columns)])
    if preds:
        write_parquet(root / "predictions.parquet", pd.concat(preds, ignore_index=True)[
            _written(plan, PREDICTION_COLUMNS)])
    if trials:
        write_parquet(root / "trials.parquet", pd.DataFrame(trials))
    if curves:
        write_parquet(root / "curves.parquet",
                      pd.DataFrame(curves).assign(fold=0, refit=0)[_written(plan, CURVE_COLUMNS)])


def _splits(plan: StudyPlan, data: pd.DataFrame, ids: np.ndarray) -> tuple[dict, dict]:
    """Per repeat: the train / val / test patients and their patient and slice counts."""
    splits, per_split = {}, {}
    for r in range(plan.repeats):
        perm = np.random.default_rng([plan.seed, 1000 + r]).permutation(ids)
        n_test = max(4, round(plan.test_fraction * len(ids)))
        n_val = n_test
        test, val, train = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
        splits[str(r)] = {"train": sorted(train), "val": sorted(val), "test": sorted(test)}
        per_split[str(r)] = {
            **{f"n_{k}_patients": len(v) for k, v in splits[str(r)].items()},
            **{f"n_{k}_slices": int(data["patient_id"].isin(v).sum())
               for k, v in splits[str(r)].items()}}
    return splits, per_split


def _reference_repeat(plan: StudyPlan, data: pd.DataFrame, splits: dict, per_split: dict,
                      rng: np.random.Generator, name: str, r: int, results: list,
                      preds: list) -> None:
    """Append reference model ``name``'s predictions and results row for repeat ``r``."""
    test = data[data["patient_id"].isin(splits[str(r)]["test"])].reset_index(drop=True)
    noise = np.random.default_rng([plan.seed, 500 + len(name), r]).normal(
        0, 1, len(test))
    prob = _probs(test["label"].to_numpy(), 1.2, noise, 1)
    preds.append(test.assign(backend="reference", rule=name, repeat=r, fold=0, refit=0, seed=r,
                             steps=1, train_steps=1, prob=prob))
    row = _row(plan, "reference", name, "reference", r)
    row.update(all_metrics(test["label"].to_numpy(), prob,
                           test["patient_id"].to_numpy(), "test_"))
    row.update(_cost(rng, 99, r, per_split[str(r)]))
    if name == "logistic_regression":  # a solver fit: no epochs (as the harness records it)
        row.update(epochs=None, train_seconds_per_epoch=None)
    row.update(spikes_per_sample=np.nan, synops_per_sample=np.nan, train_steps=1,
               fold=0, refit=0, threshold=0.5, acs_per_sample=0.0,
               macs_per_sample=float(N_FEATURES if name != "mlp" else N_FEATURES * 16 + 16),
               params=json.dumps({"hidden_layer_sizes": [16]} if name == "mlp"
                                 else {"C": 1.0}))
    results.append(row)


def _write_protocol(root: Path, plan: StudyPlan, ids: np.ndarray, data: pd.DataFrame,
                    per_split: dict) -> None:
    """protocol.json and spec.toml."""
    write_json(root / "protocol.json", {
        "study": "synthetic", "data": {"source": "table", "path": "/data/f.parquet",
                                       "sha256": "ab" * 32, "n_patients": len(ids),
                                       "n_slices": len(data), "n_features": N_FEATURES},
        "excluded_cases": [{"patient_id": "liver_999", "reason": "no liver label"}],
        "splits": per_split, "repeats": plan.repeats,
        "seeds": {"study": plan.seed, "split": plan.seed,
                  "refit": list(range(plan.repeats))},
        "grid": {"backends": list(plan.backends), "rules": list(plan.rules)},
        "metric": "pr_auc", "versions": {"numpy": np.__version__, "pandas": pd.__version__},
        "machine": {"cpu": "test cpu", "cores": 2, "gpu": "", "python": "3.11",
                    "platform": "linux"},
        "storage": "journal:optuna.journal", "started": "2026-01-01T00:00:00+00:00",
        "finished": "2026-01-01T01:00:00+00:00",
        **({} if plan.legacy else {"scheme": "repeated-splits"}),
        **({} if plan.analysis is None else {"analysis": plan.analysis})})
    (root / "spec.toml").write_text(
        '[study]\nname = "synthetic"\nreferences = '
        + json.dumps(list(plan.references))
        + f"\n[split]\nscheme = \"holdout\"\nrepeats = {plan.repeats}\n")


def _written(plan: StudyPlan, columns) -> list[str]:
    """``columns`` without the newer ones when the plan writes the old format."""
    return [c for c in columns if not (plan.legacy and c in NEW_COLUMNS)]


def _row(plan: StudyPlan, backend: str, rule: str, kind: str, repeat: int, *,
         status: str = "ok", reason: str = "") -> dict:
    row = {c: None for c in RESULT_COLUMNS}
    row.update(study="synthetic", backend=backend, rule=rule, kind=kind, status=status,
               reason=reason, repeat=repeat, seed=max(repeat, 0), params="{}",
               n_trials=plan.n_trials, best_val=0.8, train_steps=TRAIN_STEPS, device="cpu")
    for p in ("val", "test"):
        for m in METRICS:
            row[f"{p}_{m}"] = np.nan
    if status == "ok":
        row.update({f"val_{m}": 0.7 for m in METRICS})
    return row


def _cost(rng: np.random.Generator, ci: int, r: int, split: dict) -> dict:
    epochs = int(rng.integers(5, 20))
    train = float((1 + ci) * 0.3 * epochs * rng.uniform(0.9, 1.1))
    return {"epochs": epochs, "train_seconds": train, "train_seconds_per_epoch": train / epochs,
            "infer_ms_per_sample": float(rng.uniform(0.01, 0.5)),
            "spikes_per_sample": float(rng.uniform(10, 200)),
            "synops_per_sample": float((ci + 1) * 500 * rng.uniform(0.9, 1.1)),
            "labels_used": split["n_train_slices"], **{k: split[k] for k in split}}


def _trials(backend: str, rule: str, n: int, rng: np.random.Generator, strength: float
            ) -> list[dict]:
    rows = []
    for k in range(n):
        lr = float(10 ** rng.uniform(-4, -1))
        beta = float(rng.uniform(0.5, 0.99))
        surrogate = str(rng.choice(["sigmoid", "fast_sigmoid", "atan"]))
        value = float(np.clip(0.5 + 0.1 * strength - 0.08 * abs(np.log10(lr) + 2.5)
                              + rng.normal(0, 0.01), 0, 1))
        state = "PRUNED" if k == n - 1 else "COMPLETE"
        rows.append({"backend": backend, "rule": rule, "number": k,
                     "value": value if state == "COMPLETE" else np.nan,
                     "values_0": value if state == "COMPLETE" else np.nan,
                     "params_beta": beta, "params_lr": lr, "params_surrogate": surrogate,
                     "state": state, "user_attrs_synops_per_sample": float(rng.uniform(200, 5e3)),
                     "user_attrs_train_seconds": float(rng.uniform(0.5, 3)),
                     "datetime_start": pd.Timestamp("2026-01-01") + pd.Timedelta(seconds=k),
                     "duration_seconds": float(rng.uniform(0.5, 3)), "pareto": False})
    best = max((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: r["value"])
    best["pareto"] = True
    return rows


def _curves(backend: str, rule: str, repeat: int, rng: np.random.Generator) -> list[dict]:
    rows = []
    for strategy, gain in (("uncertainty", 0.35), ("random", 0.25)):
        for labels in range(10, 110, 20):
            acc = 0.5 + gain * (1 - np.exp(-labels / 40)) + rng.normal(0, 0.01)
            rows.append({"backend": backend, "rule": rule, "repeat": repeat,
                         "strategy": strategy, "labels_used": labels,
                         "val_balanced_accuracy": acc, "val_pr_auc": acc - 0.05})
    return rows


@pytest.fixture(scope="session")
def study_plan() -> type[StudyPlan]:
    return StudyPlan


@pytest.fixture(scope="session")
def make_synthetic_study():
    """The generator itself: ``make_synthetic_study(path, StudyPlan(...))``."""
    return make_study


@pytest.fixture(scope="session")
def demo_study(tmp_path_factory) -> Path:
    """A demo-size study: 3 backends × 3 rules × 5 repeats + 2 references, one skipped cell,
    ~15 test patients (a few hundred slices) per repeat."""
    plan = StudyPlan(skipped={("spikingjelly", "tempotron"): "tempotron needs latency coding, "
                                                              "which spikingjelly lacks here"})
    return make_study(tmp_path_factory.mktemp("demo") / "study", plan)


def as_image_study(study: Path, *, pool_adds: bool) -> Path:
    """Rewrite ``study``'s results rows as the image track writes them: a ``track`` column,
    synaptic operation counts of a convolutional network (millions per sample) and, when
    ``pool_adds``, ``pool_adds_per_sample`` (:data:`POOL_ADDS`) on the image_tempotron rows
    only."""
    path = study / "results.parquet"
    res = pd.read_parquet(path)
    image = res["rule"].isin(IMAGE_RULES)
    res["track"] = np.where(image, "images", "features")
    for col in ("synops_per_sample", "acs_per_sample", "macs_per_sample"):
        res.loc[image, col] = res.loc[image, col] * 2500.0
    if pool_adds:
        res["pool_adds_per_sample"] = np.where(res["rule"] == "image_tempotron",
                                               float(POOL_ADDS), np.nan)
    res.to_parquet(path, index=False)
    return study


#: A skip reason as long as a plug-in's error message can be: the coverage table must wrap it.
LONG = ("backend 'spikingjelly' cannot serve this cell: its installed version lacks the "
        "primitive the rule needs (multi-step LIF with a hard reset and a strict threshold); "
        "install a newer version or drop the cell from [grid]")


def image_study(root: Path, *, pool_adds: bool) -> Path:
    """A 3 backends × (surrogate + :data:`IMAGE_RULES`) study with references, 3 repeats, in
    ``root/study`` (:func:`as_image_study`); one cell skipped with a long reason."""
    plan = StudyPlan(backends=("custom", "snntorch", "spikingjelly"),
                     rules=("surrogate", *IMAGE_RULES), repeats=3, n_patients=32, n_trials=4,
                     trials=False, curves=False, skipped={("spikingjelly", "surrogate"): LONG})
    return as_image_study(make_study(root / "study", plan), pool_adds=pool_adds)


@pytest.fixture(scope="session")
def make_image_study():
    """:func:`image_study` itself: ``make_image_study(root, pool_adds=...)``."""
    return image_study


@pytest.fixture(scope="session")
def image_pool_adds() -> int:
    """The pooling additions per sample the image study's image_tempotron rows carry."""
    return POOL_ADDS


@pytest.fixture(scope="session")
def image_report(tmp_path_factory) -> Path:
    """The report (no figures) of the image study, image_tempotron with pooling additions:
    the widest tables a report has."""
    from spikebench.reports import build_report

    study = image_study(tmp_path_factory.mktemp("image"), pool_adds=True)
    return build_report(study, n_bootstrap=20, figures=False)
