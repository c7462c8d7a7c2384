"""A user writes a report next to their own files; spikebench must never touch those.

Steps: build a report (default folder, then ``--out`` elsewhere), rebuild it, put files of
one's own into the folder, point ``--out`` at the results folder. Invariants: a report only
replaces and deletes files a report wrote (listed in its manifest); every refusal is one
:class:`SpikebenchError` that names the path and the fix, raised before anything is written.
"""

from __future__ import annotations

import json

import pytest

from spikebench.cli import main
from spikebench.errors import SpikebenchError
from spikebench.reports import build_report
from spikebench.reports.folder import MANIFEST


@pytest.fixture(scope="module")
def study(tmp_path_factory, make_synthetic_study, study_plan):
    plan = study_plan(backends=("custom",), rules=("surrogate",), repeats=2, n_patients=20,
                      references=(), trials=False, curves=False)
    return make_synthetic_study(tmp_path_factory.mktemp("folder") / "study", plan)


def _quick(study, out=None, **kw):
    return build_report(study, out, n_bootstrap=5, figures=False, **kw)


def _snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_user_files_in_the_target_are_never_deleted(study, tmp_path):
    out = tmp_path / "paper"
    (out / "tables").mkdir(parents=True)
    (out / "figures").mkdir()
    mine = {"tables/my_table.tex": b"% mine", "figures/fig1.pdf": b"%PDF mine",
            "notes.md": b"mine"}
    for rel, data in mine.items():
        (out / rel).write_bytes(data)
    with pytest.raises(SpikebenchError, match="did not write") as info:
        _quick(study, out)
    message = str(info.value)
    assert str(out / "figures" / "fig1.pdf") in message and "--out" in message
    assert _snapshot(out) == mine  # nothing written, nothing deleted


def test_a_report_replaces_only_its_own_files(study, tmp_path):
    out = tmp_path / "report"
    build_report(study, out, n_bootstrap=5)  # with figures
    listed = set(json.loads((out / MANIFEST).read_text())["files"])
    on_disk = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert listed == on_disk - {MANIFEST}
    assert "figures/heatmap.png" in listed and "report.html" in listed
    _quick(study, out)  # again, without figures: the old figures were ours and go
    assert not (out / "figures").exists()
    assert set(json.loads((out / MANIFEST).read_text())["files"]) == {
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {MANIFEST}
    (out / "tables" / "extra.csv").write_text("mine")
    with pytest.raises(SpikebenchError, match=r"extra\.csv"):
        _quick(study, out)
    assert (out / "tables" / "extra.csv").read_text() == "mine"


def test_out_must_not_alias_the_results_folder(study):
    before = _snapshot(study)
    for target in (study, study.parent):
        with pytest.raises(SpikebenchError, match="results folder") as info:
            _quick(study, target)
        assert "report" in str(info.value)  # the fix: the default report folder
    assert _snapshot(study) == {k: v for k, v in _snapshot(study).items()
                                if k in before or k.startswith("report/")}
    assert {k: v for k, v in _snapshot(study).items() if k in before} == before


def test_a_report_written_before_the_manifest_is_recognised(study, tmp_path):
    out = tmp_path / "old"
    (out / "tables").mkdir(parents=True)
    (out / "report.html").write_text("<!DOCTYPE html>\n<html><head><title>spikebench report: "
                                     "demo</title></head></html>")
    (out / "tables" / "performance.tex").write_text("% old")
    _quick(study, out)
    assert "% old" not in (out / "tables" / "performance.tex").read_text()
    (out / MANIFEST).unlink()
    (out / "mine.txt").write_text("mine")
    with pytest.raises(SpikebenchError, match=r"mine\.txt"):
        _quick(study, out)


def test_cli_refuses_with_one_line_and_exit_code_2(study, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    assert main(["report", str(study), "--out", str(out), "--bootstrap", "5", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spikebench: error:") and "thesis.tex" in err
    assert (out / "thesis.tex").read_text() == "mine"


@pytest.mark.parametrize("entry", ["absolute", "dotdot", "link_out"])
def test_a_received_manifest_never_makes_a_report_delete_outside_its_folder(study, tmp_path,
                                                                            entry):
    """Issue 26, item 4: a ``.spikebench-report.json`` whose file list names an absolute path
    (or ``..``, or a path through a link leading out) deleted that file on the next report.
    A manifest only ever names files inside its own folder (:func:`spikebench.io.inside`)."""
    out = tmp_path / "received"
    _quick(study, out)
    victim = tmp_path / "elsewhere" / "precious.txt"
    victim.parent.mkdir()
    victim.write_text("mine\n")
    manifest = json.loads((out / MANIFEST).read_text())
    if entry == "link_out":
        (out / "outside").symlink_to(victim.parent, target_is_directory=True)
        name = "outside/precious.txt"
    else:
        name = str(victim) if entry == "absolute" else "../elsewhere/precious.txt"
    manifest["files"].append(name)
    (out / MANIFEST).write_text(json.dumps(manifest))
    try:
        _quick(study, out)
    except SpikebenchError as exc:  # the link is a file the report did not write: refused
        assert entry == "link_out" and "did not write" in str(exc)
    assert victim.read_text() == "mine\n"
    listed = json.loads((out / MANIFEST).read_text())["files"]
    assert all(not f.startswith(("/", "..")) for f in listed)


def test_report_files_get_the_users_file_mode(study, tmp_path):
    """Issue 26, item 5: every file of a report is created with the user's umask (here 027:
    group-readable), not readable by its owner only."""
    import os

    old = os.umask(0o027)
    try:
        out = build_report(study, tmp_path / "shared", n_bootstrap=5)
    finally:
        os.umask(old)
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777
             for p in out.rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {0o640}, modes


@pytest.mark.parametrize("where", ["/figures/", "/tables/", "report.html"])
def test_a_full_disk_names_the_file_it_could_not_write(study, tmp_path, monkeypatch, capsys,
                                                       where):
    """Issue 26, item 11: a full disk while a report was written once said "a file" instead
    of the file (figures were written by matplotlib straight to disk). Every report file now
    goes through spikebench.io: one line naming the file, the fix, and nothing torn."""
    import errno
    import os

    real = os.fsync

    def full_for_some(fd):
        if where in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd)

    monkeypatch.setattr("spikebench.io.os.fsync", full_for_some)
    out = tmp_path / "full"
    code = main(["report", str(study), "--out", str(out), "--bootstrap", "5"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"{out}/" in err and where.strip("/") in err and "disk is full" in err, err
    assert "a file:" not in err and not list(out.rglob("*.tmp"))
