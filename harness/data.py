"""The study's data: the feature table a data source delivers, and per-fold standardised views.

:func:`load_study_data` asks the spec's data-source plug-in for the feature table (cached in
the results folder's data folder). :func:`make_view` cuts one fold's train / validation / test
rows by patient id and standardises every feature with the *training* rows' mean and standard
deviation only, so nothing about validation or test patients leaks into the scaling.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spikebench.harness.rules.base import Split


@dataclasses.dataclass(frozen=True)
class StudyData:
    """The feature table of a study plus its provenance (``info`` goes to protocol.json)."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    slice_idx: np.ndarray | None
    feature_names: list[str]
    info: dict[str, Any]
    #: Tumour area per slice in mm² when the source knows it (metadata, never a feature).
    lesion_mm2: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class View:
    """One fold's standardised splits and the test rows' identifiers."""

    train: Split
    val: Split
    test: Split
    test_slice_idx: np.ndarray
    test_lesion_mm2: np.ndarray | None
    mean: np.ndarray
    std: np.ndarray


def load_study_data(spec: Any, workdir: Path, *, progress: bool = False) -> StudyData:
    """The spec's feature table from its ``[data]`` source, cached under ``workdir``."""
    from spikebench.harness.spec import data_options

    source, options = data_options(spec)
    workdir.mkdir(parents=True, exist_ok=True)
    delivered = source.load(options, workdir, progress=progress)
    table = delivered.table
    info = {"source": spec.data.source, **delivered.info, "sha256": table.sha256,
            "n_patients": len(np.unique(table.groups)), "n_slices": len(table.y),
            "n_features": int(table.X.shape[1]), "n_positive_slices": int(table.y.sum())}
    lesion = getattr(table, "lesion_mm2", None)
    return StudyData(table.X, table.y, np.asarray(table.groups).astype(str), table.slice_idx,
                     list(table.feature_names), info,
                     None if lesion is None else np.asarray(lesion, dtype=np.float64))


def make_view(data: StudyData, train: Sequence[str], val: Sequence[str], test: Sequence[str]
              ) -> View:
    """Rows of the ``train`` / ``val`` / ``test`` patients, scaled with train statistics."""
    masks = {name: np.isin(data.groups, np.asarray(ids, dtype=str))
             for name, ids in (("train", train), ("val", val), ("test", test))}
    mean = data.X[masks["train"]].mean(0)
    std = data.X[masks["train"]].std(0)
    std[~np.isfinite(std) | (std < 1e-12)] = 1.0
    splits = {}
    for name, mask in masks.items():
        X = ((data.X[mask] - mean) / std).astype(np.float32)
        splits[name] = Split(X, data.y[mask].astype(np.int64), data.groups[mask])
    test_mask = masks["test"]
    slice_idx = (data.slice_idx[test_mask] if data.slice_idx is not None
                 else np.flatnonzero(test_mask))
    lesion = None if data.lesion_mm2 is None else data.lesion_mm2[test_mask]
    return View(splits["train"], splits["val"], splits["test"], slice_idx, lesion, mean, std)
