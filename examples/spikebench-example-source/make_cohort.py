"""Write the example cohort: one CSV of slice features per patient, as an in-house export.

The numbers are synthetic (seeded): a lesion slice is darker and more heterogeneous than the
liver around it. Run it again to regenerate ``cohort/`` byte for byte::

    python make_cohort.py cohort
"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

COLUMNS = ["slice_idx", "tumour", "hu_mean", "hu_std", "entropy", "area_cm2"]


def write_cohort(folder: Path, patients: int = 16, seed: int = 7) -> list[Path]:
    """``P001.csv`` ... in ``folder``; every other patient has a run of lesion slices."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for p in range(1, patients + 1):
        slices = rng.randint(10, 16)
        first = rng.randint(2, slices - 5) if p % 2 == 0 else slices  # lesion slices from here
        last = first + rng.randint(2, 4)
        path = folder / f"P{p:03d}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            out = csv.writer(fh, lineterminator="\n")
            out.writerow(COLUMNS)
            for s in range(slices):
                tumour = int(first <= s < last)
                out.writerow([
                    s, tumour,
                    f"{rng.gauss(62 - 14 * tumour, 6):.2f}",
                    f"{rng.gauss(11 + 5 * tumour, 2):.2f}",
                    f"{rng.gauss(4.1 + 0.5 * tumour, 0.3):.3f}",
                    f"{abs(rng.gauss(95 - 30 * abs(s / slices - 0.5), 12)):.1f}",
                ])
        written.append(path)
    return written


if __name__ == "__main__":
    write_cohort(Path(sys.argv[1] if len(sys.argv) > 1 else "cohort"))
