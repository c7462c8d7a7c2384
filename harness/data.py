"""The study's data: the feature table a data source delivers, and per-fold standardised views.

:func:`load_study_data` asks the spec's data-source plug-in for the feature table (cached in
the results folder's data folder). :func:`make_view` cuts one fold's train / validation / test
rows by patient id and standardises every feature with the *training* rows' mean and standard
deviation only, so nothing about validation or test patients leaks into the scaling.

The image track (``inputs="images"``) reads the same rows as crops: ``X`` is then a lazy
:class:`~spikebench.datasets.crops.ImageRows` view over memory-mapped per-case files (never the
whole cohort in RAM), standardised with one scalar mean and standard deviation of the training
rows' pixels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spikebench.harness.rules.base import Split

if TYPE_CHECKING:
    from spikebench.datasets.crops import ImageRows
    from spikebench.harness.spec import StudySpec


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
    #: One crop per row (:class:`~spikebench.datasets.crops.ImageRows`), when the source was
    #: asked for images (``images = true``); the image track's input.
    images: ImageRows | None = None
    #: The source's own split of each row (``train`` / ``val`` / ``test``; a ``split``
    #: column), which ``[split].scheme = "predefined"`` follows; None when it has none.
    split: np.ndarray | None = None

    def geometry(self) -> np.ndarray:
        """``[n, 2]``: the liver ROI's area and the slice's relative position within its
        patient's liver (0 = first, 1 = last liver slice) — what the mask alone tells; the
        leak detector's only input."""
        from spikebench.errors import DataError

        if "roi_area_mm2" not in self.feature_names:
            raise DataError("the geometry reference needs a 'roi_area_mm2' feature column "
                            "(spikebench extract writes it); drop 'geometry' from "
                            "[study].references for this table")
        area = self.X[:, self.feature_names.index("roi_area_mm2")].astype(np.float64)
        position = np.zeros(len(self.y))
        order = self.slice_idx if self.slice_idx is not None else np.arange(len(self.y))
        for g in np.unique(self.groups):
            rows = np.flatnonzero(self.groups == g)
            ranks = np.argsort(np.argsort(order[rows], kind="stable"), kind="stable")
            position[rows] = ranks / max(len(rows) - 1, 1)
        return np.stack([area, position], 1)


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


def load_study_data(spec: StudySpec, workdir: Path, *, progress: bool = False) -> StudyData:
    """The spec's feature table from its ``[data]`` source, cached under ``workdir``."""
    from spikebench.harness.spec import data_options

    source, options = data_options(spec)
    workdir.mkdir(parents=True, exist_ok=True)
    delivered = source.load(options, workdir, progress=progress)
    table = delivered.table
    info = {"source": spec.data.source, **delivered.info, "sha256": table.sha256,
            "file_sha256": getattr(table, "file_sha256", ""),
            "n_patients": len(np.unique(table.groups)), "n_slices": len(table.y),
            "n_features": int(table.X.shape[1]), "n_positive_slices": int(table.y.sum())}
    images = getattr(delivered, "images", None)
    if images is not None:
        info["n_images"] = len(images)
        info["image_size"] = int(images.size)
    lesion = getattr(table, "lesion_mm2", None)
    split = getattr(table, "split", None)
    return StudyData(table.X, table.y, np.asarray(table.groups).astype(str), table.slice_idx,
                     list(table.feature_names), info,
                     None if lesion is None else np.asarray(lesion, dtype=np.float64),
                     images, None if split is None else np.asarray(split).astype(str))


def make_view(data: StudyData, train: Sequence[str], val: Sequence[str], test: Sequence[str],
              *, inputs: str = "features") -> View:
    """Rows of the ``train`` / ``val`` / ``test`` patients, scaled with train statistics
    (``inputs="geometry"``: the ROI-geometry columns instead of the features;
    ``inputs="images"``: lazy crop rows, see the module docstring)."""
    masks = {name: np.isin(data.groups, np.asarray(ids, dtype=str))
             for name, ids in (("train", train), ("val", val), ("test", test))}
    if inputs == "images":
        splits, mean, std = _image_splits(data, masks)
    else:
        splits, mean, std = _table_splits(data, masks, inputs)
    test_mask = masks["test"]
    slice_idx = (data.slice_idx[test_mask] if data.slice_idx is not None
                 else np.flatnonzero(test_mask))
    lesion = None if data.lesion_mm2 is None else data.lesion_mm2[test_mask]
    return View(splits["train"], splits["val"], splits["test"], slice_idx, lesion, mean, std)


def _table_splits(data: StudyData, masks: dict[str, np.ndarray], inputs: str
                  ) -> tuple[dict[str, Split], np.ndarray, np.ndarray]:
    """Standardised in float64 (a float32 variance of values near 1e19 overflows and would leave
    the column unscaled); the scaled values are cast to float32 and checked finite."""
    source = data.geometry() if inputs == "geometry" else data.X
    train = np.asarray(source[masks["train"]], dtype=np.float64)
    mean, std = train.mean(0), train.std(0)
    std[~np.isfinite(std) | (std < 1e-12)] = 1.0
    splits = {}
    for name, mask in masks.items():
        X = ((np.asarray(source[mask], dtype=np.float64) - mean) / std).astype(np.float32)
        _check_finite(X, name, data.feature_names if inputs != "geometry" else None)
        splits[name] = Split(X, data.y[mask].astype(np.int64), data.groups[mask])
    return splits, mean, std


def _check_finite(X: np.ndarray, split: str, names: list[str] | None) -> None:
    """:class:`DataError` naming the first column whose standardised values are not finite."""
    bad = ~np.isfinite(X)
    if not bad.any():
        return
    from spikebench.errors import DataError

    col = int(np.nonzero(bad.any(0))[0][0])
    label = names[col] if names and col < len(names) else f"column {col}"
    raise DataError(f"feature {label!r}: {int(bad[:, col].sum())} values of the {split} split "
                    "are not finite after standardisation (the training rows' spread is too "
                    "small or the values too large for float32); drop or rescale that column")


def _image_splits(data: StudyData, masks: dict[str, np.ndarray]
                  ) -> tuple[dict[str, Split], np.ndarray, np.ndarray]:
    """Lazy crop rows per split, standardised with the training pixels' mean and std."""
    from spikebench.errors import DataError

    if data.images is None:
        raise DataError("this study's data has no image view: image rules need a source that "
                        "delivers crops (phantom, msd or medmnist) with images = true in [data]")
    rows = {name: data.images.rows(np.flatnonzero(mask)) for name, mask in masks.items()}
    mean, std = rows["train"].pixel_stats()
    std = std if std > 1e-12 else 1.0
    splits = {name: Split.of_images(r.standardised(mean, std),
                                    data.y[masks[name]].astype(np.int64),
                                    data.groups[masks[name]])
              for name, r in rows.items()}
    return splits, np.array([mean]), np.array([std])
