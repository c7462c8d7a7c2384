"""Optuna studies over the backend × rule grid, leakage-free by construction.

For every cell ``(backend, rule)`` of ``[grid]`` one Optuna study named
``<study>/<backend>/<rule>`` lives in one storage (a journal file in the results folder by
default, or any Optuna RDB URL for many workers on many machines). Its objective trains on
repeat 0's train patients and returns the validation metric: the sealed test patients never
reach Optuna. After tuning, the best parameters are refit for every repeat (train on that
repeat's train patients, early-stop on its val patients) and evaluated once on the test
patients; each (cell, repeat) writes one row file atomically, so a crash never loses or
duplicates a result and a rerun resumes: tuning runs only the missing trials, refits only the
missing rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import socket
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from spikebench.errors import BackendError, DataError, RuleError, SpecError, SpikebenchError
from spikebench.harness.results import (
    METRICS,
    RESULT_COLUMNS,
    concat_parquet,
    write_json,
    write_parquet,
)
from spikebench.harness.spec import StudySpec, load_spec, parse_spec
from spikebench.harness.splits import patient_level_split, split_masks, write_splits

#: Heartbeat settings for RDB storages: a SIGKILLed worker's trial is failed after the grace
#: period and re-queued by the retry callback.
HEARTBEAT_INTERVAL = 2
GRACE_PERIOD = 6
MAX_RETRY = 3


# --------------------------------------------------------------------------------------------
# data


@dataclasses.dataclass
class Dataset:
    """The feature table of a study plus its provenance."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    slice_idx: np.ndarray | None
    feature_names: list[str]
    info: dict[str, Any]


def prepare_data(spec: StudySpec, out: Path, *, progress: bool = False) -> Dataset:
    """Generate / extract / load the feature table the spec names (cached in ``out``)."""
    from spikebench.datasets.tables import load_feature_table

    d = spec.data
    info: dict[str, Any] = {"source": d.source}
    label, group = d.label, d.group
    if d.source in ("phantom", "msd"):
        from spikebench.datasets.features import extract_features

        if d.source == "phantom":
            from spikebench.datasets.phantom import write_phantom

            root = Path(d.path) if d.path else out / "phantom"
            if not (root / "dataset.json").exists():
                write_phantom(root, cases=d.cases, seed=d.phantom_seed,
                              shape=(d.shape[0], d.shape[1]), progress=progress)
        else:
            root = Path(d.path or "")
        features = out / "features.parquet"
        result = extract_features(root, features, workers=d.workers,
                                  min_lesion_voxels=d.min_lesion_voxels, on_error=d.on_error,
                                  progress=progress)
        info["excluded_cases"] = [
            {"patient_id": pid, "reason": reason} for pid, reason in result.skipped
        ]
        info["path"], label, group = str(root), "label", "patient_id"
    else:
        features = Path(d.path or "")
        info["path"] = str(features)
    table = load_feature_table(features, label=label, group=group)
    info.update(
        features=str(features), sha256=table.sha256, n_patients=len(np.unique(table.groups)),
        n_slices=len(table.y), n_features=int(table.X.shape[1]),
        n_positive_slices=int(table.y.sum()),
    )
    return Dataset(table.X, table.y, np.asarray(table.groups).astype(str), table.slice_idx,
                   list(table.feature_names), info)


def standardised_splits(data: Dataset, split: dict[str, list[str]]) -> dict[str, Any]:
    """Train/val/test :class:`Split` objects, scaled with the train rows' mean and std only."""
    from spikebench.harness.rules.base import Split

    masks = split_masks(data.groups, split)
    mean = data.X[masks["train"]].mean(0)
    std = data.X[masks["train"]].std(0)
    std[~np.isfinite(std) | (std < 1e-12)] = 1.0
    out = {}
    for name, mask in masks.items():
        X = ((data.X[mask] - mean) / std).astype(np.float32)
        out[name] = Split(X, data.y[mask].astype(np.int64), data.groups[mask])
    out["slice_idx"] = None if data.slice_idx is None else data.slice_idx[masks["test"]]
    return out


