"""Issue 9: every bad input gives one clear DataError (or a manifest entry with
on_error="skip"), good cases are unaffected, and a killed extraction resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from broken_inputs import EXPECTED

from spikebench.datasets.features import case_cache_files, extract_features, manifest_path_for
from spikebench.errors import DataError

GLOBAL = sorted(name for name, (is_global, _) in EXPECTED.items() if is_global)
PER_CASE = sorted(name for name, (is_global, _) in EXPECTED.items() if not is_global)


@pytest.mark.parametrize("variant", GLOBAL)
def test_dataset_level_defects_refuse_even_with_skip(broken_variants, variant, tmp_path):
    fragment = EXPECTED[variant][1]
    for on_error in ("fail", "skip"):
        with pytest.raises(DataError) as err:
            extract_features(broken_variants[variant], tmp_path / on_error / "f.parquet",
                             on_error=on_error)
        assert fragment in str(err.value)
        assert "dataset.json" in str(err.value)


@pytest.mark.parametrize("variant", PER_CASE)
def test_case_defect_fails_with_one_clear_message(broken_variants, variant, tmp_path):
    with pytest.raises(DataError) as err:
        extract_features(broken_variants[variant], tmp_path / "f.parquet")
    message = str(err.value)
    assert EXPECTED[variant][1] in message
    assert "liver_0.nii.gz" in message  # names the file at fault
    assert "Traceback" not in message and "\n" not in message


@pytest.mark.parametrize("variant", PER_CASE)
def test_case_defect_is_skipped_and_listed(broken_variants, variant, tmp_path,
                                           clean_table: pd.DataFrame):
    out = tmp_path / "f.parquet"
    res = extract_features(broken_variants[variant], out, on_error="skip")
    assert [pid for pid, _ in res.skipped] == ["liver_0"]
    assert EXPECTED[variant][1] in res.skipped[0][1]
    manifest = json.loads(manifest_path_for(out).read_text())
    assert manifest["skipped"] == [{"patient_id": "liver_0", "reason": res.skipped[0][1]}]
    table = pd.read_parquet(out)
    good = clean_table[clean_table["patient_id"] != "liver_0"].reset_index(drop=True)
    pd.testing.assert_frame_equal(table, good, check_exact=True)


def test_mixed_folder_skips_each_bad_case_with_its_reason(broken_variants, tmp_path,
                                                          clean_table: pd.DataFrame):
    out = tmp_path / "f.parquet"
    res = extract_features(broken_variants["mixed"], out, on_error="skip")
    reasons = dict(res.skipped)
    assert sorted(reasons) == ["liver_0", "liver_2", "liver_4"]
    assert "truncated" in reasons["liver_0"]
    assert "no liver voxels" in reasons["liver_2"]
    assert "missing" in reasons["liver_4"]
    assert res.n_cases == 3
    good = clean_table[clean_table["patient_id"].isin(["liver_1", "liver_3", "liver_5"])]
    pd.testing.assert_frame_equal(pd.read_parquet(out), good.reset_index(drop=True),
                                  check_exact=True)
    with pytest.raises(DataError, match="truncated"):
        extract_features(broken_variants["mixed"], tmp_path / "fail.parquet")


def test_resource_fork_files_are_never_opened(phantom_copy: Path, tmp_path: Path,
                                               monkeypatch):
    import spikebench.datasets.msd as msd

    for fork in phantom_copy.glob("*/._*"):
        fork.unlink()
        fork.mkdir()  # opening it would fail, even as root
    opened = []
    real_init = msd.Volume.__init__

    def spy(self, path, *args, **kwargs):
        opened.append(Path(path).name)
        real_init(self, path, *args, **kwargs)

    monkeypatch.setattr(msd.Volume, "__init__", spy)
    res = extract_features(phantom_copy, tmp_path / "f.parquet")
    assert res.n_cases == 6 and res.skipped == []
    assert len(opened) == 12 and not any(name.startswith("._") for name in opened)


_KILL_SCRIPT = """
import sys, time
import spikebench.datasets.features as F
real = F.extract_case
def slow(case, path, *args):
    out = real(case, path, *args)
    print("cached", case.patient_id, flush=True)
    time.sleep(30)
    return out
