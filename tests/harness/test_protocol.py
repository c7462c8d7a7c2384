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
    groups, y, split = [], [], []
    for i in range(n_pos + n_neg):
        n = draw(st.integers(1, 5))
        labels = [0] * n
        if i < n_pos:
            labels[draw(st.integers(0, n - 1))] = 1
        groups += [f"p{i:03d}"] * n
        y += labels
        # the source's own split (only `predefined` reads it): every split holds both classes
        split += [("train", "val", "test")[(i if i < n_pos else i - n_pos) % 3]] * n
    return np.array(y), np.array(groups), np.array(split)


SETTINGS = {"repeats": 2, "test_fraction": 0.25, "val_fraction": 0.25, "outer_folds": 3}


@settings(max_examples=40, deadline=None)
@given(cohort=cohorts(), scheme=st.sampled_from(sorted(SCHEMES)), seed=st.integers(0, 999))
def test_no_test_patient_is_ever_trained_or_tuned_on(cohort, scheme, seed):
    y, groups, split = cohort
    folds = make_folds(y, groups, scheme=scheme, seed=seed, split=split, **SETTINGS)
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
    if scheme in ("holdout", "predefined"):
        assert len({f.test for f in folds}) == 1 and {f.study for f in folds} == {""}
    if scheme == "predefined":
        official = dict(zip(groups.tolist(), split.tolist()))
        for f in folds:
            for name in ("train", "val", "test"):
                assert {official[p] for p in getattr(f, name)} == {name}
            assert (f.tune_train, f.tune_val) == (f.train, f.val)
        assert [f.repeat for f in folds] == list(range(SETTINGS["repeats"]))


def test_predefined_needs_the_sources_split_with_both_classes_in_each():
    y = np.array([0, 1] * 6)
    groups = np.array([f"p{i}" for i in range(12)])
    with pytest.raises(DataError, match="needs a data source that delivers its own split"):
        make_folds(y, groups, scheme="predefined", seed=0, **SETTINGS)
    split = np.array(["train"] * 4 + ["val"] * 4 + ["test", "test", "train", "train"])
    split[8:10] = "test"
    y[8:10] = 0
    with pytest.raises(DataError, match="source's 'test' split holds 2 patients of class"):
        make_folds(y, groups, scheme="predefined", seed=0, split=split, **SETTINGS)


def test_nested_cv_needs_a_patient_of_each_class_per_fold():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    groups = np.array([f"p{i}" for i in range(8)])
    with pytest.raises(DataError, match="only 2 patient"):
        make_folds(y, groups, scheme="nested-cv", seed=0, **SETTINGS)


def test_unknown_scheme_names_the_known_ones():
    with pytest.raises(DataError, match="nested-cv"):
        make_folds(np.array([0, 1]), np.array(["a", "b"]), scheme="kfold", seed=0, **SETTINGS)


@settings(max_examples=30, deadline=None)
@given(cohort=cohorts(), seed=st.integers(0, 999), k=st.integers(2, 3),
       refits=st.integers(1, 4))
def test_inner_folds_partition_the_outer_training_set_and_refits_take_turns(cohort, seed, k,
                                                                            refits):
    """[split].inner_folds = K: K stratified inner splits of each outer training set, whose
    validation parts partition it, never touching the outer test fold; refit r trains on
    inner fold r mod K; splits.json round-trips them."""
    from spikebench.harness.protocol import Fold

    y, groups, *_ = cohort
    folds = make_folds(y, groups, scheme="nested-cv", seed=seed, inner_folds=k,
                       refit_seeds=refits, **{**SETTINGS, "repeats": 1})
    labels = {g: int(y[groups == g].max()) for g in set(groups)}
    for f in folds:
        assert len(f.inner) == k and f.tuning_splits == f.inner
        rest = set(groups) - set(f.test)
        vals = [set(v) for _, v in f.inner]
        assert set().union(*vals) == rest and sum(map(len, vals)) == len(rest)
        for train, val in f.inner:
            assert set(train) | set(val) == rest and not set(train) & set(val)
            assert {labels[p] for p in val} == {0, 1}  # stratified: both classes validate
        assert (f.train, f.val) == f.inner[f.refit % k]
        assert Fold.from_dict(f.as_dict()) == f
    assert {f.refit for f in folds} == set(range(refits))


def test_inner_folds_are_refused_outside_nested_cv():
    from spikebench.errors import SpecError
    from spikebench.harness.spec import parse_spec

    with pytest.raises(SpecError, match="inner_folds"):
        parse_spec({"study": {"name": "x"}, "data": {"source": "phantom"},
                    "grid": {"backends": ["custom"], "rules": ["surrogate"]},
                    "split": {"scheme": "holdout", "inner_folds": 3}})
