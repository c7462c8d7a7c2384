"""Waits for other workers (a refit they hold, trials they run) are never silent."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

from spikebench.harness import progress
from spikebench.harness.refit import run_refits


class _HeldFolder:
    """A results folder whose claim on every job is held elsewhere for the first ``busy``
    attempts."""

    def __init__(self, busy: int) -> None:
        self.busy = busy

    @contextlib.contextmanager
    def claim(self, job: str):
        self.busy -= 1
        yield self.busy < 0


def test_waiting_for_a_refit_held_elsewhere_says_what_it_waits_for(monkeypatch, capsys):
    monkeypatch.setattr(progress, "WAIT_NOTICE", 0.0)
    fold = SimpleNamespace(key="r0")
    plan = SimpleNamespace(skip_reason="", folds=(fold,), key="custom__surrogate",
                           label="custom/surrogate")
    done = []
    refitter = SimpleNamespace(folder=_HeldFolder(busy=3),
                               is_done=lambda p, f: done.append((p.key, f.key)) or True)
    run_refits(refitter, [plan], poll_seconds=0.0)
    err = capsys.readouterr().err
    assert done == [("custom__surrogate", "r0")]  # run once the claim was free
    lines = [ln for ln in err.splitlines() if "waiting" in ln]
    assert lines, err
    assert all(ln.startswith("spikebench: waiting ") for ln in lines)
    assert "1 refit(s) another worker is running (custom/surrogate r0)" in lines[0]


def test_a_short_wait_prints_nothing(monkeypatch, capsys):
    fold = SimpleNamespace(key="r0")
    plan = SimpleNamespace(skip_reason="", folds=(fold,), key="k", label="custom/surrogate")
    refitter = SimpleNamespace(folder=_HeldFolder(busy=2), is_done=lambda p, f: True)
    run_refits(refitter, [plan], poll_seconds=0.0)
    assert "waiting" not in capsys.readouterr().err


def test_a_tuning_wait_names_the_trials_and_the_grace_period(monkeypatch, capsys):
    from spikebench.harness.tuning import _waiting_for

    monkeypatch.setattr(progress, "WAIT_NOTICE", 0.0)
    running = [SimpleNamespace(number=n, user_attrs={"worker": f"host:{n}"}) for n in (3, 4)]
    notice = progress.WaitNotice()
    notice.tick(_waiting_for("custom/surrogate", running, 6))  # the wait starts: silent
    assert capsys.readouterr().err == ""
    notice.tick(_waiting_for("custom/surrogate", running, 6))
    line = capsys.readouterr().err.strip()
    assert line.startswith("spikebench: custom/surrogate: waiting ")
    assert "#3 (host:3), #4 (host:4)" in line and "after 6 s" in line
    notice.reset()
    notice.tick(_waiting_for("custom/surrogate", running, 6))
    assert capsys.readouterr().err == ""  # a new wait starts silent again
