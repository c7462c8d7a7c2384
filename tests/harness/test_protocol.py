"""Protocol schemes: every fold keeps test patients out of training and tuning; nested CV tests
every patient exactly once per repeat."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikebench.errors import DataError
from spikebench.harness.protocol import SCHEMES, make_folds


@st.composite
def cohorts(draw):
    n_pos, n_neg = draw(st.integers(5, 14)), draw(st.integers(5, 14))
    groups, y = [], []
    for i in range(n_pos + n_neg):
        n = draw(st.integers(1, 5))
        labels = [0] * n
        if i < n_pos:
            labels[draw(st.integers(0, n - 1))] = 1
        groups += [f"p{i:03d}"] * n
        y += labels
    return np.array(y), np.array(groups)


SETTINGS = {"repeats": 2, "test_fraction": 0.25, "val_fraction": 0.25, "outer_folds": 3}


@settings(max_examples=40, deadline=None)
@given(cohort=cohorts(), scheme=st.sampled_from(sorted(SCHEMES)), seed=st.integers(0, 999))
def test_no_test_patient_is_ever_trained_or_tuned_on(cohort, scheme, seed):
    y, groups = cohort
    folds = make_folds(y, groups, scheme=scheme, seed=seed, **SETTINGS)
    everyone = set(groups)
    for f in folds:
        test = set(f.test)
        assert test and not test & (set(f.train) | set(f.val) | set(f.tune_train)
                                    | set(f.tune_val))
        assert not set(f.train) & set(f.val)
        assert set(f.train) | set(f.val) | test <= everyone
    if scheme == "nested-cv":
        for r in range(SETTINGS["repeats"]):
            tested = Counter(p for f in folds if f.repeat == r for p in f.test)
            assert set(tested) == everyone and set(tested.values()) == {1}
            assert len({f.study for f in folds if f.repeat == r}) == SETTINGS["outer_folds"]
    if scheme == "holdout":
        assert len({f.test for f in folds}) == 1 and {f.study for f in folds} == {""}


def test_nested_cv_needs_a_patient_of_each_class_per_fold():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    groups = np.array([f"p{i}" for i in range(8)])
    with pytest.raises(DataError, match="only 2 patient"):
        make_folds(y, groups, scheme="nested-cv", seed=0, **SETTINGS)


def test_unknown_scheme_names_the_known_ones():
    with pytest.raises(DataError, match="nested-cv"):
        make_folds(np.array([0, 1]), np.array(["a", "b"]), scheme="kfold", seed=0, **SETTINGS)
