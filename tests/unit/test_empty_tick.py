"""A cron tick of ``exec`` or ``poll`` with nothing to do asks the database one cheap
question with the driver alone and loads none of SQLAlchemy, alembic, the transfer,
exec or poll machinery, Jinja2 or rich
(behavioural: what the fresh interpreter imported; the time is in bench/bench_startup.py).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from remotebridge.db.base import utcnow
from remotebridge.db.bridge import RemoteRun
from remotebridge.due import pending_due, poll_due
from tests.support.poll_runs import config
from tests.support.tick_probe import probe

HEAVY = ("sqlalchemy", "alembic", "jinja2", "rich", "paramiko", "remotebridge.transfer",
         "remotebridge.exec", "remotebridge.poll", "remotebridge.prepare", "remotebridge.ssh",
         "remotebridge.db")


def _runs(engine: Engine, *states: tuple[str, int]) -> None:
    """Runs in the given states; ``run`` ones polled ``age`` seconds ago."""
    rows = [{"remote_id": i + 1, "stage": "chip", "label": "tick", "site": "demo",
             "state": st, "path_base": "/nonexistent",
             "last_poll": utcnow() - timedelta(seconds=age)}
            for i, (st, age) in enumerate(states)]
    with engine.begin() as conn:
        conn.execute(insert(RemoteRun), rows)


def _probe(db_url: str, tmp: Path, args: list[str]) -> dict[str, object]:
    got, out = probe(db_url, tmp, args, HEAVY, site_extra="poll_interval = 600\n")
    assert out == [], out
    return got


@pytest.mark.parametrize("command", ["exec", "poll"])
def test_empty_tick_imports_nothing_heavy(engine: Engine, db_url: str, tmp_path: Path,
                                          command: str) -> None:
    # one run not yet prepared, one just polled, one finished: nothing for exec or poll
    _runs(engine, ("new", 0), ("run", 5), ("full", 0))
    assert _probe(db_url, tmp_path, [command]) == {"code": 0, "heavy": []}


def test_due_questions(engine: Engine, tmp_path: Path) -> None:
    """The cheap questions answer like the runners select."""
    cfg = config(tmp_path, poll_interval=600)
    _runs(engine, ("new", 0), ("run", 5))
    assert not pending_due(engine)
    assert not poll_due(engine, cfg)
    assert poll_due(engine, cfg, force=True)
    assert poll_due(engine, config(tmp_path, poll_interval=1))
    more = [{"remote_id": 3, "stage": "chip", "label": "other", "site": "demo",
                   "state": "pending", "path_base": "/nonexistent"}]
    with engine.begin() as conn:
        conn.execute(insert(RemoteRun), more)
    assert pending_due(engine)
    assert pending_due(engine, label="other") and not pending_due(engine, label="tick")


def test_a_run_in_auth_is_work_for_every_tick(engine: Engine, tmp_path: Path) -> None:
    """A run paused in auth makes every exec and poll look at its site (resume, or 75)."""
    cfg = config(tmp_path, poll_interval=600)
    _runs(engine, ("run", 5))
    assert not pending_due(engine) and not poll_due(engine, cfg)
    paused = [{"remote_id": 9, "stage": "chip", "label": "elsewhere", "site": "demo",
               "state": "auth", "path_base": "/nonexistent"}]
    with engine.begin() as conn:
        conn.execute(insert(RemoteRun), paused)
    assert pending_due(engine) and poll_due(engine, cfg)
    assert pending_due(engine, label="tick") and poll_due(engine, cfg, label="tick")
