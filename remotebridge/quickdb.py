"""The cron tick's cheap question, asked with the database driver alone.

Most ``remotetool exec``, ``poll``, ``prepare`` and ``definebyquery`` ticks from cron
find nothing to do.
Importing SQLAlchemy to learn that costs more than the rest of the tick together, so
this module asks the same questions as :mod:`remotebridge.due` (and the schema
revision check of :mod:`remotebridge.db.migrate`) with :mod:`sqlite3` or
:mod:`psycopg2` directly, from the same database URL.

It only ever answers "certainly nothing to do" (:attr:`Due.NOTHING`). Everything else
is :attr:`Due.MAYBE`: work, an unusual URL form, a driver error, a schema that is not
current, a run id that names no run. The caller then takes the full path, which asks
again through SQLAlchemy and reports every problem exactly as before (one-line
errors, exit codes): this module never raises for the database's sake.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, unquote

if TYPE_CHECKING:
    from remotebridge.config import Config

#: The newest migration in remotebridge/db/migrations/versions
#: (tests/unit/test_schema.py checks it; remotebridge.db.migrate re-exports it).
SCHEMA_REVISION = "runwire"

#: the connect timeout the engine gives PostgreSQL (remotebridge.db.engine)
PG_CONNECT_TIMEOUT = 10
#: SQLite's busy timeout, as the engine's (seconds)
SQLITE_TIMEOUT = 30.0

# SQLAlchemy's own URL pattern (sqlalchemy.engine.url._parse_url), so that a URL means
# the same database here as there; anything it does not match is left to SQLAlchemy.
_URL = re.compile(
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)
_SQLITE = ("sqlite", "sqlite+pysqlite")
_POSTGRESQL = ("postgresql", "postgresql+psycopg2")


class Due(enum.Enum):
    """The answer to "is there work for this tick?"."""

    NOTHING = "nothing"
    """Certainly nothing to do: the tick may end here."""

    MAYBE = "maybe"
    """Work, or a question this module leaves to the full path."""


class Backend(enum.Enum):
    """The databases this module talks to directly."""

    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


@dataclass(frozen=True)
class QuickUrl:
    """A database URL reduced to what the driver's ``connect`` needs."""

    backend: Backend
    path: Path | None = None
    """The SQLite file (absolute, as pysqlite opens it)."""

    params: dict[str, Any] = field(default_factory=dict)
    """psycopg2.connect keyword arguments (as SQLAlchemy's psycopg2 dialect passes them)."""


def parse(text: str) -> QuickUrl | None:
    """``text`` as a :class:`QuickUrl`, or None when it is a form left to SQLAlchemy
    (bad URLs, other drivers, in-memory or ``~`` SQLite, repeated query keys...)."""
    m = _URL.match(text)
    if m is None:
        return None
    parts = m.groupdict()
    query = parse_qsl(parts["query"]) if parts["query"] is not None else []
    if len({k for k, _ in query}) != len(query):
        return None  # multi-host and other list values: SQLAlchemy's business
    if parts["name"] in _SQLITE:
        return _sqlite(parts, query)
    if parts["name"] in _POSTGRESQL:
        return _postgresql(parts, dict(query))
    return None


def _sqlite(parts: dict[str, str | None], query: list[tuple[str, str]]) -> QuickUrl | None:
    if query or any(parts[k] for k in ("username", "password", "ipv4host", "ipv6host",
                                       "port")):
        return None
    database = unquote(parts["database"] or "")
    if database in ("", ":memory:") or database.startswith("~"):
        return None
    return QuickUrl(Backend.SQLITE, path=Path(database).absolute())


def _postgresql(parts: dict[str, str | None], query: dict[str, str]) -> QuickUrl | None:
    port = parts["port"]
    if port and not port.isdigit():
        return None
    params: dict[str, Any] = {}
    for key, name in (("username", "user"), ("password", "password"),
                      ("database", "dbname")):
        if parts[key]:
            params[name] = unquote(parts[key] or "")
    host = parts["ipv4host"] or parts["ipv6host"]
    if host:
        params["host"] = host
    if port and int(port):
        params["port"] = int(port)
    params.update(query)
    params["connect_timeout"] = PG_CONNECT_TIMEOUT
    return QuickUrl(Backend.POSTGRESQL, params=params)


def exec_due(config: Config, *, remote_id: int | None = None,
             label: str | None = None) -> Due:
    """What :func:`remotebridge.due.pending_due` would answer, NOTHING only when certain."""
    def ask(query: Query) -> Due:
        if query.rows(_selection("pending", remote_id, label, "1")):
            return Due.MAYBE
        if remote_id is not None:
            return Due.MAYBE  # that run may not exist: the full path says so
        return Due.NOTHING

    return _ask(config, ask)


def poll_due(config: Config, *, remote_id: int | None = None, label: str | None = None,
             force: bool = False) -> Due:
    """What :func:`remotebridge.due.poll_due` would answer, NOTHING only when certain."""
    now = datetime.now(UTC).replace(tzinfo=None)

    def ask(query: Query) -> Due:
        rows = query.rows(_selection("run", remote_id, label, "site, last_poll"))
        if force and rows or remote_id is not None and not rows:
            return Due.MAYBE
        for site, last_poll in rows:
            if _poll_due(config, site, last_poll, now):
                return Due.MAYBE
        return Due.NOTHING

    return _ask(config, ask)


