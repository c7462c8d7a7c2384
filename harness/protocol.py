"""Protocol schemes: which patients train, validate (tune) and test each fit — always by patient.

A scheme turns the patient labels of a cohort into :class:`Fold` values. Each fold names the
patients Optuna tunes on (``tune_train`` / ``tune_val``), the patients the refit trains and
early-stops on (``train`` / ``val``) and the test patients it predicts once (``test``); folds
that share a ``study`` key share one Optuna study per cell. Every patient is in exactly one of
train / validation / test of any fit, and no test patient of a fold is in its tuning data.

- ``holdout``: one sealed test set for all repeats (:func:`~spikebench.harness.splits.
  patient_level_split`); Optuna tunes once on repeat 0's train/val; each repeat refits on its
  own train/val and predicts the same test patients. Quick; its test cohort is small.
- ``nested-cv``: per repeat, an outer K-fold over patients stratified by patient label, so
  every patient is tested exactly once per repeat; inside each outer training set a stratified
  patient-level train/validation split, on which Optuna tunes (one study per cell and fold) and
  the refit trains and early-stops. Out-of-fold predictions cover the whole cohort.
- ``repeated-splits``: R independent stratified train/val/test splits (SNNDeep v2's design),
  tuning redone inside each; test sets overlap across repeats, so comparisons use the
  Nadeau–Bengio corrected resampled t-test.
- ``predefined``: the data source's own split (its table's ``split`` column, e.g. MedMNIST's
  official train / validation / test sets): Optuna tunes on the official train / validation
  patients, every repeat refits there with a new seed and tests the official test patients
  once. Statistically a holdout with the curators' test set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from spikebench.errors import DataError
from spikebench.harness.splits import (
    _by_class,
    _stratified_take,
    check_patient_classes,
    patient_labels,
    patient_level_split,
)


@dataclasses.dataclass(frozen=True)
class Fold:
    """One fit of the protocol: who tunes, who trains, who is tested (patient ids, sorted)."""

    repeat: int
    fold: int
    #: Optuna study key within a cell ("" = the cell's single study).
    study: str
    tune_train: tuple[str, ...]
    tune_val: tuple[str, ...]
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]
    #: True when the repeat is split into outer folds (nested CV): keys then name the fold.
    outer: bool = False
    #: Which refit of the fold this is (``0 .. [split].refit_seeds - 1``): the fold's tuned
    #: configuration trained again with another seed on the same patients. Refits share the
    #: fold's Optuna study; their spread is the training randomness the report's intervals
    #: and tests carry.
    refit: int = 0
    #: ``[split].inner_folds`` > 1: the K inner ``(train, validation)`` splits of the outer
    #: training set a trial is scored on (its objective is their mean); empty for one split.
    inner: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = ()

    @property
    def tuning_splits(self) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
        """The ``(train, validation)`` patient splits a trial is scored on."""
        return self.inner or ((self.tune_train, self.tune_val),)

    @property
    def key(self) -> str:
        """File-name key of this fold's outputs: ``r<repeat>``, or ``r<repeat>f<fold>`` for an
        outer fold of nested CV; ``s<refit>`` appended for refits after the first."""
        base = f"r{self.repeat}f{self.fold}" if self.outer else f"r{self.repeat}"
        return f"{base}s{self.refit}" if self.refit else base

    def as_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Fold:
        """The fold :meth:`as_dict` wrote (an entry of ``splits.json``)."""
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v
                                  for k, v in raw.items()}
        fields["inner"] = tuple((tuple(a), tuple(b)) for a, b in raw.get("inner", ()))
        return cls(**fields)


def _sorted(ids: set[str] | list[str]) -> tuple[str, ...]:
    return tuple(sorted(ids))


def holdout(labels: dict[str, int], *, repeats: int, test_fraction: float, val_fraction: float,
            seed: int, **_: Any) -> list[Fold]:
    """One sealed test set; tuning on repeat 0's train/val (module docstring)."""
    ids = np.array(sorted(labels))
    y = np.array([labels[i] for i in ids])
    splits = patient_level_split(y, ids, repeats=repeats, test_fraction=test_fraction,
                                 val_fraction=val_fraction, seed=seed)
    tune = splits["0"]
    return [Fold(r, 0, "", _sorted(tune["train"]), _sorted(tune["val"]), _sorted(s["train"]),
                 _sorted(s["val"]), _sorted(s["test"])) for r, s in
            ((int(k), v) for k, v in splits.items())]


def nested_cv(labels: dict[str, int], *, repeats: int, outer_folds: int, val_fraction: float,
              seed: int, inner_folds: int = 1, **_: Any) -> list[Fold]:
    """Outer stratified K-fold over patients, inner stratified train/validation split (or,
    with ``inner_folds`` > 1, a stratified inner K-fold: :func:`_inner_folds`)."""
    from sklearn.model_selection import StratifiedKFold

    by_class = _by_class(labels)
    smallest = min(len(v) for v in by_class.values())
    if smallest < outer_folds:
        raise DataError(f"[split].outer_folds = {outer_folds} but the smallest patient class has "
                        f"only {smallest} patients: every outer fold needs one of each; lower "
                        "outer_folds or add patients")
    ids = np.array(sorted(labels))
    y = np.array([labels[i] for i in ids])
    folds = []
    for r in range(repeats):
        outer = StratifiedKFold(n_splits=outer_folds, shuffle=True, random_state=seed + r)
        for k, (rest_idx, test_idx) in enumerate(outer.split(ids, y)):
            rest = set(ids[rest_idx].tolist())
            val = _stratified_take(_by_class(labels, rest), val_fraction,
                                   np.random.default_rng(seed + 1 + r * outer_folds + k))
            train = rest - val
            study = f"fold{k}" if repeats == 1 else f"r{r}/fold{k}"
            inner = (_inner_folds(labels, rest, inner_folds, seed + 7919 * (r + 1) + k)
                     if inner_folds > 1 else ())
            if inner:
                train, val = set(inner[0][0]), set(inner[0][1])
            folds.append(Fold(r, k, study, _sorted(train), _sorted(val), _sorted(train),
                              _sorted(val), _sorted(ids[test_idx].tolist()), outer=True,
                              inner=inner))
    return folds


