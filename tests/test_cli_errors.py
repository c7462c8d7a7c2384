"""A hostile user at the command line gets one ``spikebench: error:`` line naming the file or
flag and the fix, exit code 2, no traceback, and no results folder made for a refused run."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from spec_text import tiny_spec

from spikebench.cli import main

SPEC = tiny_spec("{table}", study={"references": [], "eval_steps": None}, split={"repeats": 1},
                 search={"trials": 1},
                 space_surrogate={"epochs": 2, "hidden": 8, "steps": 4, "encoding": None})


@pytest.fixture
def spec(tmp_path, feature_table) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(SPEC.format(table=feature_table))
    return path


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikebench: error:"), err
    assert "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize(("args", "needles"), [
    (["--storage", "sqlite:///{tmp}/missing/db.sqlite3"], ["does not exist", "missing"]),
    (["--storage", "journal:{tmp}"], ["is a folder", "journal file path"]),
    (["--storage", "postgresql://bob:s3cret@db:port/x"], ["port must be an integer"]),
    (["--storage", "postgresql://bob:s3cret@db:99999/x"], ["out of range"]),
    (["--storage", "not a url at all"], ["unparsable"]),
    (["--trials", "-1"], ["--trials", "out of range"]),
    (["--trials", "1e9"], ["--trials", "not an integer"]),
    (["--workers", "0"], ["--workers", "out of range"]),
    (["--workers", "100000"], ["--workers", "out of range"]),
])
def test_study_run_refuses_before_making_the_folder(spec, tmp_path, capsys, args, needles):
    out = tmp_path / "run"
    args = [a.format(tmp=tmp_path) for a in args]
    assert main(["study", "run", str(spec), "--out", str(out), *args]) == 2
    err = _one_line_error(capsys, *needles)
    assert "s3cret" not in err
    assert not out.exists()


@pytest.mark.parametrize("line", ['epochs = "abc"', "hidden = 0", "batch_size = 0",
                                  "steps = 100000"])
def test_hostile_space_values_name_the_key(tmp_path, feature_table, capsys, line):
    key = line.split(" ")[0]
    text = "\n".join(ln for ln in SPEC.splitlines() if not ln.startswith(f"{key} ="))
    path = tmp_path / "s.toml"
    path.write_text(text.format(table=feature_table) + f"\n{line}\n")
    assert main(["study", "run", str(path), "--out", str(tmp_path / "run")]) == 2
    _one_line_error(capsys, f"[space.surrogate].{key}")
    assert not (tmp_path / "run").exists()


def test_a_bogus_device_names_the_key(tmp_path, feature_table, capsys):
    path = tmp_path / "s.toml"
    path.write_text(SPEC.format(table=feature_table).replace('name = "tiny"',
                                                             'name = "tiny"\ndevice = "bogus"'))
    assert main(["study", "run", str(path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "[study].device" in err and "Traceback" not in err


def test_an_output_that_is_a_file(spec, tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("mine")
    assert main(["study", "run", str(spec), "--out", str(target)]) == 2
    _one_line_error(capsys, "is a file")
    assert target.read_text() == "mine"


@contextlib.contextmanager
def _mounted(where: Path, options: str):
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_an_output_on_a_read_only_file_system(spec, tmp_path, capsys):
    with _mounted(tmp_path / "ro", "ro,size=1m") as ro:
        assert main(["study", "run", str(spec), "--out", str(ro / "run")]) == 2
        _one_line_error(capsys, "--out", "read-only")
        assert main(["study", "run", str(spec), "--out", str(ro)]) == 2
        _one_line_error(capsys, "--out", "writable")


@pytest.mark.parametrize(("argv", "needles"), [
    (["report", "{tmp}", "--bootstrap", "1e7"], ["--bootstrap", "not an integer"]),
    (["report", "{tmp}", "--bootstrap", "10000000"], ["--bootstrap", "out of range"]),
    (["phantom", "{tmp}/p", "--cases", "100000000"], ["--cases", "out of range"]),
    (["phantom", "{tmp}/p", "--shape", "100000", "100000"], ["--shape", "out of range"]),
    (["extract", "{tmp}", "--out", "{tmp}/f.parquet", "--workers", "-3"], ["--workers"]),
    (["export", "{tmp}", "--to", "{tmp}/x.nir", "--repeat", "-1"], ["--repeat"]),
    (["bench", "--backends", "nosuch"], ["unknown backend", "nosuch"]),
    (["bench", "--hidden", "100000000"], ["--hidden", "out of range"]),
    (["study", "run"], ["required"]),
    (["nosuch-command"], ["invalid choice"]),
])
def test_absurd_flags_are_one_line_errors(tmp_path, capsys, argv, needles):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    _one_line_error(capsys, *needles)


def test_status_of_zero_byte_files_is_an_error_or_missing(tmp_path, capsys, spec):
    """What ``study status`` reads, torn by a full disk, never reads as valid."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "spec.toml").write_bytes(b"")
    assert main(["study", "status", str(out)]) == 2
    _one_line_error(capsys, "spec.toml")
    (out / "spec.toml").write_text(spec.read_text())
    (out / "splits.json").write_bytes(b"")
    assert main(["study", "status", str(out)]) == 2
    _one_line_error(capsys, "splits.json")


def test_a_reader_that_leaves_early_ends_the_command_quietly():
    """``spikebench rules | head -0``: the pipe is closed before anything is written; the
    command ends with 141 (as a tool killed by SIGPIPE) and prints nothing on stderr."""
    import sys

    run = subprocess.Popen([sys.executable, "-m", "spikebench", "rules"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run.stdout.close()  # the reader is gone before the first line
    err = run.stderr.read()
    assert run.wait(timeout=120) == 141, err
    assert err == ""