# --------------------------------------------------------------------------------------------
# storage


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print and to write to files)."""
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return "<storage url>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    netloc = f"{parts.username}:***@{host}" if parts.username else f"***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def storage_url(spec: StudySpec, out: Path, override: str | None = None) -> str:
    """The storage to use: ``--storage``, else ``$SPIKEBENCH_STORAGE``, else the spec, else the
    journal file ``out/optuna.journal``."""
    return (override or os.environ.get("SPIKEBENCH_STORAGE") or spec.search.storage
            or f"journal:{out / 'optuna.journal'}")


def open_storage(url: str) -> Any:
    import optuna

    if url.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = url.removeprefix("journal:")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(path))
    if url.startswith("sqlite"):
        return optuna.storages.RDBStorage(url)
    retry = (optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
             if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback") else None)
    kwargs: dict[str, Any] = {"heartbeat_interval": HEARTBEAT_INTERVAL,
                              "grace_period": GRACE_PERIOD}
    if retry is not None:
        kwargs["heartbeat_stale_trial_callback"] = retry
    else:
        kwargs["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(MAX_RETRY)
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, **kwargs)
    except Exception as exc:  # sqlalchemy/driver errors: name the (redacted) URL and the fix
        raise SpecError(
            f"cannot open Optuna storage {redact(url)}: {type(exc).__name__}: "
            f"{redact(str(exc))}. Check the URL, that the server is running and, for "
            "PostgreSQL, that `pip install spikebench[postgres]` installed psycopg"
        ) from None


def startup_trials(requested: int | None, trials: int) -> int:
    """Random start-up trials before a model-based sampler: ``requested``, else a third of
    ``trials`` capped at Optuna's default of 10 (with 10 trials Optuna's default would leave
    TPE nothing to do)."""
    return requested if requested is not None else max(1, min(10, trials // 3))


def make_sampler(name: str, seed: int, multi: bool, startup: int = 10) -> Any:
    """The ``[search].sampler`` named ``name``; ``startup``: random trials before TPE / GP."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if name == "cmaes":
        if multi:
            raise SpecError("[search].sampler = 'cmaes' is single-objective; use 'nsga2' or 'tpe'")
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise SpecError("[search].sampler = 'cmaes' needs `pip install cmaes`") from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    raise SpecError(f"[search].sampler: unknown sampler {name!r}")


def make_pruner(name: str) -> Any:
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=3)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=2)
    return optuna.pruners.NopPruner()


def cell_study_name(spec: StudySpec, backend: str, rule: str) -> str:
    return f"{spec.study.name}/{backend}/{rule}"


# --------------------------------------------------------------------------------------------
# the run


@dataclasses.dataclass
class Cell:
    backend: str
    rule: str
    skip_reason: str = ""

    @property
    def key(self) -> str:
        return f"{self.backend}__{self.rule}"


def plan_cells(spec: StudySpec) -> list[Cell]:
    """Every backend × rule cell, with the reason when the backend cannot serve it."""
    from spikebench.backends import get_backend

    cells = []
    for b in spec.grid.backends:
        try:
            backend = get_backend(b)
            reason = ""
        except BackendError as exc:
            backend, reason = None, str(exc)
        for r in spec.grid.rules:
            why = reason
            if backend is not None and r not in backend.rules:
                why = (f"backend {b!r} does not support rule {r!r} "
                       f"(supported: {', '.join(sorted(backend.rules))})")
            cells.append(Cell(b, r, why))
    return cells


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpecError(f"[study].device = {name!r} but no CUDA GPU is available; use 'auto'")
    return name


