"""Storage URLs on a shared disk: a password is never shown, in part or whole, whatever it
holds; a storage that cannot work is refused before the results folder is made; a storage
that goes away mid-study is one line, and the rerun resumes.

Issue 26, items 6 and 9. docs/guarantees.md: "What is never stored" and "What survives a
crash".
"""

from __future__ import annotations

import pytest
from spec_text import tiny_spec

from spikebench.cli import main
from spikebench.harness.storage import normalise, redact

PASSWORD = "p@ss@w0rd#1"
#: The password as a user types it, un-encoded, into a URL.
RAW = f"postgresql+psycopg://bob:{PASSWORD}@127.0.0.1:1/studies"


def test_an_unencoded_at_sign_in_a_password_is_read_as_part_of_it():
    """Issue 26, item 6: with ``@`` inside a password, the part after the first ``@`` was
    taken for the host and shown in messages and protocol.json."""
    assert normalise(RAW) == "postgresql+psycopg://bob:p%40ss%40w0rd#1@127.0.0.1:1/studies"
    assert normalise(normalise(RAW)) == normalise(RAW)  # percent-encoded ones stay as they are
    assert redact(RAW) == "postgresql+psycopg://bob:***@127.0.0.1:1/studies"
    for url in ("journal:/a@b/optuna.journal", "sqlite:////tmp/a@b.db",
                "postgresql://bob:s3cret@db/x?application_name=a@b"):
        assert normalise(url) == url


def test_a_storage_that_cannot_be_reached_is_refused_before_the_folder_is_made(
        tmp_path, feature_table, capsys):
    """Issue 26, item 6: the folder was bound and the data generated before the storage
    failed, and the message showed the password's tail. Now one line, nothing created."""
    spec = tmp_path / "s.toml"
    spec.write_text(tiny_spec(feature_table))
    code = main(["study", "run", str(spec), "--out", str(tmp_path / "run"), "--storage", RAW])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "cannot connect to the Optuna storage postgresql+psycopg://bob:***@127.0.0.1:1" in err
    for part in ("ss@w0rd", "w0rd", "p%40ss", "@ss"):
        assert part not in err
    assert not (tmp_path / "run").exists()  # not bound, no data generated


def test_a_storage_lost_mid_study_is_one_line_and_the_rerun_resumes(tmp_path, feature_table,
                                                                    monkeypatch, capsys):
    """The chain a stopped PostgreSQL server produced: the driver's OperationalError while
    Optuna told the trial's result, another while it read the trial back, then Optuna's own
    ``UnboundLocalError``. The user sees one line naming the storage (password hidden)."""
    import optuna.study._optimize as optimize
    from sqlalchemy.exc import OperationalError

    spec = tmp_path / "s.toml"
    spec.write_text(tiny_spec(feature_table, split={"repeats": 1}, search={
        "trials": 2, "heartbeat_interval": 1, "grace_period": 2, "poll_seconds": 0.1},
        space_surrogate={"epochs": 2}))
    gone = OperationalError("UPDATE trials ...", {}, Exception(
        "server closed the connection unexpectedly"))

    def tell(*args, **kwargs):
        raise gone

    with monkeypatch.context() as patch:
        patch.setattr(optimize, "_tell_with_warning", tell)
        patch.setattr("optuna.storages.JournalStorage.get_trial",
                      lambda *a, **k: (_ for _ in ()).throw(gone))
        code = main(["study", "run", str(spec), "--out", str(tmp_path / "run"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "lost the Optuna storage journal:" in err and "Traceback" not in err
    assert "server closed the connection unexpectedly" in err and "rerun" in err
    assert main(["study", "run", str(spec), "--out", str(tmp_path / "run"), "--quiet"]) == 0


@pytest.mark.postgres
def test_a_postgresql_study_resumes_after_its_server_comes_back(postgres_url, tmp_path,
                                                               feature_table):
    """With the server of ``$SPIKEBENCH_TEST_POSTGRES_URL``: the connection check passes and
    a study runs; its URL is written redacted."""
    spec = tmp_path / "s.toml"
    spec.write_text(tiny_spec(feature_table, split={"repeats": 1}, search={"trials": 1},
                              space_surrogate={"epochs": 2}))
    assert main(["study", "run", str(spec), "--out", str(tmp_path / "run"), "--quiet",
                 "--storage", postgres_url]) == 0
    assert ":***@" in (tmp_path / "run" / "protocol.json").read_text()
