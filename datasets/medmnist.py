"""Read MedMNIST's official ``.npz`` files into slice rows: grey images, binary labels, splits.

A MedMNIST file holds ``train_images``, ``train_labels``, ``val_images``, ``val_labels``,
``test_images`` and ``test_labels``: images ``uint8`` shaped ``(n, S, S)`` (grey 2-D),
``(n, S, S, 3)`` (RGB 2-D) or ``(n, S, S, S)`` (3-D, read as ``(n, D, H, W)``), labels integer
``(n, 1)`` (``(n, L)`` 0/1 for a multi-label task). Decisions:

* **Samples are patients.** MedMNIST ships no patient ids, so each sample is its own group
  (``<split>-<index>``); a patient who gave several samples could sit on both sides of a split
  that is not the official one (:data:`GROUPING`).
* **3-D volumes enter as 2-D slices** (no rule convolves in 3-D): the ``slices`` central
  slices along the first volume axis (``D``), each a row whose group is its sample and whose
  label is the sample's label. With ``slices = 1`` (the default) a volume is its central slice
  ``D // 2``; with more, the patient-level metrics score a sample by its slices (max or top-k
  mean), as they score a liver by its slices.
* **RGB becomes grey**: ``round(0.299 R + 0.587 G + 0.114 B)`` (ITU-R BT.601 luma).
* **Binary labels**: a binary task's labels are used as they are (or ``positive`` picks the
  class); a multi-class or ordinal task needs ``positive`` (label ids counted as 1), a
  multi-label task too (a sample is 1 when any listed label is present).

Features (:func:`slice_features`, the liver track's extractor) see the whole image as the ROI
(MedMNIST has no organ mask), with 1 × 1 "mm" pixels (MedMNIST states no spacing: areas and
gradients are in pixels). MedMNIST images are 0..255, not Hounsfield units: the extractor's
fixed windows (histogram, bands, GLCM on [-100, 250] HU) are met by mapping the 256 levels
linearly onto that window, ``v ↦ -100 + 350 · v / 255`` (:func:`to_window`), so every
window-based feature spans the image's full range. The values are not HU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from spikebench.datasets.medmnist_info import DatasetInfo
from spikebench.errors import DataError

#: Bump when the rows or features this module makes change: part of the cache key.
READER_VERSION = "1"
SPLITS = ("train", "val", "test")
#: The grouping assumption every MedMNIST study records (protocol.json, the report).
GROUPING = ("sample = patient: MedMNIST ships no patient ids, so each sample is its own group; "
            "a patient with several samples could sit on both sides of a split other than the "
            "official one")
#: The extractor's fixed window (``slice_features.HU_WINDOW``) the 0..255 levels are mapped to.
WINDOW = (-100.0, 250.0)
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclasses.dataclass(frozen=True)
class SliceRows:
    """The rows of a MedMNIST file: one grey 2-D image per row.

    Attributes
    ----------
    images : ndarray
        ``uint8 [n, S, S]``.
    labels : ndarray
        ``int64 [n]`` in {0, 1}.
    groups : ndarray
        ``str [n]``: the sample of each row (``<split>-<index>``).
    slice_idx : ndarray
        ``int64 [n]``: the slice of the volume (3-D), 0 for a 2-D image.
    split : ndarray
        ``str [n]``: the official split (``train``, ``val`` or ``test``) of each row.
    """

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    slice_idx: np.ndarray
    split: np.ndarray


def to_window(levels: np.ndarray) -> np.ndarray:
    """``uint8`` levels 0..255 mapped linearly onto the extractor's window [-100, 250].

    Parameters
    ----------
    levels : ndarray
        Image values 0..255.

    Returns
    -------
    ndarray
        float64 values, ``-100 + 350 · v / 255`` (not Hounsfield units; module docstring).

    Examples
    --------
    >>> import numpy as np
    >>> from spikebench.datasets.medmnist import to_window
    >>> to_window(np.array([0, 255], dtype=np.uint8)).tolist()
    [-100.0, 250.0]
    """
    lo, hi = WINDOW
    return lo + (hi - lo) * np.asarray(levels, dtype=np.float64) / 255.0


def download(url: str, target: Path, md5: str = "") -> Path:
    """Fetch ``url`` into ``target`` (atomically; the MD5 checked when given).

    Parameters
    ----------
    url : str
        Where the file is.
    target : Path
        Where it goes (its folder is created); an existing file is never overwritten.
    md5 : str, optional
        The file's expected MD5 (MedMNIST's ``INFO`` lists one per file).

    Returns
    -------
    Path
        ``target``.

    Raises
    ------
    DataError
        The download failed (no network, a refused connection) or the MD5 differs; it names
        the URL and the target path, so the file can be fetched by hand.
    """
    if target.is_file():
        return target
    by_hand = (f"fetch it by hand: download {url} and save it as {target} (then "
               "download = false is enough)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.",
                                         delete=False) as tmp:
            part = Path(tmp.name)
            try:
                with urllib.request.urlopen(url, timeout=60) as response:
                    shutil.copyfileobj(response, tmp, 1 << 20)
            except BaseException:
                tmp.close()
                part.unlink(missing_ok=True)
                raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"{target}: cannot download {url} ({exc}); {by_hand}") from None
    digest = _md5(part)
    if md5 and digest != md5:
        part.unlink(missing_ok=True)
        raise DataError(f"{target}: the file downloaded from {url} has MD5 {digest}, not "
                        f"{md5} (a broken transfer?); download again or {by_hand}")
    os.replace(part, target)
    return target


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_split(path: Path, info: DatasetInfo, size: int
               ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (images, labels)}`` of a MedMNIST file, its layout checked.

    Parameters
    ----------
    path : Path
        The ``.npz`` file.
    info : DatasetInfo
        The dataset it should hold.
    size : int
        The image size it should hold.

    Returns
    -------
    dict
        ``train``, ``val`` and ``test``: images as stored, labels ``int64 [n, L]``.

    Raises
    ------
    DataError
        Naming the file and what is wrong: not an ``.npz``, a missing key, a shape or type
        that is not MedMNIST's.
    """
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
            missing = [f"{s}_{kind}" for s in SPLITS for kind in ("images", "labels")
                       if f"{s}_{kind}" not in keys]
            if missing:
                raise DataError(f"{path}: not a MedMNIST file: keys {missing} are missing "
                                f"(found {sorted(keys)}); download it again")
            arrays = {s: (npz[f"{s}_images"], npz[f"{s}_labels"]) for s in SPLITS}
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read as a MedMNIST .npz ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); is the download complete? Delete it and "
                        "download again") from None
    for split, (images, labels) in arrays.items():
        _check_images(path, f"{split}_images", images, info, size)
        arrays[split] = (images, _check_labels(path, split, labels, len(images), info))
    return arrays


