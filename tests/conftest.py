"""Shared fixtures: generated feature tables and a throwaway PostgreSQL database."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import pytest


def write_feature_table(path: Path, *, patients: int = 24, features: int = 8, seed: int = 0,
                        shift: float = 1.5) -> Path:
    """A features table like ``spikebench extract`` writes: half the patients have lesion
    slices whose first features are shifted by ``shift`` (learnable, not trivially)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for p in range(patients):
        n = int(rng.integers(8, 16))
        lesion = np.zeros(n, dtype=int)
        if p % 2 == 0:
            start = int(rng.integers(0, n - 3))
            lesion[start:start + int(rng.integers(2, 5))] = 1
        base = rng.normal(0, 0.5, features)
        for i in range(n):
            f = base + rng.normal(0, 1, features)
            f[:3] += shift * lesion[i]
            rows.append({"patient_id": f"liver_{p}", "slice_idx": i, "label": int(lesion[i]),
                         **{f"f{j}": float(f[j]) for j in range(features)}})
    frame = pd.DataFrame(rows)
    frame.to_parquet(path, index=False)
    return path


@pytest.fixture
def one_torch_thread():
    """Small problems run fastest (and steadiest on a shared machine) on one torch thread;
    modules opt in with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def make_feature_table():
    """The generator itself, for tests that need several or bigger tables."""
    return write_feature_table


@pytest.fixture
def feature_table(tmp_path: Path) -> Path:
    return write_feature_table(tmp_path / "features.parquet")


@pytest.fixture
def postgres_url() -> str:
    """A fresh, empty database on the server named by ``$SPIKEBENCH_TEST_POSTGRES_URL``
    (`.ci/run` starts Debian's PostgreSQL and sets it); skipped when unset."""
    base = os.environ.get("SPIKEBENCH_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("set SPIKEBENCH_TEST_POSTGRES_URL to run PostgreSQL tests (.ci/run does)")
    import sqlalchemy

    name = f"spikebench_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + "/" + name
    yield url
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def make_patient_problem(seed: int, n_patients: int = 24, features: int = 24) -> tuple:
    """A harder, phantom-like table: patients with their own offsets (so a patient-level split
    shifts the data), about 25 % lesion slices that move six features by 0.9 SD with noise,
    split 14 / 4 / 6 patients into train / val / test and standardised on train."""
    from spikebench.harness.rules import Split

    rng = np.random.default_rng(seed)
    rows, labels, groups = [], [], []
    for patient in range(n_patients):
        m = int(rng.integers(15, 30))
        y = (rng.random(m) < 0.25).astype(np.int64)
        X = rng.normal(0, 1, (m, features)) + rng.normal(0, 0.5, features)
        X[:, :6] += 0.9 * y[:, None] * rng.uniform(0.5, 1.5, (m, 1))
        rows.append(X), labels.append(y), groups.append(np.full(m, patient))
    X, y, g = np.concatenate(rows), np.concatenate(labels), np.concatenate(groups)
    order = rng.permutation(n_patients)
    parts = [np.isin(g, order[:14]), np.isin(g, order[14:18]), np.isin(g, order[18:])]
    mu, sd = X[parts[0]].mean(0), X[parts[0]].std(0)
    return tuple(Split(((X[p] - mu) / sd).astype(np.float32), y[p], g[p])
                 for p in parts)


@pytest.fixture
def held_out_fits():
    """``fit(rule_name)``: the rule at the default point of its search space, fitted on the
    custom backend to :func:`make_patient_problem` seeds 0-2; one namespace per seed with
    ``model``, ``params``, ``train``, ``test`` and the test ``balanced_accuracy`` at P = 0.5."""
    from types import SimpleNamespace

    from spikebench.backends import get_backend
    from spikebench.harness.metrics import score
    from spikebench.harness.rules import FitContext, get_rule
    from spikebench.harness.space import default_values

    def fit(rule_name: str) -> list[SimpleNamespace]:
        rule = get_rule(rule_name)
        params = rule.parse_params(default_values(rule.search_space()))
        fits = []
        for seed in range(3):
            train, val, test = make_patient_problem(seed)
            ctx = FitContext.for_validation(val, "balanced_accuracy",
                                            backend=get_backend("custom"), seed=seed)
            model = rule.fit(train, val, params, ctx)
            ba = score("balanced_accuracy", test.y, model.predict_proba(test.X))
            fits.append(SimpleNamespace(model=model, params=params, train=train, test=test,
                                        balanced_accuracy=ba))
        print(f"{rule_name} test balanced accuracy: "
              f"{np.round([f.balanced_accuracy for f in fits], 3)}")
        return fits

    return fit


@pytest.fixture(scope="session")
def fused_kernels() -> None:
    """Skip when the custom engine's fused C++ kernels cannot be built here; fail instead when
    ``SPIKEBENCH_REQUIRE_CPP_KERNELS=1`` (CI sets it: a silent fallback there would keep the
    fused path out of every test)."""
    from spikebench.backends import _lif_kernels

    reason = _lif_kernels.unavailable_reason()
    if reason is None:
        return
    message = f"fused C++ kernels unavailable: {reason}"
    if os.environ.get("SPIKEBENCH_REQUIRE_CPP_KERNELS") == "1":
        pytest.fail(message)
    pytest.skip(message)
