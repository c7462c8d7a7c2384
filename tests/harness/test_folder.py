"""The results folder's identity: what may change between runs of one study and what may not."""

from __future__ import annotations

import json
import tomllib

import pytest

from spikebench.errors import SpecError
from spikebench.harness.folder import IDENTITY_FORMAT, ResultsFolder, spec_identity
from spikebench.harness.spec import parse_spec
from spikebench.studies import shipped_specs


def _spec(**tables):
    raw = tomllib.loads(shipped_specs()["msd-liver"].read_text())
    for name, values in tables.items():
        raw.setdefault(name, {}).update(values)
    return parse_spec(raw)


def test_calibration_assumptions_and_the_trial_budget_do_not_change_the_identity():
    """[calibration] feeds only `spikebench calibrate`: editing it must not refuse the folder."""
    base, _ = spec_identity(_spec())
    assert spec_identity(_spec(calibration={"sigma_run": 0.05}))[0] == base
    assert spec_identity(_spec(search={"trials": 7}))[0] == base


def test_the_pre_specified_analysis_and_the_protocol_do_change_it():
    """The analysis plan is pre-specified: a folder cannot be re-analysed under another one."""
    base, raw = spec_identity(_spec())
    assert "calibration" not in raw and "analysis" in raw
    assert spec_identity(_spec(analysis={"equivalence_margin": 0.02}))[0] != base
    assert spec_identity(_spec(split={"refit_seeds": 2}))[0] != base


def test_a_folder_recorded_before_a_new_key_existed_is_the_same_study(tmp_path):
    """A newer version's key at its default (the older behaviour) does not refuse a folder;
    the same key at another value does, naming it."""
    _, raw = spec_identity(_spec())
    raw["split"].pop("inner_folds")  # as a version without inner folds recorded it
    folder = ResultsFolder(tmp_path)
    folder.identity_file.write_text(json.dumps({
        "format": IDENTITY_FORMAT, "spec_sha256": "the older version's hash", "spec": raw,
        "data_sha256": "d"}))
    folder.bind(_spec(), "d")  # inner_folds = 1 is what the older version did
    with pytest.raises(SpecError, match="inner_folds"):
        folder.bind(_spec(split={"inner_folds": 3}), "d")
