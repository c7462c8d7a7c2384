"""Patient-level splits: no patient in two splits, the test set sealed across repeats."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from spikebench.errors import DataError
from spikebench.harness.splits import (
    patient_labels,
    patient_level_split,
    split_masks,
)


@st.composite
def slice_tables(draw):
    n_pos = draw(st.integers(3, 12))
    n_neg = draw(st.integers(3, 12))
    groups, y = [], []
    for i in range(n_pos + n_neg):
        n_slices = draw(st.integers(1, 6))
        positive = i < n_pos
        labels = [0] * n_slices
        if positive:
            labels[draw(st.integers(0, n_slices - 1))] = 1
        groups += [f"liver_{i}"] * n_slices
        y += labels
    return np.array(y), np.array(groups)


@settings(max_examples=60, deadline=None)
# found by hypothesis: three patients per class and a large test fraction once left val empty
@example(table=(np.array([1, 1, 1, 0, 0, 0]), np.array([f"liver_{i}" for i in range(6)])),
         repeats=1, seed=0, test_fraction=0.5, val_fraction=0.5)
@given(table=slice_tables(), repeats=st.integers(1, 4), seed=st.integers(0, 10_000),
       test_fraction=st.floats(0.1, 0.5), val_fraction=st.floats(0.1, 0.5))
def test_splits_are_patient_disjoint_and_cover_everyone(table, repeats, seed, test_fraction,
                                                        val_fraction):
    y, groups = table
    splits = patient_level_split(y, groups, repeats=repeats, seed=seed,
                                 test_fraction=test_fraction, val_fraction=val_fraction)
    assert sorted(splits) == [str(r) for r in range(repeats)]
    labels = patient_labels(y, groups)
    tests = {tuple(s["test"]) for s in splits.values()}
    assert len(tests) == 1, "the sealed test set must be the same in every repeat"
    for s in splits.values():
        train, val, test = set(s["train"]), set(s["val"]), set(s["test"])
        assert not (train & val) and not (train & test) and not (val & test)
        assert train | val | test == set(labels)
        for part in (train, val, test):  # stratified: both patient classes everywhere
            assert {labels[p] for p in part} == {0, 1}
        masks = split_masks(groups, s)
        assert (masks["train"].astype(int) + masks["val"] + masks["test"] == 1).all()


def test_same_seed_same_splits_and_different_seed_differs():
    rng = np.random.default_rng(0)
    groups = np.repeat([f"liver_{i}" for i in range(20)], 5)
    y = np.repeat(rng.integers(0, 2, 20), 5)
    a = patient_level_split(y, groups, seed=1)
    assert a == patient_level_split(y, groups, seed=1)
    assert a != patient_level_split(y, groups, seed=2)


def test_too_few_patients_is_a_clear_error():
    y = np.array([1, 0, 0, 0, 0])
    groups = np.array(["a", "b", "c", "d", "e"])
    with pytest.raises(DataError, match="only 1 patient"):
        patient_level_split(y, groups)
    with pytest.raises(DataError, match="all 2 patients have label 0"):
        patient_level_split(np.zeros(2), np.array(["a", "b"]))


def test_resumed_study_refuses_different_splits(tmp_path):
    from spikebench.errors import SpecError
    from spikebench.harness.folder import ResultsFolder

    folder = ResultsFolder(tmp_path)
    folder.write_splits({"scheme": "holdout", "folds": [{"train": ["a"], "test": ["c"]}]})
    folder.write_splits({"scheme": "holdout", "folds": [{"train": ["a"], "test": ["c"]}]})
    with pytest.raises(SpecError, match="different splits"):
        folder.write_splits({"scheme": "holdout", "folds": [{"train": ["b"], "test": ["c"]}]})
