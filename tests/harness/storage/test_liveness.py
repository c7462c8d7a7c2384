"""A resume never waits forever and never reads a damaged journal as valid.

The journal-file storage (the default) has heartbeats, a kernel lock and torn-line repair
(:mod:`spikebench.harness.storage.journal`): a RUNNING trial left by a worker on another host (a
restarted container) is failed and re-queued after the grace period, a stale Optuna symlink
lock (even a dangling relative one) is cleared, a lock held by a hung process is waited for a
bounded time with a message, a torn last line is cut off (its bytes kept) and a failed append is
rolled back.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
from spec_text import tiny_spec

from spikebench.errors import SpecError
from spikebench.harness.storage import open_storage
from spikebench.harness.storage.journal import KernelJournalLock, StorageError

TINY = tiny_spec("{table}")
FAST = TINY.replace("[search]\ntrials = 3",
                    "[search]\ntrials = 3\nheartbeat_interval = 1\ngrace_period = 2")


def write_spec(tmp_path: Path, table: Path, text: str = TINY) -> Path:
    spec = tmp_path / "tiny.toml"
    spec.write_text(text.format(table=table))
    return spec


def _study(path: Path, name: str = "s") -> tuple:
    import optuna

    storage = open_storage(f"journal:{path}", heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)
    return storage, study


def _add_complete(study, n: int) -> None:
    import optuna

    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    for i in range(n):
        study.add_trial(optuna.trial.create_trial(params={"x": i / 10}, distributions=dist,
                                                  value=float(i)))


def test_a_silent_trial_of_another_host_is_failed_and_requeued(tmp_path, feature_table):
    """The resume runs under another host name: the orphan's ``host:pid`` cannot be checked,
    its missing heartbeat fails it after the grace period and its parameters run again."""
    import optuna
    from optuna.trial import TrialState

    from spikebench.harness.study import run_study

    spec = write_spec(tmp_path, feature_table, FAST)
    out = run_study(spec, tmp_path / "run", trials=1, progress=False)
    storage = open_storage(f"journal:{out / 'optuna.journal'}", heartbeat_interval=1,
                           grace_period=2)
    study = optuna.load_study(study_name="tiny/custom/surrogate", storage=storage)
    orphan = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True)})
    orphan.set_user_attr("worker", "a-container-that-is-gone:1")
    run_study(spec, out, trials=2, progress=False)
    trials = study.get_trials(deepcopy=False)
    assert TrialState.RUNNING not in [t.state for t in trials]
    assert trials[orphan.number].state == TrialState.FAIL
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == orphan.number]
    assert retried and retried[0].params["lr"] == trials[orphan.number].params["lr"]
    assert sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials) >= 2


def test_heartbeats_keep_a_live_trial_and_fail_a_silent_one(tmp_path):
    import time

    from optuna.trial import TrialState

    storage, study = _study(tmp_path / "j.journal")
    live, silent = study.ask(), study.ask()
    storage.record_heartbeat(live._trial_id)
    storage.record_heartbeat(silent._trial_id)
    time.sleep(2.5)
    storage.record_heartbeat(live._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == [silent._trial_id]
    from spikebench.harness.storage import fail_stale_trials

    fail_stale_trials(study)
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[live.number] == TrialState.RUNNING
    assert states[silent.number] == TrialState.FAIL
    assert TrialState.WAITING in states.values()  # the silent trial's retry


@pytest.mark.parametrize("skew", [3600.0, -3600.0])
def test_heartbeat_ages_do_not_depend_on_the_checking_machines_clock(tmp_path, monkeypatch,
                                                                    skew):
    """Workers sharing a journal on a network disk need not agree on the time: a checker
    whose clock is an hour off neither fails a live trial (clock ahead) nor keeps a silent one
    (clock behind). Ages are measured on the file system's clock, which stamped the beats."""
    import time

    storage, study = _study(tmp_path / "j.journal")
    live, silent = study.ask(), study.ask()
    storage.record_heartbeat(live._trial_id)
    storage.record_heartbeat(silent._trial_id)
    beats = tmp_path / "j.journal.heartbeats"
    old = os.stat(beats / str(silent._trial_id)).st_mtime - 30  # silent for 30 s
    os.utime(beats / str(silent._trial_id), (old, old))
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + skew)  # this machine's clock is off
    assert storage._get_stale_trial_ids(study._study_id) == [silent._trial_id]


def test_a_torn_last_journal_line_is_cut_and_kept(tmp_path, capsys):
    path = tmp_path / "j.journal"
    _, study = _study(path)
    _add_complete(study, 3)
    good = path.read_bytes()
    with open(path, "ab") as fh:
        fh.write(b'{"op_code": 5, "worker_id": "x", "trial_id": 0, "sta')  # a full disk
    _, again = _study(path)
    import json

    repaired = path.read_bytes()
    assert repaired.startswith(good) and all(json.loads(x) for x in repaired.splitlines())
    assert "repaired the trial journal" in capsys.readouterr().err
    kept = list(tmp_path.glob("j.journal.torn-*"))
    assert len(kept) == 1 and kept[0].read_bytes().startswith(b'{"op_code": 5')
    _add_complete(again, 1)  # appends after the repair read back
    assert len(_study(path)[1].trials) == 4