class Runner:
    """Everything one process needs to tune and refit cells of a study."""

    def __init__(self, spec: StudySpec, out: Path, storage: str, *, trials: int | None = None,
                 worker: int = 0, progress: bool = True) -> None:
        self.spec, self.out, self.storage_url = spec, out, storage
        self.trials = trials or spec.search.trials
        self.worker, self.progress = worker, progress
        self._storage: Any = None
        self._data: Dataset | None = None
        self._splits: dict[str, dict[str, list[str]]] | None = None

    # -- shared state ------------------------------------------------------------------------

    @property
    def storage(self) -> Any:
        if self._storage is None:
            self._storage = open_storage(self.storage_url)
        return self._storage

    def data(self) -> Dataset:
        if self._data is None:
            self._data = prepare_data(self.spec, self.out, progress=self.progress)
        return self._data

    def splits(self) -> dict[str, dict[str, list[str]]]:
        if self._splits is None:
            d, s = self.data(), self.spec.split
            self._splits = patient_level_split(d.y, d.groups, repeats=s.repeats,
                                               test_fraction=s.test_fraction,
                                               val_fraction=s.val_fraction, seed=s.seed)
        return self._splits

    def load_study(self, cell: Cell) -> Any:
        import optuna

        multi = self.spec.multi_objective
        directions = ["maximize", "minimize"] if multi else ["maximize"]
        return optuna.create_study(
            study_name=cell_study_name(self.spec, cell.backend, cell.rule),
            storage=self.storage, load_if_exists=True, directions=directions,
            sampler=make_sampler(self.spec.search.sampler, self.spec.study.seed + self.worker,
                                 multi, startup_trials(self.spec.search.startup_trials,
                                                       self.trials)),
            pruner=make_pruner(self.spec.search.pruner),
        )

    def space(self, rule_name: str) -> dict[str, Any]:
        from spikebench.harness.rules import get_rule
        from spikebench.harness.space import merge_space

        rule = get_rule(rule_name)
        return merge_space(rule.search_space(), self.spec.space.get(rule_name, {}),
                           f"[space.{rule_name}]")

    # -- tuning ------------------------------------------------------------------------------

    def objective(self, cell: Cell) -> Callable[[Any], Any]:
        import optuna

        from spikebench.backends import get_backend
        from spikebench.harness.metrics import score
        from spikebench.harness.rules import DivergedError, FitContext, get_rule
        from spikebench.harness.space import suggest

        spec = self.spec
        parts = standardised_splits(self.data(), self.splits()["0"])
        train, val = parts["train"], parts["val"]
        rule, backend = get_rule(cell.rule), get_backend(cell.backend)
        space, metric = self.space(cell.rule), spec.study.metric
        device = resolve_device(spec.study.device)

        def value_of(y: np.ndarray, prob: np.ndarray) -> float:
            return score(metric, y, prob, val.groups)

        def objective(trial: optuna.Trial) -> Any:
            trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
            params = suggest(trial, space)

            def report(epoch: int, value: float) -> None:
                if spec.multi_objective or not math.isfinite(value):
                    return
                trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch} (val {metric} {value:.4f})")

            ctx = FitContext(backend=backend, device=device, seed=spec.study.seed,
                             report=report, metric=value_of)
            started = time.perf_counter()
            try:
                model = rule.fit(train, val, params, ctx)
            except DivergedError as exc:
                trial.set_user_attr("reason", str(exc))
                raise optuna.TrialPruned(str(exc)) from None
            seconds = time.perf_counter() - started
            value = value_of(val.y, model.predict_proba(val.X))
            trial.set_user_attr("train_seconds", seconds)
            activity = model.activity(val.X)
            trial.set_user_attr("synops_per_sample", activity.get("synops_per_sample"))
            trial.set_user_attr("spikes_per_sample", activity.get("spikes_per_sample"))
            if not math.isfinite(value):
                raise RuleError(f"validation {metric} is undefined (NaN)")
            if spec.multi_objective:
                second = (seconds if spec.search.minimize == "train_seconds"
                          else activity.get("synops_per_sample", float("nan")))
                return value, float(second)
            return value

        return objective

    def tune(self, cell: Cell) -> None:
        """Run trials until the cell has ``trials`` finished (complete or pruned) trials."""
        import optuna
        from optuna.trial import TrialState

        study = self.load_study(cell)
        objective = self.objective(cell)
        finished = (TrialState.COMPLETE, TrialState.PRUNED)
        bar = _bar(self.progress, self.trials, f"tune {cell.backend}/{cell.rule}")
        try:
            while True:
                trials = study.get_trials(deepcopy=False)
                done = sum(t.state in finished for t in trials)
                bar.update(done - bar.n)
                if done >= self.trials:
                    return
                running = sum(t.state == TrialState.RUNNING for t in trials)
                if done + running >= self.trials:
                    # Others are finishing the last trials; a dead worker's trial is failed
                    # once its heartbeat is stale and re-queued by the retry callback.
                    with contextlib.suppress(Exception), warnings.catch_warnings():
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        optuna.storages.fail_stale_trials(study)
                    _fail_dead_local_trials(study)
                    time.sleep(0.5)
                    continue
                failed = sum(t.state == TrialState.FAIL for t in trials)
                if failed >= max(3 * self.trials, 10) and done == 0:
                    raise RuleError(f"every trial of {cell.backend}/{cell.rule} failed")
                study.optimize(objective, n_trials=1, catch=(SpikebenchError, ValueError,
                                                            RuntimeError, FloatingPointError))
        finally:
            bar.close()

    # -- refit + test ------------------------------------------------------------------------

    def best_params(self, cell: Cell) -> tuple[dict[str, Any], int, float]:
        """Parameters for the refit: the best trial (multi-objective: the Pareto trial with the
        best validation metric), the number of complete trials and the best value."""
        from optuna.trial import TrialState

        from spikebench.harness.space import Fixed

        study = self.load_study(cell)
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not complete:
            raise RuleError(f"no complete trial for {cell.backend}/{cell.rule}: " + _fail_reasons(
                study.get_trials(deepcopy=False)))
        best = (max(study.best_trials, key=lambda t: t.values[0]) if self.spec.multi_objective
                else study.best_trial)
        params = {k: v.value for k, v in self.space(cell.rule).items() if isinstance(v, Fixed)}
        params.update(best.params)
        return params, len(complete), float(best.values[0])

    def row_path(self, key: str, repeat: int) -> Path:
        return self.out / "rows" / f"{key}__r{repeat}.parquet"

    def refit(self, cell: Cell, repeat: int) -> None:
        """Refit the best parameters on one repeat, evaluate once on the sealed test set."""
        import pandas as pd

        from spikebench.backends import get_backend
        from spikebench.harness.metrics import score
        from spikebench.harness.rules import FitContext, get_rule

        spec = self.spec
        params, n_trials, best_val = self.best_params(cell)
        parts = standardised_splits(self.data(), self.splits()[str(repeat)])
        seed = spec.study.seed + repeat
        device = resolve_device(spec.study.device)
        metric_name = spec.study.metric
        val = parts["val"]
        ctx = FitContext(backend=get_backend(cell.backend), device=device, seed=seed,
                         metric=lambda y, p: score(metric_name, y, p, val.groups))
        started = time.perf_counter()
        model = get_rule(cell.rule).fit(parts["train"], val, params, ctx)
        seconds = time.perf_counter() - started
        row = self._evaluate(model, parts, repeat, seed)
        row.update(backend=cell.backend, rule=cell.rule, kind="snn", params=json.dumps(params),
                   n_trials=n_trials, best_val=best_val, device=str(device),
                   train_seconds=seconds)
        epochs = model.info.get("epochs") or 1
        row["epochs"] = epochs
        row["train_seconds_per_epoch"] = seconds / epochs
        self._save_model(model, cell.key, repeat, params)
        self._write_extras(model, cell, repeat, seed, parts)
        write_parquet(self.row_path(cell.key, repeat), pd.DataFrame([self._complete_row(row)]))
        self.row_path(cell.key, -1).unlink(missing_ok=True)  # an earlier failure is superseded

    def reference(self, name: str, repeat: int) -> None:
        import pandas as pd

        from spikebench.harness.references import fit_reference

        parts = standardised_splits(self.data(), self.splits()[str(repeat)])
        seed = self.spec.study.seed + repeat
        started = time.perf_counter()
        model = fit_reference(name, parts["train"], parts["val"], seed)
        seconds = time.perf_counter() - started
        row = self._evaluate(model, parts, repeat, seed)
        row.update(backend="reference", rule=name, kind="reference",
                   params=json.dumps(model.info.get("params", {}), default=str),
                   device="cpu", train_seconds=seconds, epochs=model.info.get("epochs", 1))
        row["train_seconds_per_epoch"] = seconds / max(row["epochs"] or 1, 1)
        row["macs_per_sample"] = model.info.get("macs_per_sample", float("nan"))
        key = f"reference__{name}"
        self._write_predictions(model, key, "reference", name, repeat, seed, parts, steps=[None])
        write_parquet(self.row_path(key, repeat), pd.DataFrame([self._complete_row(row)]))

    def _evaluate(self, model: Any, parts: dict[str, Any], repeat: int, seed: int
                  ) -> dict[str, Any]:
        from spikebench.harness.metrics import all_metrics

        train, val, test = parts["train"], parts["val"], parts["test"]
        row: dict[str, Any] = {"study": self.spec.study.name, "status": "ok", "reason": "",
                               "repeat": repeat, "seed": seed,
                               "train_steps": int(getattr(model, "train_steps", 1))}
        row.update(all_metrics(val.y, model.predict_proba(val.X), val.groups, "val_"))
        started = time.perf_counter()
        prob = model.predict_proba(test.X)
        row["infer_ms_per_sample"] = 1000 * (time.perf_counter() - started) / max(len(test), 1)
        row.update(all_metrics(test.y, prob, test.groups, "test_"))
        row.update(model.activity(test.X))
        row["labels_used"] = model.info.get("labels_used", len(train))
        for name, s in (("train", train), ("val", val), ("test", test)):
            row[f"n_{name}_patients"] = len(np.unique(s.groups))
            row[f"n_{name}_slices"] = len(s)
        return row

    @staticmethod
    def _complete_row(row: dict[str, Any]) -> dict[str, Any]:
        full = {c: row.get(c) for c in RESULT_COLUMNS}
        for prefix in ("val_", "test_"):
            for m in METRICS:
                full[prefix + m] = row.get(prefix + m, float("nan"))
        full.update({k: v for k, v in row.items() if k not in full})
        return full

    def _eval_steps(self, model: Any) -> list[int | None]:
        t = int(getattr(model, "train_steps", 1))
        steps = sorted({max(1, round(m * t)) for m in self.spec.study.eval_steps} | {t})
        return list(steps)

    def _write_predictions(self, model: Any, key: str, backend: str, rule: str, repeat: int,
                           seed: int, parts: dict[str, Any], steps: list[int | None]) -> None:
        import pandas as pd

        test = parts["test"]
        frames = []
        for t in steps:
            prob = model.predict_proba(test.X, steps=t)
            train_steps = int(getattr(model, "train_steps", 1))
            frames.append(pd.DataFrame({
                "backend": backend, "rule": rule, "repeat": repeat, "seed": seed,
                "steps": t or train_steps, "train_steps": train_steps,
                "patient_id": test.groups,
                "slice_idx": (parts["slice_idx"] if parts["slice_idx"] is not None
                              else np.arange(len(test))),
                "label": test.y, "prob": prob,
            }))
        write_parquet(self.out / "predictions" / f"{key}__r{repeat}.parquet",
                      pd.concat(frames, ignore_index=True))

    def _write_extras(self, model: Any, cell: Cell, repeat: int, seed: int,
                      parts: dict[str, Any]) -> None:
        import pandas as pd

        self._write_predictions(model, cell.key, cell.backend, cell.rule, repeat, seed, parts,
                                steps=self._eval_steps(model))
        curves = model.info.get("curves")
        if curves:
            frame = pd.DataFrame(curves)
            frame.insert(0, "repeat", repeat)
            frame.insert(0, "rule", cell.rule)
            frame.insert(0, "backend", cell.backend)
            write_parquet(self.out / "curves" / f"{cell.key}__r{repeat}.parquet", frame)

    def _save_model(self, model: Any, key: str, repeat: int, params: dict[str, Any]) -> None:
        exported = model.export()
        if exported is None:
            return
        try:
            from spikebench.backends.serialize import save_network
        except ImportError:
            return
        spec, weights = exported
        save_network(self.out / "models" / f"{key}__r{repeat}.pt", spec, weights,
                     {"params": params, "repeat": repeat, "cell": key})

    def skipped_row(self, cell: Cell, reason: str, status: str = "skipped") -> None:
        import pandas as pd

        row = {"study": self.spec.study.name, "backend": cell.backend, "rule": cell.rule,
               "kind": "snn", "status": status, "reason": reason, "repeat": -1}
        write_parquet(self.row_path(cell.key, -1), pd.DataFrame([self._complete_row(row)]))

    # -- jobs --------------------------------------------------------------------------------

    def jobs(self) -> list[tuple[str, Any, int]]:
        """Refit / reference jobs still to do: ``(kind, cell-or-name, repeat)``."""
        todo: list[tuple[str, Any, int]] = []
        for cell in plan_cells(self.spec):
            if cell.skip_reason:
                continue
            for r in range(self.spec.split.repeats):
                if not self.row_path(cell.key, r).exists():
                    todo.append(("refit", cell, r))
        for name in self.spec.study.references:
            for r in range(self.spec.split.repeats):
                if not self.row_path(f"reference__{name}", r).exists():
                    todo.append(("reference", name, r))
        return todo

    def run_jobs(self, *, steal: bool = False) -> None:
        """Do every missing refit / reference row. Jobs another live process has claimed are
        waited for; a claim left by a dead process is taken over."""
        todo = self.jobs()
        bar = _bar(self.progress and bool(todo), len(todo), "refit + test")
        failed: set[str] = set()
        try:
            while todo:
                waiting = []
                for kind, what, repeat in todo:
                    key = what.key if kind == "refit" else f"reference__{what}"
                    if key in failed or self.row_path(key, repeat).exists():
                        bar.update(1)
                        continue
                    with _claim(self.out / "rows" / f".{key}__r{repeat}.lock", steal) as mine:
                        if not mine:
                            waiting.append((kind, what, repeat))
                            continue
                        if not self.row_path(key, repeat).exists():
                            try:
                                if kind == "refit":
                                    self.refit(what, repeat)
                                else:
                                    self.reference(what, repeat)
                            except SpikebenchError as exc:
                                if kind != "refit":
                                    raise
                                failed.add(key)
                                self.skipped_row(what, str(exc), status="failed")
                    bar.update(1)
                todo = waiting
                if todo:
                    time.sleep(0.5)
        finally:
            bar.close()

    def run(self) -> None:
        """Tune every cell this process can help with, then do the missing refits."""
        for cell in plan_cells(self.spec):
            if cell.skip_reason:
                if not self.row_path(cell.key, -1).exists():
                    self.skipped_row(cell, cell.skip_reason)
                continue
            try:
                self.tune(cell)
            except SpikebenchError as exc:
                self.skipped_row(cell, str(exc), status="failed")
        self.run_jobs()


