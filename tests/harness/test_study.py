"""A user runs a tiny study on a feature table: results, splits and resume behave as documented."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from spec_text import tiny_spec

from spikebench.cli import main
from spikebench.harness.results import METRICS, RESULT_COLUMNS
from spikebench.harness.status import study_status
from spikebench.harness.storage import redact
from spikebench.harness.study import run_study

TINY = tiny_spec("{table}", study={"eval_steps": [0.5, 1.0, 2.0]})


def write_spec(tmp_path: Path, table: Path, text: str = TINY) -> Path:
    spec = tmp_path / "tiny.toml"
    spec.write_text(text.format(table=table))
    return spec


def test_tiny_study_writes_results_splits_and_resumes(tmp_path, feature_table, capsys):
    spec = write_spec(tmp_path, feature_table)
    out = tmp_path / "run"
    assert main(["study", "run", str(spec), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "results folder:" in printed and "majority class" in printed

    results = pd.read_parquet(out / "results.parquet")
    for col in ("backend", "rule", "repeat", "seed", "params", "train_seconds",
                "n_train_patients", "n_test_patients"):
        assert col in results.columns
    for prefix in ("val_", "test_"):
        for m in METRICS:
            assert prefix + m in results.columns
    assert set(RESULT_COLUMNS) <= set(results.columns)
    snn = results[results["kind"] == "snn"]
    assert sorted(snn["repeat"]) == [0, 1] and (snn["status"] == "ok").all()
    assert set(results[results["kind"] == "reference"]["rule"]) == {"logistic_regression"}
    json.loads(snn["params"].iloc[0])

    # splits: patient-disjoint, test sealed and identical across repeats, counts match rows
    recorded = json.loads((out / "splits.json").read_text())
    assert recorded["scheme"] == "holdout"
    splits = {str(f["repeat"]): f for f in recorded["folds"]}
    assert sorted(splits) == ["0", "1"]
    assert splits["0"]["test"] == splits["1"]["test"]
    for s in splits.values():
        assert not set(s["train"]) & set(s["test"]) and not set(s["val"]) & set(s["test"])
        assert not (set(s["tune_train"]) | set(s["tune_val"])) & set(s["test"])
    table = pd.read_parquet(feature_table)
    row = snn[snn["repeat"] == 0].iloc[0]
    assert row["n_test_patients"] == len(splits["0"]["test"])
    assert row["n_test_slices"] == table["patient_id"].isin(splits["0"]["test"]).sum()

    # predictions: test patients only, at 0.5T, T and 2T
    pred = pd.read_parquet(out / "predictions.parquet")
    assert set(pred["patient_id"]) == set(splits["0"]["test"])
    p0 = pred[(pred["backend"] == "custom") & (pred["repeat"] == 0)]
    assert sorted(p0["steps"].unique()) == [3, 6, 12] and (p0["train_steps"] == 6).all()
    assert ((pred["prob"] >= 0) & (pred["prob"] <= 1)).all()

    all_trials = pd.read_parquet(out / "trials.parquet")
    trials = all_trials[all_trials["backend"] == "custom"]
    assert len(trials) == 3 and trials["pareto"].sum() == 1
    # the logistic-regression reference is tuned with the same budget
    assert (all_trials["rule"] == "logistic_regression").sum() == 3
    status = study_status(out)
    assert int(status.loc[0, "complete"] + status.loc[0, "pruned"]) == 3
    assert status.loc[0, "repeats_done"] == "2/2"

    # resume: nothing to do, nothing duplicated
    mtime = (out / "rows" / "custom__surrogate__r0.parquet").stat().st_mtime
    run_study(spec, out, progress=False)
    assert len(pd.read_parquet(out / "trials.parquet")) == len(all_trials)
    assert len(pd.read_parquet(out / "results.parquet")) == len(results)
    assert (out / "rows" / "custom__surrogate__r0.parquet").stat().st_mtime == mtime
    # asking for more trials runs only the missing ones
    run_study(spec, out, trials=4, progress=False)
    more = pd.read_parquet(out / "trials.parquet")
    assert more.groupby("backend").size().to_dict() == {"custom": 4, "reference": 4}


def test_unsupported_cell_is_skipped_with_reason(tmp_path, feature_table, monkeypatch):
    from spikebench.backends.capabilities import Capability
    from spikebench.backends.custom_backend import CustomBackend

    monkeypatch.setattr(CustomBackend, "capabilities",
                        frozenset({Capability.DENSE_LIF, Capability.SURROGATE_GRADIENTS}))
    text = TINY.replace('rules = ["surrogate"]', 'rules = ["surrogate", "tempotron"]')
    out = run_study(write_spec(tmp_path, feature_table, text), tmp_path / "run", trials=1,
                    progress=False)
    results = pd.read_parquet(out / "results.parquet")
    skipped = results[results["rule"] == "tempotron"]
    assert len(skipped) == 1 and skipped["status"].iloc[0] == "skipped"
    assert "cannot build Tempotron potentials" in skipped["reason"].iloc[0]


def test_same_spec_and_seed_give_the_same_table(tmp_path, feature_table):
    spec = write_spec(tmp_path, feature_table)
    a = pd.read_parquet(run_study(spec, tmp_path / "a", progress=False) / "results.parquet")
    b = pd.read_parquet(run_study(spec, tmp_path / "b", progress=False) / "results.parquet")
    cols = [c for c in a.columns if c.startswith(("val_", "test_")) or c == "params"]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_storage_passwords_are_redacted(tmp_path, feature_table):
    assert redact("postgresql+psycopg://bob:s3cret@db:5432/x") == (
        "postgresql+psycopg://bob:***@db:5432/x")
    assert redact("journal:/tmp/a.journal") == "journal:/tmp/a.journal"
    out = run_study(write_spec(tmp_path, feature_table), tmp_path / "run", trials=1,
                    storage=f"sqlite:///{tmp_path}/db.sqlite3", progress=False)
    assert "db.sqlite3" in (out / "protocol.json").read_text()


@pytest.mark.parametrize("password", ["p#ss", "p?ss", "p/ss", "p@ss", "p:ss", "p%23ss", "p ss"])
def test_passwords_with_url_special_characters_are_redacted(password):
    from urllib.parse import quote

    url = f"postgresql+psycopg://bob:{quote(password, safe='')}@db:5432/x"
    shown = redact(url)
    assert quote(password, safe="") not in shown and password not in shown.split("@")[0][-8:]
    assert "***" in shown and "db:5432/x" in shown


def test_cli_errors_are_one_line_without_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[data]\nsource = "table"\npath = "x.csv"\n[grid]\nrules = ["hebb"]\n')
    assert main(["study", "run", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown rule 'hebb'" in err and "Traceback" not in err


@pytest.mark.parametrize("flag", [["--help"], ["study", "run", "--help"]])
def test_help_does_not_import_torch(flag):
    import subprocess
    import sys

    code = ("import sys; from spikebench.cli import main\n"
            f"try: main({flag!r})\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'torch imported by --help'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_standardisation_uses_train_rows_only(feature_table):
    from spikebench.harness.data import StudyData, make_view

    t = pd.read_parquet(feature_table)
    X = t[[c for c in t.columns if c.startswith("f")]].to_numpy(np.float32).copy()
    extreme = (t["patient_id"] == "liver_1").to_numpy()  # a test patient must not move scaling
    X[extreme] += 1000.0
    data = StudyData(X, t["label"].to_numpy(), t["patient_id"].to_numpy().astype(str), None, [],
                     {})
    view = make_view(data, [f"liver_{i}" for i in range(2, 24)], ["liver_0"], ["liver_1"])
    assert abs(view.train.X.mean()) < 1e-5
    assert view.test.X.mean() > 100


def test_multi_objective_study_keeps_a_pareto_front(tmp_path, feature_table):
    text = TINY.replace("[search]\ntrials = 3", '[search]\ntrials = 5\nsampler = "nsga2"\n'
                        'pruner = "none"\nminimize = "synops"')
    out = run_study(write_spec(tmp_path, feature_table, text), tmp_path / "run", progress=False)
    trials = pd.read_parquet(out / "trials.parquet")
    trials = trials[trials["backend"] == "custom"]  # each cell has its own front
    assert {"values_0", "values_1"} <= set(trials.columns)
    front = trials[trials["pareto"]]
    assert len(front) >= 1
    # no Pareto trial is dominated by another complete trial
    done = trials[trials["state"] == "COMPLETE"]
    for _, a in front.iterrows():
        dominated = ((done["values_0"] >= a["values_0"]) & (done["values_1"] <= a["values_1"])
                     & ((done["values_0"] > a["values_0"]) | (done["values_1"] < a["values_1"])))
        assert not dominated.any()
    assert (pd.read_parquet(out / "results.parquet")["status"] == "ok").all()


def test_diverging_trials_are_pruned_with_reason(tmp_path, feature_table, monkeypatch):
    from spikebench.harness.rules import DivergedError
    from spikebench.harness.rules.surrogate import SurrogateGradient

    real_fit = SurrogateGradient.fit
    calls = {"n": 0}

    def flaky_fit(self, train, val, params, ctx):
        calls["n"] += 1
        if calls["n"] == 2:
            raise DivergedError("non-finite loss (nan) at epoch 0")
        return real_fit(self, train, val, params, ctx)

    monkeypatch.setattr(SurrogateGradient, "fit", flaky_fit)
    out = run_study(write_spec(tmp_path, feature_table), tmp_path / "run", progress=False)
    trials = pd.read_parquet(out / "trials.parquet")
    trials = trials[trials["backend"] == "custom"]
    pruned = trials[trials["state"] == "PRUNED"]
    assert "non-finite loss" in " ".join(pruned["user_attrs_reason"].dropna())
    assert (trials["state"].isin(["COMPLETE", "PRUNED"])).sum() == 3


def test_refit_claimed_by_a_dead_worker_is_taken_over(tmp_path, feature_table):
    """A worker SIGKILLed during the final evaluation leaves its lock file behind; the OS
    released the lock with the process, so the next run takes the job over and writes the row
    once."""
    import subprocess
    import sys

    spec = write_spec(tmp_path, feature_table)
    out = run_study(spec, tmp_path / "run", progress=False)
    row = out / "rows" / "custom__surrogate__r1.parquet"
    row.unlink()
    lock = out / "locks" / "custom__surrogate__r1.lock"
    code = ("import os, sys; from filelock import FileLock; "
            f"FileLock({str(lock)!r}).acquire(); os._exit(0)")  # dies holding the lock
    subprocess.run([sys.executable, "-c", code], check=True)
    assert lock.exists()
    run_study(spec, out, progress=False)
    assert row.exists()
    results = pd.read_parquet(out / "results.parquet")
    assert results.duplicated(["backend", "rule", "repeat", "fold"]).sum() == 0
    assert len(results[results["backend"] == "custom"]) == 2


def test_a_zero_byte_row_counts_as_missing(tmp_path, feature_table):
    """A row file torn by a full disk is never read as a result: it is redone."""
    spec = write_spec(tmp_path, feature_table)
    out = run_study(spec, tmp_path / "run", progress=False)
    row = out / "rows" / "custom__surrogate__r0.parquet"
    row.write_bytes(b"")
    run_study(spec, out, progress=False)
    assert row.stat().st_size > 0
    assert study_status(out).loc[0, "repeats_done"] == "2/2"


def test_a_folder_of_another_study_is_refused(tmp_path, feature_table):
    from spikebench.errors import SpecError

    out = run_study(write_spec(tmp_path, feature_table), tmp_path / "run", trials=1,
                    progress=False)
    other = TINY.replace("repeats = 2", "repeats = 3")
    with pytest.raises(SpecError, match=r"another study.*split.repeats: 2 -> 3"):
        run_study(write_spec(tmp_path, feature_table, other), out, trials=1, progress=False)


def test_more_trials_redo_the_refits_whose_best_trial_changed(tmp_path, feature_table):
    spec = write_spec(tmp_path, feature_table)
    out = run_study(spec, tmp_path / "run", trials=1, progress=False)
    before = pd.read_parquet(out / "results.parquet")
    run_study(spec, out, trials=6, progress=False)
    after = pd.read_parquet(out / "results.parquet")
    trials = pd.read_parquet(out / "trials.parquet")
    best = int(trials.loc[trials["pareto"], "number"].iloc[0])
    snn = after[after["kind"] == "snn"]
    assert (snn["best_trial"] == best).all() and (snn["n_trials"] >= 1).all()
    if best != 0:  # the refits were redone with the new best parameters
        assert not before[before["kind"] == "snn"]["params"].equals(snn["params"])


def test_trial_of_a_killed_local_worker_is_failed_and_retried_on_the_journal(tmp_path,
                                                                              feature_table):
    """The journal file has no heartbeat: a RUNNING trial whose process is gone must not stall
    the study forever; it is failed and its parameters are queued again."""
    import socket
    import subprocess
    import sys

    import optuna
    from optuna.trial import TrialState

    from spikebench.harness.storage import open_storage

    spec = write_spec(tmp_path, feature_table)
    out = run_study(spec, tmp_path / "run", trials=1, progress=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study = optuna.load_study(study_name="tiny/custom/surrogate",
                              storage=open_storage(f"journal:{out / 'optuna.journal'}"))
    orphan = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True)})
    orphan.set_user_attr("worker", f"{socket.gethostname()}:{dead.pid}")
    run_study(spec, out, trials=2, progress=False)  # would wait forever for the orphan
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert TrialState.RUNNING not in states
    assert study.trials[orphan.number].state == TrialState.FAIL
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 2


def test_short_studies_leave_trials_to_the_model_based_sampler():
    """With Optuna's default 10 random start-up trials, a 10-trial cell would never use TPE."""
    from spikebench.harness.samplers import make_sampler, startup_trials

    assert startup_trials(None, 10) == 3
    assert startup_trials(None, 50) == 10 and startup_trials(None, 2) == 1
    assert startup_trials(5, 10) == 5
    sampler = make_sampler("tpe", 0, False, startup_trials(None, 10))
    assert getattr(sampler, "_n_startup_trials", 3) == 3  # private in Optuna; checked if present


