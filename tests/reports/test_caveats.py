"""The report says where its numbers come from: ground-truth ROI, slice-level splits, and the
leak detector's verdict."""

from __future__ import annotations

import pandas as pd

from spikebench.reports.caveats import caveat_lines


def results(auc: float) -> pd.DataFrame:
    return pd.DataFrame({"rule": ["geometry", "geometry", "surrogate"],
                         "status": ["ok", "ok", "ok"], "test_roc_auc": [auc, auc, 0.9]})


def test_a_geometry_model_far_above_chance_is_flagged_as_possible_leakage():
    text = " ".join(caveat_lines(results(0.86), {"data": {"source": "msd"}}))
    assert "ground-truth segmentation" in text and "0.860" in text
    assert "may be carrying the segmentation" in text


def test_a_geometry_model_near_chance_clears_the_features():
    text = " ".join(caveat_lines(results(0.55), {"data": {"source": "phantom"}}))
    assert "does not explain" in text and "may be carrying" not in text


def test_slice_level_splits_get_a_banner():
    text = " ".join(caveat_lines(None, {"data": {"source": "table", "slice_level_splits": True}}))
    assert "slice-level splits" in text and "optimistic" in text
