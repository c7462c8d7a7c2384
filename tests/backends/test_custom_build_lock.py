"""The first-use build of the fused kernels never hangs on a lock left by a killed build, waits a
bounded time for a live one, and is cached per source content and install path."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time

import pytest

from spikebench.backends import _build_lock, _lif_kernels


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_of_a_killed_holder_is_removed_at_once(tmp_path):
    lock = tmp_path / _build_lock.LOCK_NAME
    lock.write_text(f"{_dead_pid()} {_build_lock.socket.gethostname()} 0\n")
    (tmp_path / "lock").touch()  # torch's lock, left by the same killed build
    started = time.monotonic()
    with _build_lock.build_lock(tmp_path, timeout=30) as held:
        assert held == lock and held.is_absolute()
        assert not (tmp_path / "lock").exists()
        assert lock.read_text().split()[0] == str(os.getpid())
    assert time.monotonic() - started < 5
    assert not lock.exists()


def test_live_holder_is_waited_for_a_bounded_time_with_a_message(tmp_path, caplog):
    lock = tmp_path / _build_lock.LOCK_NAME
    lock.write_text(f"{os.getppid()} {_build_lock.socket.gethostname()} 0\n")  # alive
    waiting = _build_lock.build_lock(tmp_path, timeout=0.5, poll=0.05)
    with (caplog.at_level(logging.WARNING, logger="spikebench"),
          pytest.raises(_build_lock.BuildLockTimeout), waiting):
        pass
    assert "waiting up to" in caplog.text and str(lock) in caplog.text
    assert lock.exists()  # a live holder's lock is not touched


def test_relative_build_dir_becomes_an_absolute_lock_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with _build_lock.build_lock("rel") as held:
        assert held.is_absolute() and held.parent == tmp_path / "rel"


def test_old_lock_is_stale_even_if_holder_unknown(tmp_path):
    lock = tmp_path / _build_lock.LOCK_NAME
    lock.write_text("garbage")
    old = time.time() - 2 * _build_lock.STALE_LOCK_SECONDS
    os.utime(lock, (old, old))
    assert _build_lock.remove_stale_lock(tmp_path) and not lock.exists()


def test_cache_key_depends_on_source_content_and_install_path(tmp_path, monkeypatch):
    name = _lif_kernels._extension_name()
    copy = tmp_path / "lif_kernels.cpp"
    copy.write_bytes(_lif_kernels.SOURCE.read_bytes())
    monkeypatch.setattr(_lif_kernels, "SOURCE", copy)
    other_install = _lif_kernels._extension_name()
    copy.write_bytes(copy.read_bytes() + b"\n// changed\n")
    changed = _lif_kernels._extension_name()
    assert len({name, other_install, changed}) == 3
    assert _lif_kernels._build_directory(name).is_absolute()