def test_startup_trials_must_be_positive(tmp_path, feature_table):
    from spikebench.errors import SpecError
    from spikebench.harness.spec import load_spec

    text = TINY.replace("[search]", "[search]\nstartup_trials = 0")
    spec = write_spec(tmp_path, feature_table, text)
    with pytest.raises(SpecError, match="startup_trials"):
        load_spec(spec)


def test_nested_cv_predicts_every_patient_once_per_cell_and_refit(tmp_path, feature_table):
    """Nested CV's default: each outer fold's tuned configuration is refit with 3 seeds (one
    Optuna study per fold, shared by its refits); every patient is tested once per refit."""
    text = TINY.replace('[split]\nscheme = "holdout"\nrepeats = 2',
                        '[split]\nscheme = "nested-cv"\nrepeats = 1\nouter_folds = 3')
    out = run_study(write_spec(tmp_path, feature_table, text), tmp_path / "run", trials=2,
                    progress=False)
    patients = set(pd.read_parquet(feature_table)["patient_id"].astype(str))
    pred = pd.read_parquet(out / "predictions.parquet")
    pred = pred[pred["steps"] == pred["train_steps"]]
    for (_, _, _), cell in pred.groupby(["backend", "rule", "refit"]):
        per_patient = cell.groupby("patient_id")["fold"].nunique()
        assert set(per_patient.index) == patients and (per_patient == 1).all()
    assert sorted(pred["refit"].unique()) == [0, 1, 2]
    folds = json.loads((out / "splits.json").read_text())["folds"]
    assert json.loads((out / "splits.json").read_text())["scheme"] == "nested-cv"
    for f in folds:
        assert not set(f["test"]) & (set(f["tune_train"]) | set(f["tune_val"]))
    trials = pd.read_parquet(out / "trials.parquet")
    assert sorted(trials["fold"].unique()) == [0, 1, 2]  # one study per fold
    assert sorted(trials["study"].unique()) == ["fold0", "fold1", "fold2"]
    from spikebench.reports import figure_history

    assert sorted(figure_history.data(trials)["study"].unique()) == ["fold0", "fold1", "fold2"]
    results = pd.read_parquet(out / "results.parquet")
    snn = results[results["kind"] == "snn"]
    assert sorted(zip(snn["fold"], snn["refit"])) == [(f, r) for f in range(3) for r in range(3)]
    assert snn.groupby("fold")["seed"].nunique().eq(3).all()  # a new seed per refit
    assert snn.groupby("fold")["best_trial"].nunique().eq(1).all()  # one tuned configuration


