"""Database rows for tests: the demo survey's exposures and chipRuns."""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from sqlalchemy import Engine, insert, text

from remotebridge.db import Base
from remotebridge.db.engine import make_engine
from remotebridge.db.pipeline import ChipRun, RawExp

PG_ADMIN_URL = os.environ.get("RB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
"""The PostgreSQL server the tests make their databases on (trust auth)."""


def add_chipruns(engine: Engine, label: str, count: int, *, start: int = 1,
                 state: str = "new") -> list[int]:
    """Insert ``count`` exposures with one chipRun each; returns the chip_ids."""
    t0 = datetime(2026, 1, 1)
    exps = [{"exp_id": start + i, "exp_name": f"o{start + i:07d}", "dateobs":
             t0 + timedelta(minutes=i), "filter": "r", "exp_time": 30.0, "ra": 10.0,
             "decl": 20.0, "camera": "DEMOCAM", "airmass": 1.0, "obs_mode": "SURVEY"}
            for i in range(count)]
    runs = [{"chip_id": start + i, "exp_id": start + i, "label": label, "state": state,
             "workdir": f"/data/{label}", "data_group": label, "fault": 0,
             "registered": t0, "end_stage": "chip", "tess_id": ""}
            for i in range(count)]
    with engine.begin() as conn:
        if exps:
            conn.execute(insert(RawExp), exps)
            conn.execute(insert(ChipRun), runs)
    return [start + i for i in range(count)]


def truncate_pg(url: str) -> None:
    """Empty every table of the PostgreSQL database at ``url`` (ids restart)."""
    engine = make_engine(url)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()
