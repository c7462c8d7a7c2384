"""A results table cannot be written (a full disk, a quota, a read-only folder, or pyarrow
reporting an I/O failure with the errno in its text only): the user gets one
``OutputError`` naming the file and the fix, no pyarrow traceback, and no partial file."""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from spikebench.errors import OutputError, SpikebenchError
from spikebench.io import write_parquet

FRAME = pd.DataFrame({"patient_id": ["p0", "p1"], "prob": [0.2, 0.9]})


def _raise_from_pyarrow(monkeypatch: pytest.MonkeyPatch, exc: BaseException) -> None:
    """Make pyarrow's parquet writer (which pandas calls) fail with ``exc``."""
    def broken(*args, **kwargs):
        raise exc

    monkeypatch.setattr(pq, "write_table", broken)


def _nothing_left(folder: Path, target: Path) -> None:
    assert not target.exists()
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_full_disk_names_the_file_and_the_fix_and_leaves_no_partial_file(tmp_path,
                                                                             monkeypatch):
    target = tmp_path / "run" / "results.parquet"

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("spikebench.io.os.fsync", full)
    with pytest.raises(OutputError) as caught:
        write_parquet(target, FRAME)
    message = str(caught.value)
    assert str(target) in message and "disk is full" in message and "--out" in message
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    assert isinstance(caught.value, SpikebenchError) and isinstance(caught.value, OSError)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    _nothing_left(tmp_path / "run", target)


@pytest.mark.parametrize("exc, fix", [
    (OSError(errno.ENOSPC, "No space left on device"), "disk is full"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "quota"),
    (OSError(errno.EROFS, "Read-only file system"), "read-only"),
    (OSError(errno.EACCES, "Permission denied"), "permission denied"),
    # pyarrow's ArrowIOError is OSError; its errno is often in the text only
    (pa.lib.ArrowIOError("Error writing bytes to file. Detail: [errno 28] No space left on "
                         "device"), "disk is full"),
    (pa.lib.ArrowException("IOError: [Errno 122] Disk quota exceeded"), "quota"),
    (pa.lib.ArrowIOError("error closing file"), "free space"),
])
def test_pyarrow_write_failures_name_the_file(tmp_path, monkeypatch, exc, fix):
    target = tmp_path / "predictions.parquet"
    _raise_from_pyarrow(monkeypatch, exc)
    with pytest.raises(OutputError) as caught:
        write_parquet(target, FRAME)
    message = str(caught.value)
    assert message.startswith(f"cannot write {target}: ") and fix in message
    assert "\n" not in message and "Traceback" not in message
    _nothing_left(tmp_path, target)


def test_a_failed_rewrite_keeps_the_table_already_there(tmp_path, monkeypatch):
    target = tmp_path / "results.parquet"
    write_parquet(target, FRAME)
    _raise_from_pyarrow(monkeypatch, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OutputError, match=r"results\.parquet"):
        write_parquet(target, FRAME.assign(prob=0.5))
    monkeypatch.undo()
    pd.testing.assert_frame_equal(pd.read_parquet(target), FRAME)


def test_a_frame_parquet_cannot_hold_is_not_blamed_on_the_disk(tmp_path):
    bad = pd.DataFrame({"mixed": [1, "a", 2.5]})  # a bug, shown as such
    with pytest.raises(pa.lib.ArrowException) as caught:
        write_parquet(tmp_path / "x.parquet", bad)
    assert not isinstance(caught.value, OutputError)


def test_the_cli_prints_one_line_for_it(tmp_path, monkeypatch, capsys):
    from spikebench import cli

    target = tmp_path / "trials.parquet"
    _raise_from_pyarrow(monkeypatch, pa.lib.ArrowIOError("[errno 28] No space left on device"))
    monkeypatch.setattr(cli, "_dispatch", lambda args: write_parquet(target, FRAME))
    assert cli.main(["rules"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"spikebench: error: cannot write {target}:") and "Traceback" not in err


def test_the_error_survives_a_trip_to_a_worker_process():
    exc = OutputError("cannot write x.parquet: full; free space", errno.ENOSPC, "full",
                      "x.parquet")
    back = pickle.loads(pickle.dumps(exc))
    assert str(back) == str(exc) and back.errno == errno.ENOSPC and back.filename == "x.parquet"
