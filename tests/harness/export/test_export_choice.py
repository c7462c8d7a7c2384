"""Which network ``spikebench export`` writes, and where it may write it.

- the default cell is the best on *validation* (mean ``val_<study metric>`` over the cell's
  refit rows), never the best on test;
- nested-CV refits (``r<repeat>f<fold>s<refit>``) are exportable, chosen with ``--repeat`` /
  ``--fold`` / ``--refit``; a refit that was not saved is one error listing the saved ones;
- ``--to`` and its sidecar never replace a file spikebench did not write (issue 26, item 1):
  the study's own ``results.parquet``, a user's file, a symbolic link; an earlier export is
  replaced;
- a damaged ``results.parquet`` is one error line naming it (issue 26, item 9).
"""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

pytest.importorskip("nir")
pytest.importorskip("h5py")

from test_export import make_results_folder

from spikebench.backends.serialize import load_network, save_network
from spikebench.cli import main


def _copy_model(run, name, **meta):
    spec, weights, old = load_network(run / "models" / "custom__surrogate__r0.pt")
    save_network(run / "models" / f"{name}.pt", spec, weights, {**old, **meta})


def _nested_folder(root):
    """Two cells with nested-CV model files; custom/surrogate is best on test, snntorch/
    surrogate best on validation."""
    make_results_folder(root)
    rows = []
    for cell, val, test in (("custom", 0.60, 0.99), ("snntorch", 0.90, 0.50)):
        for fold, refit in ((0, 0), (1, 0), (1, 1)):
            _copy_model(root, f"{cell}__surrogate__r0f{fold}" + (f"s{refit}" if refit else ""),
                        cell=f"{cell}__surrogate", repeat=0, fold=fold, refit=refit)
            rows.append({"study": "nest", "backend": cell, "rule": "surrogate", "kind": "snn",
                         "status": "ok", "repeat": 0, "fold": fold, "refit": refit,
                         "seed": 7 + fold + 100_003 * refit, "best_trial": 3,
                         "threshold": 0.25 + 0.1 * fold + 0.01 * refit, "val_pr_auc": val,
                         "test_patient_pr_auc": test, "best_val": val})
    (root / "models" / "custom__surrogate__r0.pt").unlink()
    pd.DataFrame(rows).to_parquet(root / "results.parquet")
    (root / "spec.toml").write_text('[study]\nmetric = "pr_auc"\nthreshold = "f1"\n'
                                    '[data]\nsource = "phantom"\n')
    (root / "identity.json").write_text(json.dumps({"spec_sha256": "abc123"}))


def test_the_default_cell_is_the_best_on_validation_never_on_test(tmp_path, capsys):
    """Export items of the ecosystem issue: the default cell was the best mean *test* score;
    the sidecar's decision was ``P(lesion) > 0.5`` whatever the study chose. Now the best on
    validation, with the refit row's threshold, its rule and the refit's provenance."""
    _nested_folder(tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), "--to", str(tmp_path / "m.nir"),
                 "--fold", "1", "--refit", "1"]) == 0
    b = json.loads((tmp_path / "m.nir.json").read_text())
    prov = b["decision"]["provenance"]
    assert prov["cell"] == "snntorch/surrogate"  # best on validation (0.90 vs 0.60)
    assert (prov["repeat"], prov["fold"], prov["refit"]) == (0, 1, 1)
    assert prov["seed"] == 8 + 100_003 and prov["best_trial"] == 3
    assert prov["spec_sha256"] == "abc123" and prov["study"] == "nest"
    assert b["decision"]["threshold"] == pytest.approx(0.36)
    assert b["decision"]["threshold_rule"] == "f1"
    assert b["readout"]["decision"] == "lesion if P(lesion) >= 0.36"
    assert "decision: lesion if P(lesion) >= 0.36" in capsys.readouterr().out


def test_nested_cv_refits_are_chosen_by_flags_and_a_missing_one_lists_the_saved(tmp_path,
                                                                                capsys):
    """``pick_model`` looked for ``__r{repeat}.pt``, which nested-CV folders do not have (their
    models are ``r0f1s2``): ``--repeat/--fold/--refit`` choose one, a missing one is listed."""
    _nested_folder(tmp_path / "run")
    assert main(["export", str(tmp_path / "run"), "--to", str(tmp_path / "a.nir"),
                 "--cell", "custom/surrogate"]) == 0  # default: the first saved refit
    prov = json.loads((tmp_path / "a.nir.json").read_text())["decision"]["provenance"]
    assert (prov["cell"], prov["fold"], prov["refit"]) == ("custom/surrogate", 0, 0)
    capsys.readouterr()
    assert main(["export", str(tmp_path / "run"), "--to", str(tmp_path / "b.nir"),
                 "--cell", "custom/surrogate", "--fold", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no saved network of custom/surrogate" in err
    assert "--repeat 0 --fold 1 --refit 1" in err and not (tmp_path / "b.nir").exists()


@pytest.mark.parametrize("victim", ["results", "user_file", "sidecar", "symlink"])
def test_export_never_replaces_a_file_spikebench_did_not_write(tmp_path, capsys, victim):
    """Issue 26, item 1: ``export RES --to RES/results.parquet --allow-approximate`` exited 0
    and replaced the study's table with an HDF5 file; ``--to notes.txt`` replaced a user's
    file; the sidecar ``<to>.json`` could overwrite another file; a link was followed. Each
    is now one error line, exit 2, the file untouched (spikebench.io.refuse_foreign)."""
    run = tmp_path / "run"
    make_results_folder(run)
    pd.DataFrame({"status": ["ok"]}).to_parquet(run / "results.parquet")
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n")
    to, protected = {
        "results": (run / "results.parquet", run / "results.parquet"),
        "user_file": (notes, notes),
        "sidecar": (tmp_path / "notes", notes.with_name("notes.json")),
        "symlink": (tmp_path / "link.nir", notes),
    }[victim]
    if victim == "sidecar":
        protected.write_text('{"mine": true}')
    if victim == "symlink":
        to.symlink_to(notes)
    before = protected.read_bytes()
    code = main(["export", str(run), "--to", str(to), "--cell", "custom/surrogate",
                 "--allow-approximate"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "spikebench did not write" in err and "--to" in err
    assert protected.read_bytes() == before
    assert victim != "symlink" or to.is_symlink()
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_an_earlier_export_is_replaced_and_files_get_the_users_mode(tmp_path):
    """An earlier export (ours) is replaced; issue 26, item 5: the graph was written 0600
    whatever the umask, now both files get the user's mode."""
    run = tmp_path / "run"
    make_results_folder(run)
    old = os.umask(0o022)
    try:
        for _ in range(2):  # the second replaces the first: both files are ours
            assert main(["export", str(run), "--to", str(tmp_path / "m.nir"),
                         "--cell", "custom/surrogate"]) == 0
    finally:
        os.umask(old)
    for path in (tmp_path / "m.nir", tmp_path / "m.nir.json"):
        assert path.stat().st_mode & 0o777 == 0o644, path  # issue 26, item 5


def test_a_damaged_results_table_is_one_error_line(tmp_path, capsys):
    """Issue 26, item 9: ``export`` on a damaged results.parquet printed pyarrow's
    ``ArrowInvalid`` traceback; now one line naming the file and how to rebuild it."""
    run = tmp_path / "run"
    make_results_folder(run)
    (run / "results.parquet").write_bytes(b"PAR1 not really parquet")
    assert main(["export", str(run), "--to", str(tmp_path / "m.nir")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results.parquet: unreadable" in err, err
    assert "Traceback" not in err
