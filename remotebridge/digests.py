"""Content digests (sha256) of the inputs at home, computed once per (path, size, mtime).

Prepare records the digest of every input in ``inputs.manifest``; exec checks a file
that the site lacks against it before pushing. Hashing is the expensive part, so each
digest is kept in a small SQLite cache (``<data_dir>/digests.sqlite``, table
``digest``) keyed by path and valid while the file's size and modification time (in
nanoseconds) are the ones hashed: a repeated prepare or exec of unchanged files
reads the cache and hashes nothing. A cache that cannot be opened or written is
skipped (digests are then computed every time), never an error.

The cache is pruned at most once a day (:func:`prune`): a bounded slice of its
entries is checked per pass, and an entry whose file is gone or has another size or
mtime (it could never be used again) is dropped, so the cache stays about the size of
the inputs that still exist.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

CACHE_NAME = "digests.sqlite"
FIRST_READ = 64 * 1024
"""Bytes of the first read of a file: most inputs fit in it."""
BLOCK = 1024 * 1024
IN_CHUNK = 500
"""Paths per look-up query (SQLite allows 999 parameters in old builds)."""
SCAN_ABOVE = 2000
"""More paths than this, and a cache not much bigger than the paths: one scan of the
whole cache is cheaper than IN look-ups."""
SETTLE_NS = 2_000_000_000
"""A file modified this recently is not cached: an edit within the same mtime tick
would otherwise keep its old digest."""
PRUNE_EVERY_S = 24 * 3600
"""A pruning pass runs at most this often (per cache)."""
PRUNE_BATCH = 50_000
"""Entries checked (one stat each) by one pruning pass; the next pass goes on after
the last one checked, from the start again past the end."""
SCHEMA = ("CREATE TABLE IF NOT EXISTS digest (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
          "mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL) WITHOUT ROWID",
          "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")


def file_sha256(path: str) -> str:
    """The sha256 of a file's content, hex (OSError when it cannot be read).

    Plain descriptor reads: most inputs are small, and a file object or
    ``hashlib.file_digest`` (which sets up a 256 KiB buffer per file) costs several
    times the hashing of a few KiB. A file smaller than ``FIRST_READ`` bytes takes a
    single read: a short read of a regular file is its end.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        first = os.read(fd, FIRST_READ)
        h = hashlib.sha256(first)
        if len(first) == FIRST_READ:
            while block := os.read(fd, BLOCK):
                h.update(block)
    finally:
        os.close(fd)
    return h.hexdigest()


def default_cache() -> Path:
    """``<data_dir>/digests.sqlite``."""
    from remotebridge.config import data_dir  # config imports much; only when used

    return data_dir() / CACHE_NAME


@contextmanager
def _open(path: Path | None) -> Iterator[sqlite3.Connection | None]:
    if path is None:
        yield None
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), timeout=30)
    except (OSError, sqlite3.Error):
        yield None
        return
    with closing(conn):
        try:
            for statement in SCHEMA:
                conn.execute(statement)
        except sqlite3.Error:
            yield None
            return
        yield conn


Stamp = tuple[int, int]
"""A file's (size, mtime_ns): a cached digest is valid while the file has the same."""


def digests(paths: Iterable[str], cache: Path | None = None) -> dict[str, str]:
    """``{path: sha256}`` of every path (OSError when one cannot be read); hashes only
    the files the cache does not know at their current size and mtime."""
    return stamped_digests(((p, _stamp(p)) for p in dict.fromkeys(paths)), cache)


def _stamp(path: str) -> Stamp:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def stamped_digests(files: Iterable[tuple[str, Stamp]],
                    cache: Path | None = None) -> dict[str, str]:
    """:func:`digests` of files the caller has just stat'ed (path and its stamp; prepare
    stats every input for its size already: a second stat would cost as much as
    reading a small file)."""
    with batches(cache) as lookup:
        return lookup(files)


@contextmanager
def batches(cache: Path | None = None) -> Iterator[Callable[[Iterable[tuple[str, Stamp]]],
                                                             dict[str, str]]]:
    """:func:`stamped_digests` for many batches of files on one opening of the cache:
    yields the function that digests one batch. The new digests of every batch are
    committed together when the block ends (a commit syncs the cache file to disk: one
    per batch of a big prepare cost more than the inserts), then the day's pruning
    pass runs. A block left by an exception stores nothing (a cache: next time hashes
    again)."""
    with _open(cache if cache is not None else default_cache()) as conn:
        yield functools.partial(_batch, conn)
        if conn is not None:
            _commit(conn)
            prune(conn)


