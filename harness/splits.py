"""Patient-level splits: the sealed test set and the train / validation partitions.

Every patient lands in exactly one of train, val, test within a repeat, so no slice of a test
(or validation) patient is ever trained on. The protocol:

1. A patient's label is 1 when any of its slices has a lesion.
2. One **sealed test set** of patients is drawn once (stratified by patient label, fraction
   ``test_fraction``, seed ``seed``) and is the same in every repeat: Optuna tunes on repeat 0's
   train/val, so a test set that changed between repeats would have been seen while tuning.
3. Each repeat ``r`` re-partitions the remaining patients into train / val (stratified,
   ``val_fraction``, seed ``seed + 1 + r``); the refit of repeat ``r`` trains on its train
   patients and early-stops on its val patients, with training seed ``seed + r``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spikebench.errors import DataError

SPLITS = ("train", "val", "test")


def patient_labels(y: np.ndarray, groups: np.ndarray) -> dict[str, int]:
    """Patient id -> 1 if any of its slices is positive."""
    labels: dict[str, int] = {}
    for g, label in zip(np.asarray(groups).astype(str), np.asarray(y)):
        labels[g] = max(labels.get(g, 0), int(label))
    return labels


def _stratified_take(ids_by_class: dict[int, list[str]], fraction: float,
                     rng: np.random.Generator, leave: int = 1) -> set[str]:
    """About ``fraction`` of each class's ids, at least one, and at least ``leave`` left over."""
    taken: set[str] = set()
    for cls in sorted(ids_by_class):
        ids = sorted(ids_by_class[cls])
        n = len(ids)
        k = round(fraction * n)
        k = min(max(k, 1), n - leave)
        taken.update(rng.permutation(ids)[:k].tolist())
    return taken


def _by_class(labels: dict[str, int], ids: set[str] | None = None) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for pid, label in labels.items():
        if ids is None or pid in ids:
            out.setdefault(label, []).append(pid)
    return out


def check_patient_classes(labels: dict[str, int]) -> None:
    """:class:`DataError` unless both patient classes have >= 3 patients (one each for train,
    validation and test)."""
    by_class = _by_class(labels)
    if len(by_class) < 2:
        raise DataError(
            f"all {len(labels)} patients have label {next(iter(by_class), '?')}: a benchmark "
            "needs patients with and without lesions"
        )
    for cls, ids in by_class.items():
        if len(ids) < 3:
            raise DataError(
                f"only {len(ids)} patient(s) with patient label {cls}: need >= 3 per class to "
                "fill train, validation and test; add patients (e.g. more phantom cases)"
            )


def patient_level_split(
    y: np.ndarray,
    groups: np.ndarray,
    *,
    repeats: int = 5,
    test_fraction: float = 0.25,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> dict[str, dict[str, list[str]]]:
    """``{"<repeat>": {"train": [...], "val": [...], "test": [...]}}`` of patient ids (sorted).

    Raises :class:`DataError` when a class has too few patients to appear in all three splits.
    """
    labels = patient_labels(y, groups)
    check_patient_classes(labels)
    by_class = _by_class(labels)
    rng = np.random.default_rng(seed)
    # leave two patients per class, so that train and validation each get one
    test = _stratified_take(by_class, test_fraction, rng, leave=2)
    rest = set(labels) - test
    out: dict[str, dict[str, list[str]]] = {}
    for r in range(repeats):
        val = _stratified_take(_by_class(labels, rest), val_fraction,
                               np.random.default_rng(seed + 1 + r))
        train = rest - val
        out[str(r)] = {"train": sorted(train), "val": sorted(val), "test": sorted(test)}
    return out


def split_masks(groups: np.ndarray, split: dict[str, Sequence[str]]) -> dict[str, np.ndarray]:
    """Boolean row masks per split name for one repeat's patient lists."""
    g = np.asarray(groups).astype(str)
    return {name: np.isin(g, np.asarray(split[name], dtype=str)) for name in SPLITS}
