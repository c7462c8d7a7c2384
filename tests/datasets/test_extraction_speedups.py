"""The extraction shortcuts (issue 8) change no value: stored-dtype slices scaled on the ROI
only, forked workers."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from spikebench.datasets.case_pool import mp_context as _mp_context
from spikebench.datasets.msd import (
    Volume,
    iter_case_slices,
    iter_case_stored_slices,
    training_cases,
)
from spikebench.datasets.slice_features import slice_features
from spikebench.errors import DataError


def test_stored_slices_scale_to_the_same_hu_and_features(phantom_root: Path):
    for case in training_cases(phantom_root)[:4]:  # int16, + intercept, float32, + slope
        for (k, hu, lab, sp), (k2, stored, lab2, sp2, to_hu) in zip(
                iter_case_slices(case), iter_case_stored_slices(case), strict=True):
            assert k == k2 and sp == sp2 and np.array_equal(lab, lab2)
            got = to_hu(stored)
            assert got.dtype == np.float32 and np.array_equal(got, hu)
            roi = lab > 0
            if roi.any():
                assert np.array_equal(slice_features(hu, roi, sp),
                                      slice_features(stored, roi, sp2, to_hu=to_hu))


def test_direct_read_still_reports_a_truncated_tail(phantom_root: Path, tmp_path: Path):
    src = phantom_root / "imagesTr" / "liver_0.nii.gz"
    data = gzip.decompress(src.read_bytes())
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(gzip.compress(data, compresslevel=1)[:-6])  # CRC/size trailer lost
    with Volume(bad) as vol:
        assert vol.stored_integers
        with pytest.raises(DataError, match="truncated"):
            for _ in vol.chunks(raw=True):
                pass


def test_workers_fork_on_linux_when_torch_is_not_loaded(monkeypatch):
    import sys

    if not sys.platform.startswith("linux"):
        pytest.skip("fork is only used on Linux")
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    assert _mp_context().get_start_method() == "fork"
    monkeypatch.setitem(sys.modules, "torch", object())
    assert _mp_context().get_start_method() == "forkserver"
