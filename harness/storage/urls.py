"""Storage URLs: which storage a study uses, how URLs are checked, how they are shown.

- ``journal:PATH`` (default: ``optuna.journal`` in the results folder) — a file; workers on
  one machine share it.
- ``sqlite:///PATH`` — one file, one machine.
- any other SQLAlchemy URL (``postgresql+psycopg://user:pw@host/db``) — many workers on many
  machines.

Passwords never leave this module: :func:`redact` hides them with SQLAlchemy's own URL parser
(which handles ``#``, ``?``, ``/`` and ``@`` in passwords), and only redacted URLs are printed
or written.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from spikebench.errors import SpecError

JOURNAL = "journal:"


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print and to write to files)."""
    if url.startswith(JOURNAL) or "://" not in url:
        return url
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "<storage url (unparsable, hidden)>"
    return parsed.render_as_string(hide_password=True)


def storage_url(default_journal: Path, spec_storage: str = "", override: str | None = None
                ) -> str:
    """The storage to use: ``--storage``, else ``$SPIKEBENCH_STORAGE``, else the spec's
    ``[search].storage``, else the journal file ``default_journal`` (absolute)."""
    return (override or os.environ.get("SPIKEBENCH_STORAGE") or spec_storage
            or f"{JOURNAL}{default_journal.resolve()}")


def journal_path(url: str) -> Path:
    """The absolute journal file of a ``journal:PATH`` URL (checked: not a folder, its folder
    exists or can be made)."""
    raw = url.removeprefix(JOURNAL)
    if not raw:
        raise SpecError("storage 'journal:': give a file path, e.g. journal:/data/optuna.journal")
    path = Path(raw).expanduser().absolute()
    if path.is_dir():
        raise SpecError(f"storage {url}: is a folder; give a journal file path inside it, e.g. "
                        f"journal:{path / 'optuna.journal'}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpecError(f"storage {url}: cannot create its folder {path.parent} "
                        f"({exc.strerror}); give a writable path") from None
    return path


def check_url(url: str) -> None:
    """Refuse an RDB URL that cannot work before a driver sees it: unparsable, a non-integer
    or out-of-range port, an SQLite file in a folder that does not exist."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        port = parsed.port
    except (ArgumentError, ValueError) as exc:
        what = "the port must be an integer" if "int()" in str(exc) else "unparsable"
        raise SpecError(f"storage {redact(url)}: {what}; write it as "
                        "dialect+driver://user:password@host:port/database "
                        "(or journal:PATH)") from None
    if port is not None and not 0 < port < 65536:
        raise SpecError(f"storage {redact(url)}: port {port} is out of range (1-65535)")
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        folder = Path(parsed.database).expanduser().absolute().parent
        if not folder.is_dir():
            raise SpecError(f"storage {redact(url)}: the folder {folder} does not exist; "
                            "create it or give an SQLite path in an existing folder")


def _redact_text(text: str, url: str) -> str:
    """``text`` with the password of ``url`` removed wherever it appears."""
    from sqlalchemy.engine import make_url

    with contextlib.suppress(Exception):
        password = make_url(url).password
        if password:
            text = text.replace(str(password), "***")
    return text
