"""Storage URLs: which storage a study uses, how URLs are checked, how they are shown.

- ``journal:PATH`` (default: ``optuna.journal`` in the results folder) — a file; workers on
  one machine share it.
- ``sqlite:///PATH`` — one file, one machine.
- any other SQLAlchemy URL (``postgresql+psycopg://user:pw@host/db``) — many workers on many
  machines.

Passwords never leave this module: :func:`redact` hides them with SQLAlchemy's own URL parser
(which handles ``#``, ``?`` and ``/`` in passwords), and only redacted URLs are printed or
written. SQLAlchemy ends the password at its first ``@``, so an un-encoded ``@`` in a password
(``user:p@ss@host``) would make the rest of it the host name, printed in every error:
:func:`normalise` encodes every ``@`` before the one that starts the host as ``%40`` first.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

from spikebench.errors import SpecError

JOURNAL = "journal:"


#: What follows the ``@`` that starts the host: host[:port], then ``/``, ``?`` or the end.
_HOST = re.compile(r"[^/?#@\s]*(?:[/?].*)?", re.DOTALL)


def normalise(url: str) -> str:
    """``url`` with every ``@`` of its user name and password percent-encoded (``%40``), so
    that ``user:p@ss@host`` means the password ``p@ss`` (SQLAlchemy would read ``p`` and the
    host ``ss@host``); everything else, percent-encoded passwords included, is left as it is."""
    if url.startswith(JOURNAL) or "://" not in url:
        return url
    scheme, _, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or "@" not in userinfo or not _HOST.fullmatch(host):
        return url
    if not any(c in host for c in "/?") and any(c in userinfo for c in "/?"):
        return url  # the last "@" lies in the database name or the query: left as typed
    return f"{scheme}://{userinfo.replace('@', '%40')}@{host}"


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to print and to write to files)."""
    if url.startswith(JOURNAL) or "://" not in url:
        return url
    url = normalise(url)
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
    return normalise(override or os.environ.get("SPIKEBENCH_STORAGE") or spec_storage
                     or f"{JOURNAL}{default_journal.resolve()}")


def journal_path(url: str, *, create: bool = True) -> Path:
    """The absolute journal file of a ``journal:PATH`` URL (checked: not a folder, its folder
    exists or — with ``create`` — can be made)."""
    raw = url.removeprefix(JOURNAL)
    if not raw:
        raise SpecError("storage 'journal:': give a file path, e.g. journal:/data/optuna.journal")
    path = Path(raw).expanduser().absolute()
    if path.is_dir():
        raise SpecError(f"storage {url}: is a folder; give a journal file path inside it, e.g. "
                        f"journal:{path / 'optuna.journal'}")
    try:
        if create:
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

    url = normalise(url)
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
    """``text`` with the password of ``url`` removed wherever it appears (as written and
    percent-encoded; a password shorter than 6 characters only where it stands alone, so that
    ``p`` does not turn ``psycopg`` into ``***syco***g``)."""
    from urllib.parse import quote

    from sqlalchemy.engine import make_url

    with contextlib.suppress(Exception):
        password = str(make_url(normalise(url)).password or "")
        for form in {password, quote(password, safe=""), normalise(url).partition("://")[2]
                     .rpartition("@")[0].partition(":")[2]} - {""}:
            if len(form) >= 6:
                text = text.replace(form, "***")
            else:
                text = re.sub(rf"(?<![A-Za-z0-9]){re.escape(form)}(?![A-Za-z0-9])", "***", text)
    return text


def probe(url: str) -> None:
    """Connect once to an RDB storage (nothing is created), so that an unreachable server, a
    wrong password or a missing driver is refused before the results folder is made."""
    if url.startswith((JOURNAL, "sqlite")):
        return
    from sqlalchemy import create_engine

    url = normalise(url)
    try:
        engine = create_engine(url)
        try:
            with engine.connect():
                pass
        finally:
            engine.dispose()
    except Exception as exc:  # driver and sqlalchemy errors: one line, password hidden
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise SpecError(
            f"cannot connect to the Optuna storage {redact(url)}: {type(exc).__name__}: "
            f"{_redact_text(first, url)}. Check the URL (percent-encode special characters "
            "of the password), that the server is running and, for PostgreSQL, that `pip "
            "install spikebench[postgres]` installed psycopg") from None
