"""Many workers on PostgreSQL: a worker SIGKILLed mid-trial costs nothing.

Two `spikebench study run` processes share one study on PostgreSQL. One is killed with SIGKILL
while it runs a trial; its trial's heartbeat goes stale, it is marked failed and retried, and the
survivor finishes the study: every cell reaches its trial count, no trial is left RUNNING and
results.parquet has every row exactly once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import pytest
from spec_text import tiny_spec

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SPEC = tiny_spec("{table}", study={"name": "dist", "references": []},
                 search={"trials": 8, "pruner": "none"},
                 space_surrogate={"epochs": 25, "patience": 25, "hidden": 64, "steps": 16})


def _run(spec: Path, out: Path, url: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "spikebench", "study", "run", str(spec), "--out", str(out),
         "--storage", url, "--quiet"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_sigkilled_worker_trial_is_retried_and_study_completes(tmp_path, postgres_url,
                                                              make_feature_table):
    import optuna
    from optuna.trial import TrialState

    table = make_feature_table(tmp_path / "f.parquet", patients=30, features=12)
    spec = tmp_path / "dist.toml"
    spec.write_text(SPEC.format(table=table))
    out = tmp_path / "run"
    # the first process prepares the folder; the second joins once the study exists
    victim = _run(spec, out, postgres_url)
    storage = optuna.storages.RDBStorage(postgres_url)
    deadline = time.time() + 120
    victim_trial = None
    survivor = None
    while time.time() < deadline and victim_trial is None:
        time.sleep(0.2)
        try:
            study = optuna.load_study(study_name="dist/custom/surrogate", storage=storage)
        except KeyError:
            continue
        if survivor is None:
            survivor = _run(spec, out, postgres_url)
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.user_attrs.get("worker", "").endswith(f":{victim.pid}"):
                victim_trial = t.number
    assert victim_trial is not None, "the victim never started a trial"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert survivor is not None
    log, _ = survivor.communicate(timeout=600)
    assert survivor.returncode == 0, log

    study = optuna.load_study(study_name="dist/custom/surrogate", storage=storage)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    assert TrialState.RUNNING not in states
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) >= 8
    killed = study.trials[victim_trial]
    assert killed.state == TrialState.FAIL  # marked failed by the heartbeat, then retried
    results = pd.read_parquet(out / "results.parquet")
    assert sorted(results["repeat"]) == [0, 1]
    assert results.duplicated(["backend", "rule", "repeat"]).sum() == 0
    password = urlsplit(postgres_url).password
    if password:
        assert password not in (out / "protocol.json").read_text()
        assert password not in log