F.extract_case = slow
F.extract_features(sys.argv[1], sys.argv[2])
"""


def test_sigkill_mid_run_then_resume_equals_clean_run(phantom_root: Path, tmp_path: Path,
                                                      clean_table: pd.DataFrame):
    out = tmp_path / "f.parquet"
    proc = subprocess.Popen([sys.executable, "-c", _KILL_SCRIPT, str(phantom_root), str(out)],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("cached liver_0"), line
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close()
    assert not out.exists()
    assert len(case_cache_files(out, "liver_0")) == 1
    start = time.perf_counter()
    res = extract_features(phantom_root, out)
    assert res.cached_cases == 1 and time.perf_counter() - start < 60
    pd.testing.assert_frame_equal(pd.read_parquet(out), clean_table, check_exact=True)


#: Hostile values for any field of dataset.json.
HOSTILE = [None, 0, -1, 1.5, True, "", " ", "x" * 5000, [], {}, [None], {"a": 1},
           "../../outside.nii.gz", "/abs/liver_0.nii.gz", "imagesTr/*.nii.gz",
           "imagesTr/liver_0.nii", "imagesTr/\x00.nii.gz", "imagesTr/ü 日本.nii.gz",
           "labelsTr/liver_1.nii.gz", float("nan")]
#: Where each hostile value goes: a top-level key, a key of the first training entry or of
#: "labels", the first test entry, or the whole entry.
FIELDS = [("labels",), ("labels", "0"), ("labels", "1"), ("labels", "2"), ("training",),
          ("training", 0), ("training", 0, "image"), ("training", 0, "label"), ("test",),
          ("test", 0)]
#: Fields the reader does not use: a few values each show they stay harmless.
UNREAD = [("name",), ("description",), ("modality",), ("tensorImageSize",), ("numTraining",),
          ("numTest",)]


def test_every_field_of_dataset_json_malformed_is_one_data_error_or_harmless(phantom_root,
                                                                            tmp_path):
    """Not yet attacked before issue 26: every field of dataset.json (top level, labels,
    training entries, test entries) set to a hostile value of every kind, or removed. The
    extraction, even with ``on_error = "skip"``, either refuses with one DataError naming
    dataset.json (a defect of the file itself is never skipped) or — for fields it does not
    read, or a case it can leave out — gives a table. Never another exception, never a
    crash."""
    import shutil

    good = json.loads((phantom_root / "dataset.json").read_text())
    folder = tmp_path / "copy"
    shutil.copytree(phantom_root, folder)
    out = tmp_path / "f.parquet"
    clean = extract_features(folder, out).n_rows
    outcomes = {"refused": 0, "harmless": 0}
    trials = [(f, v) for f in FIELDS for v in [*HOSTILE, "<removed>"]]
    trials += [(f, v) for f in UNREAD for v in (None, {}, "x" * 5000, "<removed>")]
    for field, value in trials:
        meta = json.loads(json.dumps(good))
        target, key = meta, field[-1]
        for part in field[:-1]:
            target = target[part]
        if value == "<removed>":
            if isinstance(target, list):
                target.pop(key)
            else:
                target.pop(key, None)
        else:
            target[key] = value
        (folder / "dataset.json").write_text(json.dumps(meta))
        try:
            result = extract_features(folder, out, on_error="skip")
        except DataError as exc:
            assert "dataset.json" in str(exc) or str(folder) in str(exc), (field, value,
                                                                           exc)
            outcomes["refused"] += 1
            continue
        except Exception as exc:  # pragma: no cover - the failure this test guards
            pytest.fail(f"{field} = {value!r}: {type(exc).__name__}: {exc}")
        assert result.n_rows <= clean, (field, value)
        outcomes["harmless"] += 1
    assert outcomes["refused"] > 100 and outcomes["harmless"] > 30, outcomes