def _inner_folds(labels: dict[str, int], rest: set[str], k: int, seed: int
                 ) -> tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]:
    """A stratified ``k``-fold of the outer training patients ``rest``: ``(train, val)``."""
    from sklearn.model_selection import StratifiedKFold

    ids = np.array(sorted(rest))
    y = np.array([labels[i] for i in ids])
    smallest = min(int((y == c).sum()) for c in (0, 1))
    if smallest < k:
        raise DataError(f"[split].inner_folds = {k} but an outer training set holds only "
                        f"{smallest} patients of one class: every inner fold needs one of "
                        "each; lower inner_folds or outer_folds")
    split = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return tuple((_sorted(ids[a].tolist()), _sorted(ids[b].tolist()))
                 for a, b in split.split(ids, y))


def repeated_splits(labels: dict[str, int], *, repeats: int, test_fraction: float,
                    val_fraction: float, seed: int, **_: Any) -> list[Fold]:
    """R independent stratified train/val/test splits; each repeat is tuned on its own."""
    folds = []
    for r in range(repeats):
        rng = np.random.default_rng(seed + 1000 * r)
        test = _stratified_take(_by_class(labels), test_fraction, rng, leave=2)
        rest = set(labels) - test
        val = _stratified_take(_by_class(labels, rest), val_fraction, rng)
        train = rest - val
        folds.append(Fold(r, 0, f"split{r}", _sorted(train), _sorted(val), _sorted(train),
                          _sorted(val), _sorted(test)))
    return folds


def predefined(labels: dict[str, int], *, repeats: int, assigned: Mapping[str, str] | None = None,
               **_: Any) -> list[Fold]:
    """The source's own train / val / test patients (module docstring); every repeat refits on
    them with its own seed. :class:`DataError` when the data has no split or a split lacks a
    class."""
    if assigned is None:
        raise DataError("[split].scheme = 'predefined' needs a data source that delivers its own "
                        "split (a 'split' column: medmnist, or a table with one); this data has "
                        "none: choose nested-cv or holdout")
    parts: dict[str, tuple[str, ...]] = {}
    for name in ("train", "val", "test"):
        ids = _sorted([p for p in labels if assigned.get(p) == name])
        classes = {labels[p] for p in ids}
        if classes != {0, 1}:
            raise DataError(f"[split].scheme = 'predefined': the source's {name!r} split holds "
                            f"{len(ids)} patients of class(es) {sorted(classes)}; every split "
                            "needs patients with and without the finding: choose nested-cv "
                            "instead")
        parts[name] = ids
    return [Fold(r, 0, "", parts["train"], parts["val"], parts["train"], parts["val"],
                 parts["test"]) for r in range(repeats)]


#: Scheme name -> ``folds(labels, **[split] settings)``.
SCHEMES: dict[str, Callable[..., list[Fold]]] = {
    "holdout": holdout,
    "nested-cv": nested_cv,
    "repeated-splits": repeated_splits,
    "predefined": predefined,
}


def make_folds(y: np.ndarray, groups: np.ndarray, *, scheme: str = "nested-cv",
               refit_seeds: int = 1, split: np.ndarray | None = None,
               **settings: Any) -> list[Fold]:
    """The folds of ``scheme`` for slices ``y`` of patients ``groups`` (``[split]`` settings as
    keyword arguments), each followed by its ``refit_seeds - 1`` further refits;
    :class:`DataError` when the cohort cannot fill them. ``split`` is the source's own split
    of each row (``train`` / ``val`` / ``test``), which only ``predefined`` reads."""
    if scheme not in SCHEMES:
        raise DataError(f"[split].scheme: unknown scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    labels = patient_labels(y, groups)
    check_patient_classes(labels)
    if split is not None:
        settings["assigned"] = dict(zip(np.asarray(groups).astype(str).tolist(),
                                        np.asarray(split).astype(str).tolist()))
    folds = SCHEMES[scheme](labels, **settings)
    for f in folds:
        _check_disjoint(f)
    return [_refit(f, r) for f in folds for r in range(refit_seeds)]


def _refit(fold: Fold, r: int) -> Fold:
    """Refit ``r`` of ``fold``: another seed; with inner folds, inner fold ``r mod K``'s
    train/validation patients (early stopping and threshold on its validation patients)."""
    if not fold.inner:
        return dataclasses.replace(fold, refit=r)
    train, val = fold.inner[r % len(fold.inner)]
    return dataclasses.replace(fold, refit=r, train=train, val=val)


def _check_disjoint(f: Fold) -> None:
    """The leakage invariant, asserted on every fold a scheme produces."""
    test = set(f.test)
    inner = {p for pair in f.inner for part in pair for p in part}
    if test & (set(f.train) | set(f.val) | set(f.tune_train) | set(f.tune_val) | inner):
        raise AssertionError(f"fold {f.key}: a test patient is in training or tuning data")
    if (set(f.train) & set(f.val) or set(f.tune_train) & set(f.tune_val)
            or any(set(a) & set(b) for a, b in f.inner)):
        raise AssertionError(f"fold {f.key}: a patient is in both train and validation")
