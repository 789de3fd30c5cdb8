"""Benchmark: definebyquery over 10,000 ready chipRuns, SQLite and PostgreSQL.

Prints ours (one set-based SELECT + one bulk INSERT) against a row-at-a-time
baseline in the same run (a per-row "is it taken?" query and a per-row ORM insert,
the way a first script usually does it), with rows/s and the ratio. Target: ours
under 2 s for 10,000 rows on either database.

    python bench/bench_define.py [--rows N] [--pg URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import Engine, select, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from remotebridge.config import build  # noqa: E402
from remotebridge.db.bridge import RemoteComponent, RemoteRun  # noqa: E402
from remotebridge.db.engine import make_engine, write_session  # noqa: E402
from remotebridge.db.migrate import upgrade  # noqa: E402
from remotebridge.db.pipeline import ChipRun  # noqa: E402
from remotebridge.define import define_by_query  # noqa: E402
from tests.conftest import add_chipruns  # noqa: E402


def baseline(engine: Engine, label: str) -> int:
    """Row at a time: what the bulk path replaces."""
    with write_session(engine) as s:
        run = RemoteRun(stage="chip", label=label, site="demo", state="new", path_base="/x")
        s.add(run)
        s.flush()
        n = 0
        for chip_id in s.execute(select(ChipRun.chip_id).where(ChipRun.label == label)).scalars():
            taken = s.execute(select(RemoteComponent).where(
                RemoteComponent.stage == "chip", RemoteComponent.stage_id == chip_id)).first()
            if taken is None:
                s.add(RemoteComponent(remote_id=run.remote_id, stage_id=chip_id, stage="chip"))
                s.flush()
                n += 1
        return n


def measure(engine: Engine, rows: int) -> tuple[float, float]:
    add_chipruns(engine, "ours", rows, start=1)
    t0 = time.perf_counter()
    res = define_by_query(engine, build({}), label="ours", stage="chip")
    ours = time.perf_counter() - t0
    assert res.count == rows
    add_chipruns(engine, "base", rows, start=rows + 1)
    t0 = time.perf_counter()
    assert baseline(engine, "base") == rows
    return ours, time.perf_counter() - t0


def pg_engine(admin_url: str) -> tuple[Engine, Engine, str]:
    admin = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    name = f"rb_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    return make_engine(admin_url.rsplit("/", 1)[0] + "/" + name), admin, name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test")
    args = ap.parse_args()
    print(f"definebyquery over {args.rows} ready chipRuns (target: ours < 2 s)")
    print(f"{'database':<12}{'ours s':>9}{'rows/s':>11}{'baseline s':>12}{'speedup':>9}  target")
    with tempfile.TemporaryDirectory() as tmp:
        sq = make_engine(f"sqlite:///{tmp}/bench.db")
        upgrade(sq)
        _row("sqlite", args.rows, *measure(sq, args.rows))
    pg, admin, name = pg_engine(args.pg)
    try:
        upgrade(pg)
        _row("postgresql", args.rows, *measure(pg, args.rows))
    finally:
        pg.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE "{name}"'))


def _row(name: str, rows: int, ours: float, base: float) -> None:
    ok = "ok" if ours < 2.0 else "MISSED"
    print(f"{name:<12}{ours:>9.3f}{rows / ours:>11,.0f}{base:>12.3f}{base / ours:>8.1f}x  {ok}")


if __name__ == "__main__":
    main()