def _fail_dead_local_trials(study: Any) -> None:
    """Storages without heartbeats (the journal file) never fail a killed worker's trial: fail
    RUNNING trials whose worker process on this host is gone and queue their parameters again."""
    from optuna.trial import TrialState

    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        host, _, pid = worker.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(Exception):  # another process may have done it first
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"retry_of": t.number},
                                skip_if_exists=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fail_reasons(trials: list[Any]) -> str:
    reasons = [str(t.user_attrs.get("reason") or t.system_attrs.get("fail_reason", ""))
               for t in trials]
    reasons = [r for r in reasons if r]
    return "; ".join(sorted(set(reasons))[:3]) or "all trials failed or were pruned"


@contextlib.contextmanager
def _claim(lock: Path, steal: bool) -> Iterator[bool]:
    """Claim a refit job with an exclusive lock file so concurrent workers do not duplicate it;
    a lock left by a dead process on this host (or any lock when ``steal``) is taken over."""
    lock.parent.mkdir(parents=True, exist_ok=True)
    me = f"{socket.gethostname()}:{os.getpid()}"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if steal or _stale(lock):
                lock.unlink(missing_ok=True)
                continue
            yield False
            return
        with os.fdopen(fd, "w") as fh:
            fh.write(me)
        try:
            yield True
        finally:
            lock.unlink(missing_ok=True)
        return
    yield False


