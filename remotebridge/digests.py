"""Content digests (sha256) of the inputs at home, computed once per (path, size, mtime).

Prepare records the digest of every input in ``inputs.manifest``; exec checks a file
that the site lacks against it before pushing. Hashing is the expensive part, so each
digest is kept in a small SQLite cache (``<data_dir>/digests.sqlite``, table
``digest``) keyed by path and valid while the file's size and modification time (in
nanoseconds) are the ones hashed: a repeated prepare or exec of unchanged files
reads the cache and hashes nothing. A cache that cannot be opened or written is
skipped (digests are then computed every time), never an error.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

CACHE_NAME = "digests.sqlite"
IN_CHUNK = 500
"""Paths per look-up query (SQLite allows 999 parameters in old builds)."""
SCAN_ABOVE = 2000
"""More paths than this: one scan of the whole cache is cheaper than IN look-ups."""
SETTLE_NS = 2_000_000_000
"""A file modified this recently is not cached: an edit within the same mtime tick
would otherwise keep its old digest."""
SCHEMA = ("CREATE TABLE IF NOT EXISTS digest (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
          "mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)")


def file_sha256(path: str) -> str:
    """The sha256 of a file's content, hex (OSError when it cannot be read)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


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
        conn.execute(SCHEMA)
    except (OSError, sqlite3.Error):
        yield None
        return
    with closing(conn):
        yield conn


def digests(paths: Iterable[str], cache: Path | None = None) -> dict[str, str]:
    """``{path: sha256}`` of every path (OSError when one cannot be read); hashes only
    the files the cache does not know at their current size and mtime."""
    stats = {p: os.stat(p) for p in dict.fromkeys(paths)}
    with _open(cache if cache is not None else default_cache()) as conn:
        known = _lookup(conn, stats) if conn is not None else {}
        out, new = {}, []
        settled = time.time_ns() - SETTLE_NS
        for path, st in stats.items():
            digest = known.get(path)
            if digest is None:
                digest = file_sha256(path)
                if st.st_mtime_ns < settled:
                    new.append((path, st.st_size, st.st_mtime_ns, digest))
            out[path] = digest
        if new and conn is not None:
            _store(conn, new)
    return out


def _lookup(conn: sqlite3.Connection, stats: dict[str, os.stat_result]) -> dict[str, str]:
    """The cached digests still valid (same size and mtime)."""
    names, found = list(stats), {}
    query = "SELECT path, size, mtime_ns, sha256 FROM digest"
    parts = [names[i:i + IN_CHUNK] for i in range(0, len(names), IN_CHUNK)]
    try:
        rows = conn.execute(query).fetchall() if len(names) > SCAN_ABOVE else [
            row for part in parts for row in conn.execute(
                f"{query} WHERE path IN ({','.join('?' * len(part))})", part)]
    except sqlite3.Error:
        return {}
    for path, size, mtime, digest in rows:
        st = stats.get(path)
        if st is not None and (size, mtime) == (st.st_size, st.st_mtime_ns):
            found[path] = digest
    return found


def _store(conn: sqlite3.Connection, rows: list[tuple[str, int, int, str]]) -> None:
    try:
        with conn:
            conn.executemany("INSERT OR REPLACE INTO digest VALUES (?, ?, ?, ?)", rows)
    except sqlite3.Error:
        pass  # a cache, not a record: next time hashes again