def _check_images(path: Path, key: str, images: np.ndarray, info: DatasetInfo,
                  size: int) -> None:
    if info.is_3d:
        shape: tuple[int, ...] = (size, size, size)
    elif info.n_channels == 3:
        shape = (size, size, 3)
    else:
        shape = (size, size)
    want = f"(n, {', '.join(map(str, shape))})"
    if images.dtype != np.uint8 or tuple(images.shape[1:]) != shape or len(images) == 0:
        raise DataError(f"{path}: {key} is {images.dtype} {images.shape}; {info.flag} at "
                        f"size {size} holds uint8 images {want} with n > 0 (is [data].size "
                        "the size of this file?)")


def _check_labels(path: Path, split: str, labels: np.ndarray, n: int,
                  info: DatasetInfo) -> np.ndarray:
    key = f"{split}_labels"
    if labels.ndim == 1:
        labels = labels[:, None]
    if labels.ndim != 2 or len(labels) != n or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: {key} is {labels.dtype} {labels.shape}; it must hold one "
                        f"integer row per image ({n}, L)")
    known = set(info.labels)
    multi_label = info.task.startswith("multi-label")
    allowed = {0, 1} if multi_label else known
    found = set(np.unique(labels).tolist())
    if not found <= allowed or (not multi_label and labels.shape[1] != 1):
        raise DataError(f"{path}: {key} holds {sorted(found)[:10]} in {labels.shape[1]} "
                        f"column(s); {info.flag}'s labels are {info.labels}")
    return labels.astype(np.int64)