def _stale(lock: Path) -> bool:
    try:
        host, pid = lock.read_text().rsplit(":", 1)
    except (OSError, ValueError):
        return True
    if host != socket.gethostname():
        return time.time() - lock.stat().st_mtime > 3600
    return pid.isdigit() and not _alive(int(pid))


def _bar(enabled: bool, total: int, desc: str) -> Any:
    from tqdm.auto import tqdm

    # disable=None: tqdm shows the bar only when stderr is a terminal (clean CI logs and files)
    return tqdm(total=total, desc=desc, disable=None if enabled else True, leave=False,
                file=sys.stderr)


# --------------------------------------------------------------------------------------------
# public API


def _threads_per_worker(workers: int) -> int:
    return max(1, (os.cpu_count() or 1) // max(workers, 1))


def _worker_main(raw_spec: dict[str, Any], out: str, storage: str, trials: int | None,
                 worker: int, threads: int, progress: bool = False) -> None:
    import torch

    torch.set_num_threads(threads)
    spec = parse_spec(raw_spec)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    Runner(spec, Path(out), storage, trials=trials, worker=worker, progress=progress).run()


def run_study(
    spec: StudySpec | str | Path,
    out: str | Path,
    *,
    trials: int | None = None,
    storage: str | None = None,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Run (or resume) the study ``spec`` writing the results folder ``out``; returns ``out``.

    ``workers`` > 1 starts that many local worker processes, each with ``cores // workers``
    torch threads; any number of ``run_study`` calls on other machines can join through the
    same RDB ``storage``.
    """
    import multiprocessing as mp

    import optuna
    import torch

    spec_path = None
    if not isinstance(spec, StudySpec):
        spec_path = Path(spec)
        spec = load_spec(spec_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if workers < 1:
        raise SpecError(f"--workers must be >= 1, got {workers}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = storage_url(spec, out, storage)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    runner = Runner(spec, out, url, trials=trials, progress=progress)
    data = runner.data()
    splits = runner.splits()
    write_splits(out / "splits.json", splits)
    if spec_path is not None and not (out / "spec.toml").exists():
        (out / "spec.toml").write_text(spec_path.read_text())
    protocol = _protocol(spec, data, splits, url, started)
    write_json(out / "protocol.json", protocol)
    runner.storage  # noqa: B018  (create the storage once before workers race to it)
    threads = _threads_per_worker(workers)
    if workers == 1:
        torch.set_num_threads(threads)
        runner.run()
    else:
        ctx = mp.get_context("spawn")
        raw = spec.model_dump(mode="python")
        procs = [ctx.Process(target=_worker_main,
                             args=(raw, str(out), url, trials, i, threads, progress and i == 0))
                 for i in range(workers)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        torch.set_num_threads(os.cpu_count() or 1)
        runner.run()  # anything a dead worker left: missing trials, refits (stale locks)
    collect(out, spec, url)
    protocol["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_json(out / "protocol.json", protocol)
    return out


def collect(out: Path, spec: StudySpec, url: str) -> None:
    """Rebuild results / predictions / curves / trials tables from the per-row files."""
    for name in ("rows", "predictions", "curves"):
        files = list((out / name).glob("*.parquet"))
        target = out / ("results.parquet" if name == "rows" else f"{name}.parquet")
        if files or name == "rows":
            concat_parquet(files, target)
    write_parquet(out / "trials.parquet", trials_frame(spec, url))


def trials_frame(spec: StudySpec, url: str) -> Any:
    """Every trial of every cell as one table (reports read this, not the storage)."""
    import pandas as pd

    storage = open_storage(url)
    frames = []
    for cell in plan_cells(spec):
        name = cell_study_name(spec, cell.backend, cell.rule)
        try:
            study = _load_existing(storage, name)
        except KeyError:
            continue
        if study is None:
            continue
        value = "values" if spec.multi_objective else "value"
        df = study.trials_dataframe(attrs=("number", value, "params", "state", "duration",
                                           "user_attrs", "datetime_start"))
        if df.empty:
            continue
        df["state"] = df["state"].astype(str)
        if "duration" in df:
            df["duration_seconds"] = df.pop("duration").dt.total_seconds()
        pareto = {t.number for t in study.best_trials} if spec.multi_objective else (
            {study.best_trial.number} if any(df["state"] == "COMPLETE") else set())
        df["pareto"] = df["number"].isin(pareto)
        df.insert(0, "rule", cell.rule)
        df.insert(0, "backend", cell.backend)
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _load_existing(storage: Any, name: str) -> Any:
    import optuna

    names = {s.study_name for s in optuna.get_all_study_summaries(storage=storage)}
    if name not in names:
        return None
    return optuna.load_study(study_name=name, storage=storage)


def _protocol(spec: StudySpec, data: Dataset, splits: dict[str, dict[str, list[str]]], url: str,
              started: str) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("spikebench", "torch", "numpy", "optuna", "scikit-learn", "scikit-image",
                "nibabel", "pandas", "snntorch", "spikingjelly", "nir"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    per_split = {}
    for r, s in splits.items():
        masks = split_masks(data.groups, s)
        per_split[r] = {f"n_{k}_patients": len(v) for k, v in s.items()}
        per_split[r].update({f"n_{k}_slices": int(m.sum()) for k, m in masks.items()})
    data_info = dict(data.info)
    excluded = data_info.pop("excluded_cases", [])
    return {
        "study": spec.study.name,
        "data": data_info,
        "excluded_cases": excluded,
        "splits": per_split,
        "repeats": spec.split.repeats,
        "seeds": {"study": spec.study.seed, "split": spec.split.seed,
                  "refit": [spec.study.seed + r for r in range(spec.split.repeats)]},
        "metric": spec.study.metric,
        "grid": {"backends": spec.grid.backends, "rules": spec.grid.rules},
        "references": spec.study.references,
        "search": {**spec.search.model_dump(), "storage": redact(url)},
        "versions": versions,
        "machine": _machine(),
        "started": started,
    }


def _machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": gpu, "python": platform.python_version(),
            "platform": platform.platform()}


# --------------------------------------------------------------------------------------------
# status


def study_status(target: str | Path, storage: str | None = None) -> Any:
    """Per cell: trials complete / pruned / failed / running, best value, elapsed, rows done."""
    import pandas as pd
    from optuna.trial import TrialState

    target = Path(target)
    if target.is_dir():
        spec_file = target / "spec.toml"
        if not spec_file.exists():
            raise DataError(f"{target} is not a study folder (no spec.toml); pass the spec file")
        spec, out = load_spec(spec_file), target
    else:
        spec, out = load_spec(target), None
    url = storage_url(spec, out or Path("."), storage)
    if out is None and url.startswith("journal:"):
        raise SpecError("with a spec file and no --storage, pass the results folder instead")
    store = open_storage(url)
    rows = []
    for cell in plan_cells(spec):
        name = cell_study_name(spec, cell.backend, cell.rule)
        study = _load_existing(store, name)
        counts = dict.fromkeys(("complete", "pruned", "failed", "running", "waiting"), 0)
        best, elapsed = float("nan"), float("nan")
        if study is not None:
            trials = study.get_trials(deepcopy=False)
            for t in trials:
                key = t.state.name.lower()
                if key == "fail":
                    key = "failed"
                counts[key] = counts.get(key, 0) + 1
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            if complete:
                best = max(t.values[0] for t in complete)
            starts = [t.datetime_start for t in trials if t.datetime_start]
            ends = [t.datetime_complete for t in trials if t.datetime_complete]
            if starts and ends:
                elapsed = (max(ends) - min(starts)).total_seconds()
        done = 0
        if out is not None:
            done = sum((out / "rows" / f"{cell.key}__r{r}.parquet").exists()
                       for r in range(spec.split.repeats))
        rows.append({"backend": cell.backend, "rule": cell.rule, **counts,
                     "target": spec.search.trials, "best_val": best,
                     "elapsed_s": elapsed, "repeats_done": f"{done}/{spec.split.repeats}",
                     "note": cell.skip_reason})
    return pd.DataFrame(rows)