def test_a_degenerate_patient_level_tuning_metric_is_refused(tmp_path, feature_table):
    from spikebench.errors import SpecError

    text = TINY.replace('name = "tiny"', 'name = "tiny"\nmetric = "patient_pr_auc"')
    with pytest.raises(SpecError, match="cannot discriminate"):
        run_study(write_spec(tmp_path, feature_table, text), tmp_path / "run", trials=1,
                  progress=False)


def test_thresholds_are_chosen_on_validation(tmp_path, feature_table):
    out = run_study(write_spec(tmp_path, feature_table), tmp_path / "run", trials=1,
                    progress=False)
    results = pd.read_parquet(out / "results.parquet")
    assert results["threshold"].between(0, 1).all()
    assert (results["warmup_seconds"].fillna(0) >= 0).all()
    protocol = json.loads((out / "protocol.json").read_text())
    for key in ("workers", "source", "kernel_path", "spec_sha256", "versions"):
        assert key in protocol
    assert protocol["search"]["resolved_startup_trials"] >= 1


def test_huge_feature_values_are_standardised_in_float64():
    """Values near 1e20 are finite in float32, but their float32 variance is not: the column
    must still come out scaled (mean 0, unit spread on the training rows)."""
    from spikebench.harness.data import StudyData, make_view

    rng = np.random.default_rng(0)
    groups = np.repeat([f"p{i}" for i in range(6)], 10)
    X = rng.normal(0, 1, (60, 2)).astype(np.float32)
    X[:, 1] = (X[:, 1] * 3e19 + 1e20).astype(np.float32)  # deviations² overflow float32
    data = StudyData(X, np.tile([0, 1], 30), groups, None, ["a", "b"], {})
    view = make_view(data, ["p0", "p1", "p2", "p3"], ["p4"], ["p5"])
    assert np.isfinite(view.train.X).all()
    assert abs(view.train.X[:, 1].mean()) < 1e-3 and abs(view.train.X[:, 1].std() - 1) < 1e-3