def _poll_due(config: Config, site: str | None, last_poll: Any, now: datetime) -> bool:
    """Whether one run is due a poll (True when in any doubt)."""
    from remotebridge.errors import ConfigError

    if last_poll is None:
        return True
    if isinstance(last_poll, str):  # SQLite keeps SQLAlchemy's ISO text
        try:
            last_poll = datetime.fromisoformat(last_poll)
        except ValueError:
            return True
    if not isinstance(last_poll, datetime) or last_poll.tzinfo is not None:
        return True
    try:
        interval = config.site(site or None).poll_interval
    except ConfigError:
        return True  # the full path reports it
    return bool(last_poll <= now - timedelta(seconds=interval))


#: stage -> (its stage-run table, that table's id column): the names of
#: remotebridge.db.pipeline.STAGE_RUN_TABLES (tests/unit/test_quickdb.py keeps them equal)
STAGE_TABLES = {"chip": ("chipRun", "chip_id"), "cam": ("camRun", "cam_id"),
                "warp": ("warpRun", "warp_id"), "stack": ("stackRun", "stack_id")}
#: a stage run's pipeline state when it is ready (remotebridge.db.pipeline.STAGE_NEW)
STAGE_NEW = "new"


def define_due(config: Config, *, stage: str, label: str) -> Due:
    """What :func:`remotebridge.define.define_by_query` would find: NOTHING only when no
    stage run of ``stage`` and ``label`` is ready (state new, in no remote run) and the
    label is known to some stage (an unknown label is the full path's error)."""
    if stage not in STAGE_TABLES:
        return Due.MAYBE

    def ask(query: Query) -> Due:
        table, pk = STAGE_TABLES[stage]
        ready = Selection(
            f'SELECT 1 FROM "{table}" r WHERE r.label = ? AND r.state = ? AND NOT EXISTS '
            f'(SELECT 1 FROM "remoteComponent" c WHERE c.stage = ? AND c.stage_id = r.{pk}) '
            "LIMIT 1", (label, STAGE_NEW, stage))
        if query.rows(ready):
            return Due.MAYBE
        for other, _pk in STAGE_TABLES.values():
            if query.rows(Selection(f'SELECT 1 FROM "{other}" WHERE label = ? LIMIT 1',
                                    (label,))):
                return Due.NOTHING
        return Due.MAYBE  # no stage run has the label: the full path says so

    return _ask(config, ask, auth_matters=False)


def prepare_due(config: Config, *, label: str | None = None) -> Due:
    """What ``remotetool prepare --label`` would select: NOTHING only when no run of the
    label (or none at all) is in state new. A named run is the full path's."""
    def ask(query: Query) -> Due:
        return Due.MAYBE if query.rows(_selection("new", None, label, "1")) else Due.NOTHING

    return _ask(config, ask, auth_matters=False)


@dataclass(frozen=True)
class Selection:
    """A bound query: SQL with ``?`` placeholders and its parameters."""

    sql: str
    params: tuple[Any, ...]


def _selection(state: str, remote_id: int | None, label: str | None,
               columns: str) -> Selection:
    """The runs in ``state`` of one id or one label (statemachine.candidates' WHERE)."""
    where, params = ["state = ?"], [cast(Any, state)]
    if label is not None:
        where.append("label = ?")
        params.append(label)
    if remote_id is not None:
        where.append("remote_id = ?")
        params.append(remote_id)
    return Selection(f'SELECT {columns} FROM "remoteRun" WHERE {" AND ".join(where)} '
                     "ORDER BY remote_id", tuple(params))


class Query:
    """One open read transaction; :meth:`rows` runs a :class:`Selection`."""

    def __init__(self, cursor: Any, placeholder: str) -> None:
        self.cursor = cursor
        self.placeholder = placeholder

    def rows(self, sel: Selection) -> Sequence[tuple[Any, ...]]:
        """All rows of ``sel`` (parameters bound, never formatted into the SQL)."""
        self.cursor.execute(sel.sql.replace("?", self.placeholder), sel.params)
        return list(self.cursor.fetchall())


_CURRENT = Selection("SELECT version_num FROM alembic_version", ())
_AUTH = Selection('SELECT 1 FROM "remoteRun" WHERE state = ?', ("auth",))


def _ask(config: Config, question: Callable[[Query], Due], *,
         auth_matters: bool = True) -> Due:
    """Run ``question`` after the schema check and (for exec and poll, which look at a
    site with runs in ``auth`` every tick) the ``auth`` check; MAYBE on any doubt."""
    if config.database.echo:
        return Due.MAYBE  # echoing SQL is the engine's job
    url = parse(config.database.effective_url())
    if url is None:
        return Due.MAYBE
    try:
        with _connect(url) as query:
            if query is None or query.rows(_CURRENT) != [(SCHEMA_REVISION,)]:
                return Due.MAYBE
            if auth_matters and query.rows(_AUTH):
                return Due.MAYBE
            return question(query)
    except Exception:  # noqa: BLE001 - any driver error: the full path reports it
        return Due.MAYBE


@contextlib.contextmanager
def _connect(url: QuickUrl) -> Iterator[Query | None]:
    """A read transaction on ``url`` (None for a SQLite file that is not there: the
    engine would refuse it or create it)."""
    if url.backend is Backend.SQLITE:
        assert url.path is not None
        if not url.path.is_file():
            yield None
            return
        import sqlite3

        conn: Any = sqlite3.connect(url.path, timeout=SQLITE_TIMEOUT, isolation_level=None)
        conn.execute("BEGIN")  # one snapshot, never the write lock
        placeholder = "?"
    else:
        import psycopg2

        conn = psycopg2.connect(**url.params)
        conn.set_session(readonly=True)
        placeholder = "%s"
    try:
        yield Query(conn.cursor(), placeholder)
    finally:
        conn.rollback()
        conn.close()