def _batch(conn: sqlite3.Connection | None,
           files: Iterable[tuple[str, Stamp]]) -> dict[str, str]:
    """The digests of one batch; the new ones inserted in ``conn``'s open transaction."""
    stamps = dict(files)
    known = _lookup(conn, stamps) if conn is not None else {}
    out, new = {}, []
    settled = time.time_ns() - SETTLE_NS
    for path, stamp in stamps.items():
        digest = known.get(path)
        if digest is None:
            digest = file_sha256(path)
            if stamp[1] < settled:
                new.append((path, *stamp, digest))
        out[path] = digest
    if conn is not None and new:
        _store(conn, new)
    return out


def _lookup(conn: sqlite3.Connection, stamps: dict[str, Stamp]) -> dict[str, str]:
    """The cached digests still valid (same size and mtime)."""
    found = {}
    try:
        rows = _scan(conn) if _scan_is_cheaper(conn, len(stamps)) else _select(conn, list(stamps))
    except sqlite3.Error:
        return {}
    for path, size, mtime, digest in rows:
        if stamps.get(path) == (size, mtime):
            found[path] = digest
    return found


def _scan_is_cheaper(conn: sqlite3.Connection, wanted: int) -> bool:
    """Many paths against a cache not much bigger: reading it all beats IN look-ups
    (about twice as fast per row); a big cache is looked up in batches."""
    if wanted <= SCAN_ABOVE:
        return False
    (rows,) = conn.execute("SELECT count(*) FROM digest").fetchone()
    return bool(rows < 2 * wanted)


def _scan(conn: sqlite3.Connection) -> list[tuple[str, int, int, str]]:
    return conn.execute("SELECT path, size, mtime_ns, sha256 FROM digest").fetchall()


def _select(conn: sqlite3.Connection, names: list[str]) -> list[tuple[str, int, int, str]]:
    query = "SELECT path, size, mtime_ns, sha256 FROM digest WHERE path IN "
    out: list[tuple[str, int, int, str]] = []
    for i in range(0, len(names), IN_CHUNK):
        part = names[i:i + IN_CHUNK]
        out += conn.execute(f"{query}({','.join('?' * len(part))})", part).fetchall()
    return out


def _store(conn: sqlite3.Connection, rows: list[tuple[str, int, int, str]]) -> None:
    """Insert in the open transaction (committed by :func:`_commit`)."""
    try:
        conn.executemany("INSERT OR REPLACE INTO digest VALUES (?, ?, ?, ?)", rows)
    except sqlite3.Error:
        conn.rollback()  # a cache, not a record: next time hashes again


def _commit(conn: sqlite3.Connection) -> None:
    try:
        conn.commit()
    except sqlite3.Error:
        conn.rollback()


def prune(conn: sqlite3.Connection, *, now: float | None = None, force: bool = False,
          batch: int = PRUNE_BATCH) -> int:
    """One bounded pruning pass when the last one is ``PRUNE_EVERY_S`` old (or
    ``force``): the next ``batch`` entries after where the last pass stopped are
    checked with one stat each, and those whose file is gone or changed are dropped.
    A new cache counts as pruned now. Returns the entries dropped."""
    now = time.time() if now is None else now
    try:
        with conn:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            last = _number(meta.get("pruned_at"))
            if last is None:  # a new cache, or a damaged row: counts as pruned now
                conn.execute("INSERT OR REPLACE INTO meta VALUES ('pruned_at', ?)", (now,))
                return 0
            if not force and now - last < PRUNE_EVERY_S:
                return 0
            return _prune_slice(conn, str(meta.get("prune_after", "")), now, batch)
    except sqlite3.Error:
        return 0  # a cache: the next pass tries again


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _prune_slice(conn: sqlite3.Connection, after: str, now: float, batch: int) -> int:
    rows = conn.execute("SELECT path, size, mtime_ns FROM digest WHERE path > ? "
                        "ORDER BY path LIMIT ?", (after, batch)).fetchall()
    gone = [(path,) for path, size, mtime in rows if not _still(path, size, mtime)]
    conn.executemany("DELETE FROM digest WHERE path = ?", gone)
    cursor = rows[-1][0] if len(rows) == batch else ""  # past the end: from the start
    conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                     [("pruned_at", now), ("prune_after", cursor)])
    return len(gone)


def _still(path: str, size: int, mtime_ns: int) -> bool:
    """The file is there with the size and mtime its entry was hashed at."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_size, st.st_mtime_ns) == (size, mtime_ns)