def test_inner_folds_score_each_trial_on_every_inner_split(tmp_path, feature_table):
    """[split].inner_folds = 2: a trial's value is the mean of its two inner validation
    scores (both recorded); refit r trains on inner fold r mod 2 and picks its threshold
    on that fold's validation patients (splits.json records them)."""
    import optuna

    text = TINY.replace('[split]\nscheme = "holdout"\nrepeats = 2',
                        '[split]\nscheme = "nested-cv"\nrepeats = 1\nouter_folds = 2\n'
                        'inner_folds = 2\nrefit_seeds = 2')
    out = run_study(write_spec(tmp_path, feature_table, text), tmp_path / "run", trials=2,
                    progress=False)
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "optuna.journal")))
    complete = [t for s in optuna.get_all_study_summaries(storage)
                for t in optuna.load_study(study_name=s.study_name, storage=storage).trials
                if t.state == optuna.trial.TrialState.COMPLETE]
    assert complete
    for t in complete:
        inner = [t.user_attrs["inner_0"], t.user_attrs["inner_1"]]
        assert t.value == pytest.approx(sum(inner) / 2)
    folds = json.loads((out / "splits.json").read_text())["folds"]
    for f in folds:
        assert len(f["inner"]) == 2
        assert [f["train"], f["val"]] == f["inner"][f["refit"] % 2]
