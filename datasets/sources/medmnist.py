"""``source = "medmnist"``: a MedMNIST v3 dataset (2-D or 3-D) from its official ``.npz`` file.

The file ``<root>/<flag>.npz`` (28 px) or ``<root>/<flag>_<size>.npz`` is read as
:mod:`spikebench.datasets.medmnist` describes (samples are patients, 3-D volumes enter as their
central slice(s), RGB becomes grey, 0..255 mapped onto the extractor's window); the feature
table (``workdir/features.parquet``) carries the official split of every row in its ``split``
column, so ``[split].scheme = "predefined"`` tunes on the official train / validation sets and
tests once on the official test set, while ``nested-cv`` pools the three. With
``images = true`` the same rows are the image track's crops, as they are (``S × S``, no
resampling), cached in ``workdir/images/``.

Nothing is downloaded unless ``download = true``; a missing file is otherwise one
``DataError`` naming the URL and the path to save it as.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from spikebench.datasets.sources.base import DataSource, SourceData, SourceOptions

#: Where medmnist keeps its files when ``root`` is not given (medmnist's own default).
DEFAULT_ROOT = "~/.medmnist"


class MedMNISTOptions(SourceOptions):
    #: The dataset, e.g. "nodulemnist3d" (``spikebench datasets`` lists the known ones).
    flag: str = Field(min_length=1)
    #: Image size: 28, 64, 128 or 224 (2-D), 28 or 64 (3-D).
    size: int = 28
    #: The folder holding the .npz files (relative paths: from the spec file's folder);
    #: default ~/.medmnist, medmnist's own.
    root: str | None = None
    #: Fetch a missing file from MedMNIST's Zenodo record into root (needs the network).
    download: bool = False
    #: Label ids counted as positive: required for a multi-class, ordinal or multi-label task.
    positive: list[int] | None = None
    #: 3-D: central slices per volume, one row each (the sample is their group).
    slices: int = Field(1, ge=1, le=224)
    #: Also deliver the images as crops (the image track).
    images: bool = False

    @field_validator("flag")
    @classmethod
    def _flag(cls, v: str) -> str:
        from spikebench.datasets.medmnist_info import dataset_info
        from spikebench.errors import DataError

        try:
            dataset_info(v)
        except DataError as exc:  # the message names the known datasets
            raise ValueError(str(exc).split(": ", 1)[-1]) from None
        return v

    @field_validator("size")
    @classmethod
    def _size(cls, v: int) -> int:
        if v not in (28, 64, 128, 224):
            raise ValueError("must be 28, 64, 128 or 224 (3-D datasets: 28 or 64)")
        return v


class MedMNISTSource(DataSource[MedMNISTOptions]):
    """MedMNIST v3 from its official .npz files (module docstring)."""

    name = "medmnist"
    summary = "a MedMNIST v3 dataset (2-D or 3-D) from its official .npz, with its official split"
    Options = MedMNISTOptions
    path_options = ("root",)

    def load(self, options: MedMNISTOptions, workdir: Path, *, progress: bool = False
             ) -> SourceData:
        from spikebench.datasets.medmnist import GROUPING
        from spikebench.datasets.medmnist_info import dataset_info
        from spikebench.datasets.tables import load_feature_table

        info = dataset_info(options.flag)
        path = npz_file(options)
        key = _cache_key(path, options)
        features = workdir / "features.parquet"
        rows = None
        if _cached_key(features) != key:
            rows = _rows(path, options)
            _write_table(features, rows, key)
        table = load_feature_table(features, label="label", group="patient_id")
        images = None
        if options.images:
            images = _image_rows(workdir / "images", key, path, options, table, rows)
        facts: dict[str, Any] = {
            "source": self.name, "path": str(path), "features": str(features),
            "flag": info.flag, "size": options.size, "task": info.task,
            "labels": {str(k): v for k, v in info.labels.items()},
            "positive": (options.positive if options.positive is not None else [1]),
            "info_from": info.origin, "grouping": GROUPING,
            "volumes": (f"{options.slices} central slice(s) per volume along its first axis"
                        if info.is_3d else "2-D images"),
            "intensity": "0..255 mapped linearly onto [-100, 250] for the features (not HU)",
            "official_split": _split_counts(table),
            "excluded_cases": []}
        if images is not None:
            facts["images"] = {"size": int(images.size), "folder": str(workdir / "images")}
        return SourceData(table, facts, images)


def npz_file(options: MedMNISTOptions) -> Path:
    """The options' ``.npz`` file, downloaded first under ``download = true``; a missing file
    is a ``DataError`` naming the URL and where to save it.

    Parameters
    ----------
    options : MedMNISTOptions
        The ``[data]`` table.

    Returns
    -------
    Path
        The file, present.
    """
    from spikebench.datasets.medmnist import download
    from spikebench.datasets.medmnist_info import dataset_info
    from spikebench.errors import DataError

    info = dataset_info(options.flag)
    if options.size not in info.sizes:
        raise DataError(f"[data].size = {options.size}: {info.flag} ships sizes "
                        f"{list(info.sizes)}")
    root = Path(options.root or DEFAULT_ROOT).expanduser()
    path = root / info.file_name(options.size)
    if path.is_file():
        return path
    url = info.url(options.size)
    if options.download:
        return download(url, path, info.md5.get(options.size, ""))
    raise DataError(f"{path}: MedMNIST file not found. Download {url} and save it as {path} "
                    "(or set download = true in [data] where the network allows, or point "
                    "[data].root at the folder that holds it)")


def _cache_key(path: Path, options: MedMNISTOptions) -> str:
    from spikebench.datasets.medmnist import READER_VERSION
    from spikebench.datasets.msd import file_signature
    from spikebench.datasets.slice_features import FEATURES_VERSION

    parts = {"file": [path.name, file_signature(path)], "reader": READER_VERSION,
             "features": FEATURES_VERSION,
             **options.model_dump(include={"flag", "size", "positive", "slices"})}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _cached_key(features: Path) -> str | None:
    """The cache key a features file was written with (``None``: missing or unreadable)."""
    if not features.is_file():
        return None
    try:
        import pyarrow.parquet as pq

        meta = pq.read_schema(features).metadata or {}
        return meta.get(b"spikebench.medmnist", b"").decode() or None
    except Exception:  # a torn or foreign file: rebuild it
        return None


def _rows(path: Path, options: MedMNISTOptions) -> Any:
    from spikebench.datasets.medmnist import read_split, slice_rows
    from spikebench.datasets.medmnist_info import dataset_info

    info = dataset_info(options.flag)
    return slice_rows(read_split(path, info, options.size), info, positive=options.positive,
                      slices=options.slices)


def _write_table(features: Path, rows: Any, key: str) -> None:
    """The feature table of ``rows`` (the constant ROI area left out), its cache key in the
    parquet schema's metadata, written atomically."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    from spikebench.datasets.medmnist import row_features
    from spikebench.datasets.slice_features import FEATURE_NAMES
    from spikebench.io import atomic_write_bytes

    X = row_features(rows.images)
    frame = pd.DataFrame({"patient_id": rows.groups, "slice_idx": rows.slice_idx,
                          "label": rows.labels, "split": rows.split})
    for j, name in enumerate(FEATURE_NAMES):
        if name != "roi_area_mm2":  # the whole image is the ROI: a constant
            frame[name] = X[:, j]
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           b"spikebench.medmnist": key.encode()})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    features.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(features, sink.getvalue().to_pybytes())