def binary_labels(labels: np.ndarray, info: DatasetInfo, positive: Sequence[int] | None
                  ) -> np.ndarray:
    """The 0/1 label of each sample: the task's own (binary) or ``positive``'s choice.

    Parameters
    ----------
    labels : ndarray
        ``int64 [n, L]`` as the file holds them.
    info : DatasetInfo
        The dataset (its task and label meanings).
    positive : sequence of int or None
        Label ids counted as 1 (``[data].positive``); required unless the task is binary.

    Returns
    -------
    ndarray
        ``int64 [n]`` in {0, 1}.

    Raises
    ------
    DataError
        A non-binary task without ``positive``, or ``positive`` naming unknown labels; the
        message lists the labels to choose from.
    """
    meanings = ", ".join(f"{k} = {v!r}" for k, v in sorted(info.labels.items()))
    if positive is None:
        if not info.binary:
            raise DataError(f"[data].positive: {info.flag} is a {info.task} task (labels: "
                            f"{meanings}); name the label ids that count as positive, e.g. "
                            f"positive = [{max(info.labels)}]")
        return labels[:, 0].astype(np.int64)
    unknown = sorted(set(positive) - set(info.labels))
    if unknown or not positive:
        raise DataError(f"[data].positive = {list(positive)}: {info.flag}'s labels are "
                        f"{meanings}; name one or more of them")
    if set(positive) == set(info.labels) and not info.task.startswith("multi-label"):
        raise DataError(f"[data].positive = {list(positive)} names every label of "
                        f"{info.flag} ({meanings}): nothing would be negative; leave some out")
    if info.task.startswith("multi-label"):
        return (labels[:, sorted(set(positive))] == 1).any(axis=1).astype(np.int64)
    return np.isin(labels[:, 0], list(positive)).astype(np.int64)


def grey_slices(images: np.ndarray, info: DatasetInfo, slices: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 [n·k, S, S], slice index [n·k])``: the images as grey 2-D rows, a volume's
    ``k = slices`` central slices in a row each (module docstring); ``k`` is 1 for 2-D."""
    if info.is_3d:
        depth = images.shape[1]
        if not 1 <= slices <= depth:
            raise DataError(f"[data].slices = {slices}: a {info.flag} volume has {depth} "
                            f"slices; choose 1 to {depth}")
        first = depth // 2 - slices // 2
        idx = np.arange(first, first + slices)
        rows = images[:, idx].reshape(-1, *images.shape[2:])
        return np.ascontiguousarray(rows), np.tile(idx, len(images)).astype(np.int64)
    if images.ndim == 4:
        grey = np.rint(images.astype(np.float64) @ _LUMA)
        images = np.clip(grey, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(images), np.zeros(len(images), dtype=np.int64)


def slice_rows(arrays: dict[str, tuple[np.ndarray, np.ndarray]], info: DatasetInfo, *,
               positive: Sequence[int] | None = None, slices: int = 1) -> SliceRows:
    """Every official split's samples as rows (module docstring), train, val, test in order.

    Parameters
    ----------
    arrays : dict
        :func:`read_split`'s ``{split: (images, labels)}``.
    info : DatasetInfo
        The dataset.
    positive : sequence of int, optional
        Label ids counted as 1 (:func:`binary_labels`).
    slices : int, default 1
        Central slices per volume (3-D only).

    Returns
    -------
    SliceRows
    """
    parts = []
    for split in SPLITS:
        images, labels = arrays[split]
        y = binary_labels(labels, info, positive)
        rows, idx = grey_slices(images, info, slices)
        per = len(rows) // len(images)
        names = np.array([f"{split}-{i:06d}" for i in range(len(images))])
        parts.append((rows, np.repeat(y, per), np.repeat(names, per), idx,
                      np.full(len(rows), split)))
    images, y, groups, idx, split_of = (np.concatenate(col) for col in zip(*parts))
    return SliceRows(images, y, groups.astype(str), idx, split_of.astype(str))


def row_features(images: np.ndarray) -> np.ndarray:
    """``float64 [n, F]`` (``FEATURE_NAMES`` order) of grey rows, the whole image the ROI.

    Parameters
    ----------
    images : ndarray
        ``uint8 [n, S, S]``.

    Returns
    -------
    ndarray
        The liver track's slice features (module docstring: window mapping, 1-pixel spacing).
    """
    from spikebench.datasets.slice_features import FEATURE_NAMES, slice_features

    out = np.empty((len(images), len(FEATURE_NAMES)), dtype=np.float64)
    if len(images) == 0:
        return out
    roi = np.ones(images.shape[1:], dtype=bool)
    with np.errstate(all="ignore"):
        for i, image in enumerate(images):
            out[i] = slice_features(image, roi, (1.0, 1.0), to_window)
    return out


__all__ = ["GROUPING", "READER_VERSION", "SliceRows", "binary_labels", "download",
           "grey_slices", "read_split", "row_features", "slice_rows", "to_window"]