def test_a_torn_line_another_writer_left_is_cut_before_the_next_append(tmp_path):
    path = tmp_path / "j.journal"
    _, study = _study(path)
    with open(path, "ab") as fh:
        fh.write(b'{"op_code": 4, "tr')  # a writer died mid-append after we opened
    _add_complete(study, 2)
    assert len(_study(path)[1].trials) == 2


def test_a_failed_append_is_rolled_back(tmp_path, monkeypatch):
    path = tmp_path / "j.journal"
    _, study = _study(path)
    _add_complete(study, 1)
    size = path.stat().st_size

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("spikebench.harness.storage.journal.os.fsync", full)
    with pytest.raises(StorageError, match="disk is full"):
        _add_complete(study, 1)
    monkeypatch.undo()
    assert path.stat().st_size == size
    assert len(_study(path)[1].trials) == 1


def test_damage_inside_the_journal_stops_with_how_to_recover(tmp_path):
    path = tmp_path / "j.journal"
    _, study = _study(path)
    _add_complete(study, 2)
    lines = path.read_bytes().splitlines(keepends=True)
    lines.insert(2, b"\x00\x00garbage\n")
    path.write_bytes(b"".join(lines))
    with pytest.raises(StorageError, match=r"damaged at line 3 .*truncate -s \d+"):
        _study(path)


def test_a_dangling_relative_optuna_lock_is_cleared(tmp_path, monkeypatch):
    """What a SIGKILL during an append with a relative --out left: the symlink lock whose
    relative target dangles made Optuna's stale-lock recovery spin forever."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "run" / "optuna.journal"
    path.parent.mkdir()
    os.symlink("run/optuna.journal", path.with_name("optuna.journal.lock"))
    _, study = _study(path)
    _add_complete(study, 1)
    assert not path.with_name("optuna.journal.lock").is_symlink()


def test_waiting_for_a_hung_lock_holder_is_bounded(tmp_path):
    path = tmp_path / "j.journal"
    code = ("import time; from filelock import FileLock; "
            f"lock = FileLock({str(path) + '.flock'!r}); lock.acquire(); "
            "print('held', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StorageError, match=r"j\.journal\.flock.*held by another live"):
            KernelJournalLock(path, timeout=1).acquire()
    finally:
        holder.kill()
        holder.wait()
    lock = KernelJournalLock(path, timeout=1)  # the kernel released it with its holder
    assert lock.acquire()
    lock.release()


@pytest.mark.parametrize(("line", "expected"), [
    ('epochs = "abc"', r"epochs: expected an integer"),
    ("epochs = 0", r"epochs: 0 is out of range"),
    ("hidden = 0", r"hidden: 0 is out of range"),
    ("hidden = 1000000", r"hidden: 1000000 is out of range"),
    ("batch_size = 0", r"batch_size: 0 is out of range"),
    ("patience = -1", r"patience: -1 is out of range"),
    ("steps = {low = 8, high = 100000}", r"steps: 100000 is out of range"),
    ("hidden = {low = 16.0, high = 64.0}", r"hidden: expected an integer"),
    ("lr = -0.1", r"lr: must be > 0"),
    ('lr = "fast"', r"lr: expected a number"),
    ("beta = {low = 0.5, high = 2.0}", r"beta: must be between 0 and 1"),
    ('encoding = "bogus"', r"encoding: 'bogus' is not one of"),
    ('encoding = {choices = ["direct", "morse"]}', r"encoding: 'morse' is not one of"),
    ("mixed_steps = 1", r"mixed_steps: expected true/false"),
    ("weight_decay = -1e-4", r"weight_decay: must be >= 0"),
])
def test_space_values_are_checked_before_any_work(tmp_path, feature_table, line, expected):
    from spikebench.harness.spec import load_spec

    key = line.split(" ")[0]
    text = "\n".join(ln for ln in TINY.splitlines() if not ln.startswith(f"{key} ="))
    escaped = line.replace("{", "{{").replace("}", "}}")  # write_spec formats the text
    spec = write_spec(tmp_path, feature_table, text + f"\n{escaped}\n")
    with pytest.raises(SpecError, match=r"\[space\.surrogate\]\." + expected):
        load_spec(spec)


def test_float_parameters_take_integers(tmp_path, feature_table):
    from spikebench.harness.space import Float, merge_space

    space = merge_space({"lr": Float(1e-3, 1e-2)}, {"lr": {"low": 1, "high": 2}}, "[space.x]")
    assert space["lr"] == Float(1.0, 2.0)
