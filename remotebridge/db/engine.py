"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production).

SQLite is opened in WAL mode with a busy timeout, and every *write* transaction
starts with ``BEGIN IMMEDIATE``: the write lock is taken up front, so two cron
processes never both read, then both try to upgrade to a write lock and deadlock
("database is locked"). Reads use a plain deferred ``BEGIN`` and never block writers.
PostgreSQL needs nothing special: row locks and ``FOR UPDATE SKIP LOCKED`` do the work.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session

from remotebridge.db.url import bad_url, mask_url, parse_url, scrub
from remotebridge.errors import ConfigError, DatabaseUnavailable

BUSY_TIMEOUT_MS = 30_000
_NOT_TRANSIENT = ("does not exist", "authentication failed", "no password supplied")
_READ_ONLY = "rb_read_only"
#: the masked URL text of each engine, for messages
_SHOWN: weakref.WeakKeyDictionary[Engine, tuple[str, str]] = weakref.WeakKeyDictionary()


def make_engine(url: str, *, echo: bool = False, create_folder: bool = False,
                source: str = "") -> Engine:
    """Create an engine for ``url`` with the per-dialect settings described above.

    A SQLite file's folder must exist unless ``create_folder`` (only the default
    location is created: a typo in ``--db`` must not leave folders behind). ``source``
    names where the URL came from, for the error messages.
    """
    parsed = parse_url(url, source)
    try:
        engine = _make_engine(parsed, echo, create_folder)
    except (ArgumentError, NoSuchModuleError, ImportError) as exc:
        # the reason names a dialect or a module, never the URL itself
        raise bad_url(url, source, f"({exc})") from exc
    _SHOWN[engine] = (mask_url(url), url)
    return engine


def shown_url(engine: Engine) -> str:
    """The URL the engine was made from, as it may be printed (password masked).

    Masking the text as given, not SQLAlchemy's re-rendering of it, hides a password
    even when it holds an unescaped '@' or '/' that the parser took for the host.
    """
    return _SHOWN[engine][0] if engine in _SHOWN else mask_url(engine.url)


def _make_engine(parsed: URL, echo: bool, create_folder: bool) -> Engine:
    if parsed.drivername == "postgresql":
        # The design card names psycopg2; SQLAlchemy 2.1 would otherwise pick psycopg 3.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    url = parsed.render_as_string(hide_password=False)
    if parsed.get_backend_name() == "sqlite":
        database = sqlite_file(parsed)
        if database is not None:
            _sqlite_folder(database, parsed, create_folder)
        return _sqlite_engine(url, echo)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 10}
    return create_engine(url, echo=echo, **kwargs)


def sqlite_file(url: URL) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(str(url.database)).expanduser()


def _sqlite_folder(database: Path, url: URL, create: bool) -> None:
    """Create the database's folder, or refuse a folder that is not there."""
    folder = database.parent
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    elif not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(f"folder {folder} of database {mask_url(url)} {what}",
                          hint=f"create it (mkdir -p {folder}), or fix the database URL")


def _sqlite_engine(url: str, echo: bool) -> Engine:
    engine = create_engine(
        url, echo=echo, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "isolation_level": None}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # The driver is in autocommit mode (isolation_level=None) so that we, not
        # pysqlite, decide how each transaction begins.
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


@contextlib.contextmanager
def write_session(engine: Engine) -> Iterator[Session]:
    """A session in one write transaction: committed on success, rolled back on error."""
    with _translate_errors(engine), Session(engine, expire_on_commit=False) as session, \
            session.begin():
        yield session


@contextlib.contextmanager
def read_session(engine: Engine) -> Iterator[Session]:
    """A session for reading only (never takes SQLite's write lock)."""
    bound = engine.execution_options(**{_READ_ONLY: True})
    with _translate_errors(engine), Session(bound, expire_on_commit=False) as session, \
            session.begin():
        yield session


@contextlib.contextmanager
def _translate_errors(engine: Engine) -> Iterator[None]:
    """Turn 'cannot connect' and 'locked' into DatabaseUnavailable (exit 75)."""
    try:
        yield
    except OperationalError as exc:
        msg = str(exc.orig) if exc.orig is not None else str(exc)
        msg = scrub(msg, _SHOWN[engine][1]) if engine in _SHOWN else msg
        where = shown_url(engine)
        if any(word in msg for word in _NOT_TRANSIENT):
            # retrying will not help: the database or the role is simply wrong
            raise ConfigError(f"database {where}: {msg.strip().splitlines()[0]}",
                              hint="create the database or fix --db / [database] url") from exc
        raise DatabaseUnavailable(
            f"database {where} is unavailable: {msg.strip().splitlines()[0]}",
            hint="check that the database is running and reachable, then retry",
        ) from exc
