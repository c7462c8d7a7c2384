"""What every report must say about where its numbers come from, before any number.

- The liver ROI is the ground-truth segmentation (``label > 0``): features describe the liver
  as delineated by the annotators, so results say nothing about a pipeline with an automatic
  liver segmentation.
- A study run with ``group = "none"`` split slices, not patients: a banner says its numbers
  are optimistic (slices of one patient on both sides of a split).
- A source whose rows carry no patient ids by design (MedMNIST: one sample per patient) states
  its grouping assumption (``protocol.json`` ``data.grouping``); the report repeats it.
- The leak detector (the ``geometry`` reference: ROI area and slice position only, no image):
  when it ranks lesion slices well above chance, the features may be carrying the
  segmentation's geometry rather than the image.
"""

from __future__ import annotations

from typing import Any

#: Mean test ROC-AUC of the geometry reference from which the report warns of leakage.
LEAK_ROC_AUC = 0.70


def caveat_lines(results: Any, protocol: dict[str, Any] | None) -> list[str]:
    """Markdown lines for the report's status section."""
    protocol = protocol or {}
    data = protocol.get("data")
    data = data if isinstance(data, dict) else {}
    lines = []
    if data.get("slice_level_splits"):
        lines.append("**Warning: slice-level splits.** This study ran with `group = \"none\"`: "
                     "slices of one patient can sit in training and test, so every number below "
                     "is optimistic and not comparable with patient-level results.")
    if data.get("grouping"):
        lines.append(f"**Grouping assumption:** {data['grouping']}.")
    if data.get("source") in ("msd", "phantom"):
        lines.append("The liver ROI of every slice is the ground-truth segmentation "
                     "(label > 0); features never read the tumour label, but results assume "
                     "an expert liver delineation.")
    lines += _leak_lines(results)
    return lines


def _leak_lines(results: Any) -> list[str]:
    if results is None or "rule" not in getattr(results, "columns", ()):
        return []
    rows = results[(results["rule"] == "geometry") & (results["status"] == "ok")]
    if rows.empty or "test_roc_auc" not in rows:
        return []
    auc = float(rows["test_roc_auc"].mean())
    line = (f"Leak detector: a model given only the ROI's area and the slice's position "
            f"(no image) reaches a mean test slice ROC-AUC of {auc:.3f}.")
    if auc >= LEAK_ROC_AUC:
        line += (" **That is well above chance: the features may be carrying the "
                 "segmentation's geometry rather than the image;** compare every cell with "
                 "reference/geometry before reading it as image evidence.")
    else:
        line += " Mask geometry alone does not explain the results."
    return [line]
