"""One scan under two names is refused: the same image voxels, or the same values.

A scan listed twice in ``dataset.json`` (a copy, or the same volume saved with another data
type, scaling or a few voxels changed) would put one patient in train and test. The check runs
on every extraction, whatever ``on_error`` says: leakage is not a per-case error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from spikebench.datasets.msd import Case
from spikebench.datasets.slice_features import FEATURE_NAMES
from spikebench.errors import DataError

#: Two cases are the same scan when at least this share of their liver slices (and two of
#: them) have the same features to :data:`_SAME_RTOL`: the scan saved with another data type
#: or scaling (the same HU values), or with a few voxels changed, under another name. Slices
#: of two different scans never agree in every feature to 1e-4.
_SAME_SHARE, _SAME_RTOL = 0.8, 1e-4


def refuse_duplicate_scans(root: Path, cases: list[Case], frames: dict) -> None:
    """Two entries holding one scan are refused, always: the same image voxels (the content
    hash), or the same values — nearly every liver slice with the same features, however the
    voxels are stored (``_refuse_same_values``)."""
    _refuse_same_voxels(root, cases, frames)
    _refuse_same_values(root, cases, frames)


def _duplicate_message(root: Path, first: Case, second: Case, what: str) -> str:
    return (f"{root / 'dataset.json'}: patients {first.patient_id!r} ({first.image}) and "
            f"{second.patient_id!r} ({second.image}) hold the same scan ({what}); one scan "
            "under two names would leak between train and test - remove one entry. This is "
            "never skipped, even with on_error='skip': leakage is not a per-case error")


def _refuse_same_values(root: Path, cases: list[Case], frames: dict) -> None:
    """Cases with the same liver slices whose features agree on nearly every slice."""
    by_slices: dict[tuple[int, ...], list[Case]] = {}
    for case in cases:
        frame = frames.get(case.patient_id)
        if frame is not None:
            key = tuple(int(k) for k in frame["slice_idx"])
            by_slices.setdefault(key, []).append(case)
    for group in by_slices.values():
        values = {c.patient_id: frames[c.patient_id][list(FEATURE_NAMES)].to_numpy(np.float64)
                  for c in group}
        for i, first in enumerate(group):
            for second in group[i + 1:]:
                a, b = values[first.patient_id], values[second.patient_id]
                same = np.isclose(a, b, rtol=_SAME_RTOL, atol=1e-9).all(axis=1)
                if same.sum() >= 2 and same.mean() >= _SAME_SHARE:
                    raise DataError(_duplicate_message(root, first, second, (
                        f"{int(same.sum())} of {len(same)} liver slices have the same "
                        "features: the same HU values, stored with another data type or "
                        "scaling, or with a few voxels changed")))


def _refuse_same_voxels(root: Path, cases: list[Case], frames: dict) -> None:
    """Two entries with the same image voxels are one scan under two names."""
    seen: dict[str, Case] = {}
    for case in cases:
        frame = frames.get(case.patient_id)
        if frame is None:
            continue
        digest = str(frame["image_sha256"].iat[0])
        if digest in seen:
            raise DataError(_duplicate_message(root, seen[digest], case,
                                               f"the same image voxels, sha256 {digest[:16]}…"))
        seen[digest] = case
