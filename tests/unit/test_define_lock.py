"""definebyquery waits a bounded time for another host defining the same stage and label.

Two hosts' cron lines can overlap; on PostgreSQL the loser waits on a transaction-scoped
advisory lock. ``lock_timeout`` (PostgreSQL docs, "Client Connection Defaults": a
statement waiting longer than that for a lock is aborted; this test shows it cuts an
advisory-lock wait) bounds the wait: past it the command ends with exit 75 and a
one-line reason, and the next cron round tries again.
"""

from __future__ import annotations

import time
import zlib

import pytest
from sqlalchemy import text

from remotebridge import define
from remotebridge.cli.exitcodes import ExitCode, exit_code_for
from remotebridge.config import build
from remotebridge.db.engine import make_engine
from remotebridge.define import define_by_query
from remotebridge.errors import DatabaseUnavailable
from tests.support.db import add_chipruns, truncate_pg

pytestmark = pytest.mark.postgres


def test_a_held_define_lock_ends_the_wait_with_exit_75(pg_url: str,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    truncate_pg(pg_url)
    engine = make_engine(pg_url)
    add_chipruns(engine, "L", 3)
    monkeypatch.setattr(define, "LOCK_WAIT_S", 1)
    key = zlib.crc32(b"definebyquery:chip:L")
    with engine.connect() as other:  # the other host, mid-define
        other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        start = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match="another process has been defining "
                                                      "chip runs of label 'L' for over 1 s") as exc:
            define_by_query(engine, build({}), label="L", stage="chip")
        waited = time.monotonic() - start
        other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    assert 0.9 <= waited < 30 and exit_code_for(exc.value) == ExitCode.TEMPORARY == 75
    # the lock free again: the same call defines the run
    res = define_by_query(engine, build({}), label="L", stage="chip")
    assert res.count == 3
    engine.dispose()
