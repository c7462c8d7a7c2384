"""A user opens a study's journal in optuna-dashboard: besides the tuned parameters, each Optuna
study shows the settings the search kept fixed and where it belongs (cell, fold, seed, scheme,
the hashes of the run's identity.json), as "Study User Attributes" (read here through optuna's
own API, as the dashboard reads them)."""

from __future__ import annotations

import json

import optuna
from spec_text import tiny_spec

from spikebench.harness.study import run_study


def test_every_study_carries_its_identity_and_fixed_settings(tmp_path, feature_table):
    spec = tmp_path / "tiny.toml"
    spec.write_text(tiny_spec(feature_table, split={"repeats": 1}, search={"trials": 2},
                              space_surrogate={"epochs": 2, "hidden": 8, "steps": 4,
                                               "encoding": "direct", "reset": "zero"}))
    out = run_study(spec, tmp_path / "run", progress=False)
    identity = json.loads((out / "identity.json").read_text())

    # the dashboard's reading: optuna's plain journal storage on the file
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(out / "optuna.journal")))
    summaries = {s.study_name: s for s in optuna.get_all_study_summaries(storage)}
    # the reference is tuned like every cell: a study of its own
    assert set(summaries) == {"tiny/custom/surrogate", "tiny/reference/logistic_regression"}
    attrs = summaries["tiny/custom/surrogate"].user_attrs
    assert attrs["spec_sha256"] == identity["spec_sha256"]
    assert attrs["data_sha256"] == identity["data_sha256"]
    assert attrs["scheme"] == "holdout" and attrs["fold"] == "" and attrs["repeat"] == 0
    assert attrs["cell"] == "custom/surrogate" and attrs["metric"] == "roc_auc"
    assert isinstance(attrs["seed"], int)
    # what the search did not tune, by name
    assert attrs["fixed.epochs"] == 2 and attrs["fixed.hidden"] == 8
    assert attrs["fixed.encoding"] == "direct" and attrs["fixed.reset"] == "zero"
    tuned = set(optuna.load_study(study_name="tiny/custom/surrogate",
                                  storage=storage).trials[0].params)
    assert tuned and not tuned & {k.removeprefix("fixed.") for k in attrs
                                  if k.startswith("fixed.")}
    # reopening (a resumed run) leaves the attributes as they were: none is written again
    before = _attribute_writes(out / "optuna.journal")
    run_study(spec, out, progress=False)
    assert _attribute_writes(out / "optuna.journal") == before
    assert {s.study_name: s for s in optuna.get_all_study_summaries(storage)}[
        "tiny/custom/surrogate"].user_attrs == attrs


def _attribute_writes(journal) -> int:
    """Lines of the journal that set a study's user attribute."""
    from optuna.storages.journal._storage import JournalOperation

    code = int(JournalOperation.SET_STUDY_USER_ATTR)
    return sum(json.loads(line).get("op_code") == code
               for line in journal.read_text().splitlines() if line.strip())
