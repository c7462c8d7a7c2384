"""Is there lesion signal in the crops at all? Logistic regression on raw crop pixels versus on
the feature table, under patient-grouped cross-validation, on an MSD-layout data set and its
feature table (``spikebench demo`` leaves both in ``results/demo/data``).

    python examples/pixel_baseline.py results/demo/data/phantom \
        results/demo/data/features.parquet --crop 16 --spacing 2.0

Prints the slice ROC-AUC of each fold for both inputs. The README quotes this run on the demo
folder to say what the demo's image rows can claim: where pixels alone rank slices at chance,
an image model's below-chance test score says more about the phantom than about the model.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold

from spikebench.datasets.crops import CropSettings, case_crops
from spikebench.datasets.msd import training_cases


def fold_aucs(X: np.ndarray, y: np.ndarray, groups: np.ndarray, C: float, folds: int
              ) -> list[float]:
    """Held-out slice ROC-AUC per patient-grouped fold."""
    out = []
    for tr, te in GroupKFold(folds).split(X, y, groups):
        model = LogisticRegression(C=C, max_iter=2000).fit(X[tr], y[tr])
        out.append(float(roc_auc_score(y[te], model.predict_proba(X[te])[:, 1])))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", type=Path, help="a data set in the MSD Task03 layout")
    p.add_argument("features", type=Path, help="its feature table (spikebench extract)")
    p.add_argument("--crop", type=int, default=16)
    p.add_argument("--spacing", type=float, default=2.0)
    p.add_argument("--folds", type=int, default=4)
    args = p.parse_args()
    table = pd.read_parquet(args.features)
    pixels, labels, groups = [], [], []
    for case in training_cases(args.dataset):
        crops, slices = case_crops(case, CropSettings(size=args.crop, spacing_mm=args.spacing))
        rows = table[table["patient_id"] == case.patient_id].set_index("slice_idx")
        for crop, k in zip(crops, slices, strict=True):
            pixels.append(crop.ravel() / 255.0)
            labels.append(int(rows.loc[k, "label"]))
            groups.append(case.patient_id)
    X, y, g = np.array(pixels), np.array(labels), np.array(groups)
    features = table.drop(columns=["patient_id", "slice_idx", "label", "lesion_mm2"],
                          errors="ignore").to_numpy(float)
    features = (features - features.mean(0)) / (features.std(0) + 1e-9)
    print(f"{len(y)} slices, {len(set(g))} patients, {y.mean():.0%} with a lesion")
    print("pixels   ROC-AUC per fold:",
          np.round(fold_aucs(X, y, g, 0.1, args.folds), 3).tolist())
    print("features ROC-AUC per fold:", np.round(fold_aucs(
        features, table["label"].to_numpy(), table["patient_id"].to_numpy(), 1.0,
        args.folds), 3).tolist())


if __name__ == "__main__":
    main()
