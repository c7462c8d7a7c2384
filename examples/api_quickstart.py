"""spikebench from Python: synthetic CT → features → a tuned study → its tables → a report.

    python examples/api_quickstart.py [WORKDIR] [--trials N]

Every step is one function of the public API (``help(spikebench.run_study)`` and so on). With
the default budget (2 trials per cell, one backend × rule, 2 repeats) it takes well under a
minute on two CPU cores; CI runs it as a test.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import spikebench

SPEC = """\
# A tiny study on the feature table this script extracted (paths relative to this file).
[study]
name = "api-quickstart"
seed = 0
metric = "pr_auc"
references = ["logistic_regression"]

[data]
source = "table"
path = "features.parquet"

[grid]
backends = ["custom"]
rules = ["surrogate"]

[split]
repeats = 2
test_fraction = 0.25
val_fraction = 0.25

[search]
trials = {trials}
pruner = "none"

[space.surrogate]
epochs = 5
"""


def main(workdir: Path, trials: int = 2) -> Path:
    """Run the whole chain in ``workdir`` and return the report folder."""
    workdir.mkdir(parents=True, exist_ok=True)
    # 1. 16 synthetic patients in the Medical Segmentation Decathlon Task03 layout
    data = spikebench.write_phantom(workdir / "phantom", cases=16, seed=0)
    # 2. one row of features per liver slice, with patient ids and lesion labels
    extraction = spikebench.extract(data, workdir / "features.parquet")
    print(f"{extraction.n_rows} slices of {extraction.n_cases} patients")
    # 3. tune (Optuna on validation patients only), refit, test once on sealed patients
    spec = workdir / "study.toml"
    spec.write_text(SPEC.format(trials=trials))
    results = spikebench.run_study(spec, workdir / "results", progress=False)
    # 4. the results folder as typed tables
    tables = spikebench.load_results(results)
    print(tables.ok[["backend", "rule", "repeat", "test_balanced_accuracy",
                     "test_patient_pr_auc"]].to_string(index=False))
    # 5. the report: Markdown, HTML, LaTeX, CSV and figures
    report = spikebench.build_report(results, n_bootstrap=100)
    print(f"report: {report / 'report.html'}")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?", type=Path, default=None,
                        help="where to write (default: a temporary folder)")
    parser.add_argument("--trials", type=int, default=2, help="Optuna trials per cell")
    args = parser.parse_args()
    if args.workdir is None:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp), args.trials)
    else:
        main(args.workdir, args.trials)
