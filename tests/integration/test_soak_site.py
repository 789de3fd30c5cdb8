"""The campaign soak's short setting, as the README's test command runs it.

``bench/soak.py --minutes 6`` on the test site against a PostgreSQL database of its own
(the soak empties every table of the database it is given): a survey label through chip
-> cam -> warp -> stack, the shipped crontab run by two "hosts", and at least three
faults of each kind (login cuts, link cuts, purges, kill -9 of our commands, slurmctld
and slurmd restarts, dropped submit answers). Every figure the soak prints must be met:
0 lost, 0 duplicated, 0 double submissions, 0 manual commands, every run ``full`` but
the poisoned components abandoned, each fault kind at least three times, within the
six minutes (docs/soak.md). Takes the site alone: the soak flips its switches.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from remotebridge.db.engine import make_engine
from tests.support.db import PG_ADMIN_URL

pytestmark = [pytest.mark.site, pytest.mark.postgres]

ROOT = Path(__file__).resolve().parents[2]
SEED = 3
MINUTES = 6.0
KINDS = {"expire", "cut", "purge", "kill", "slurmctld", "slurmd", "drop"}


@pytest.fixture
def soak_db() -> Iterator[str]:
    """A PostgreSQL database for the soak alone (dropped afterwards)."""
    admin = make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    name = f"rb_soak_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = :n"), {"n": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def test_short_soak_loses_nothing_and_does_nothing_twice(site_alone: object,
                                                         soak_db: str) -> None:
    env = dict(os.environ, RB_TEST_PG_URL=soak_db)
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--minutes",
                        str(MINUTES), "--seed", str(SEED), "--json"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=MINUTES * 60 + 180,
                       check=False)
    assert r.returncode == 0, r.stderr[-4000:]
    figures = {f["name"]: f for f in map(json.loads, r.stdout.splitlines())}
    injected = {name.split(": ", 1)[1] for name in figures if name.startswith("faults injected")}
    assert injected == KINDS, figures.keys()
    for name in ("lost products", "duplicated result rows",
                 "double submissions (one token, two jobs)",
                 "manual commands other than control-tool start",
                 "runs not full (without poisoned inputs)",
                 "stages never run (campaign unfinished)", "poisoned inputs abandoned"):
        assert name in figures, name
    missed = [f"{f['name']}: {f['ours']} (target {f['target']}) {f['note']}"
              for f in figures.values() if not f["met"]]
    assert not missed, "\n".join(missed) + "\n" + r.stderr[-4000:]
    assert figures["runs full"]["ours"] >= 4  # chip, cam, warp, stack
    assert "soak failed" not in r.stderr