def _image_rows(folder: Path, key: str, path: Path, options: MedMNISTOptions, table: Any,
                rows: Any) -> Any:
    """The rows' images as ``ImageRows``, cached as one ``uint8 [n, S, S]`` file per key."""
    from spikebench.datasets.crops import ImageRows
    from spikebench.io import atomic_write_bytes

    target = folder / f"medmnist.{key}.npy"
    n, size = len(table.y), options.size
    if not _valid_images(target, n, size):
        if rows is None:
            rows = _rows(path, options)
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(rows.images, dtype=np.uint8), allow_pickle=False)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(target, buf.getvalue())
        for stale in folder.glob("medmnist.*.npy"):
            if stale != target:
                stale.unlink(missing_ok=True)
    return ImageRows([target], np.zeros(n, np.int64), np.arange(n),
                     np.asarray(table.groups), size)


def _valid_images(target: Path, n: int, size: int) -> bool:
    try:
        data = np.load(target, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return False
    return bool(data.dtype == np.uint8 and data.shape == (n, size, size))


def _split_counts(table: Any) -> dict[str, int]:
    """Samples (patients) per official split."""
    if table.split is None:
        return {}
    pairs = {(g, s) for g, s in zip(np.asarray(table.groups).tolist(), table.split.tolist())}
    return {name: sum(1 for _, s in pairs if s == name) for name in ("train", "val", "test")}
