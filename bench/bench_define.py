"""Benchmark: definebyquery over 10,000 / 30,000 / 100,000 ready chipRuns, SQLite and PostgreSQL.

    .venv/bin/python bench/bench_define.py [--json] [--sizes 10000,30000,100000] [--pg URL]
                                           [--no-postgres]

Ours is one set-based SELECT + one bulk INSERT. Figures, per database:

* at the smallest size, ours against a row-at-a-time baseline in the same run (a
  per-row "is it taken?" query and a per-row ORM insert, the way a first script does it);
* at every size, ours against the smallest size's time scaled linearly (ratio ~1
  means linear; < 1 would mean it grows faster than the row count).

Targets: ours < 5 s at every size; linear (ratio >= 0.7).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid

from _common import Report, figure, load_note, parser, setup_path

setup_path()

from sqlalchemy import Engine, select, text  # noqa: E402

from remotebridge.config import build  # noqa: E402
from remotebridge.db.bridge import RemoteComponent, RemoteRun  # noqa: E402
from remotebridge.db.engine import make_engine, write_session  # noqa: E402
from remotebridge.db.migrate import upgrade  # noqa: E402
from remotebridge.db.pipeline import ChipRun  # noqa: E402
from remotebridge.define import define_by_query  # noqa: E402
from tests.support.db import add_chipruns  # noqa: E402

LIMIT_S = 5.0


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


def ours(engine: Engine, label: str, rows: int, start: int) -> float:
    """Seconds for one definebyquery over ``rows`` fresh ready chipRuns."""
    add_chipruns(engine, label, rows, start=start)
    t0 = time.perf_counter()
    res = define_by_query(engine, build({}), label=label, stage="chip")
    took = time.perf_counter() - t0
    assert res.count == rows
    return took


def measure(name: str, engine: Engine, sizes: list[int], report: Report) -> None:
    """All figures of one database."""
    start, first = 1, None
    for i, n in enumerate(sizes):
        took = ours(engine, f"ours{i}", n, start)
        start += n
        if first is None:
            first = took / n
            add_chipruns(engine, "base", n, start=start)
            start += n
            t0 = time.perf_counter()
            assert baseline(engine, "base") == n
            report.add(figure(f"definebyquery {n:,} {name}", took,
                              time.perf_counter() - t0, unit="s", target=f"< {LIMIT_S} s",
                              baseline_is="row at a time", rows=n, database=name,
                              check=lambda o, _r: o < LIMIT_S))
        report.add(figure(f"definebyquery {n:,} {name} linear", took, first * n, unit="s",
                          target=f"< {LIMIT_S} s, ratio >= 0.7",
                          baseline_is=f"{sizes[0]:,} rows' time x {n / sizes[0]:g}",
                          rows=n, database=name,
                          check=lambda o, r: o < LIMIT_S and (r or 0) >= 0.7))


def pg_engine(admin_url: str) -> tuple[Engine, Engine, str]:
    """A fresh PostgreSQL database (dropped at the end)."""
    admin = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    name = f"rb_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    return make_engine(admin_url.rsplit("/", 1)[0] + "/" + name), admin, name


def main() -> int:
    """Run the benchmark."""
    ap: argparse.ArgumentParser = parser(__doc__)
    ap.add_argument("--sizes", default="10000,30000,100000")
    ap.add_argument("--pg", default=os.environ.get("RB_TEST_PG_URL",
                                                   "postgresql://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--no-postgres", action="store_true")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    report = Report(args.json)
    report.note(load_note())
    with tempfile.TemporaryDirectory() as tmp:
        sq = make_engine(f"sqlite:///{tmp}/bench.db")
        upgrade(sq)
        measure("sqlite", sq, sizes, report)
        sq.dispose()
    if args.no_postgres:
        return 0
    try:
        pg, admin, name = pg_engine(args.pg)
    except Exception as exc:  # noqa: BLE001 - report and skip, as the other benches do
        report.note(f"postgresql not available ({str(exc).splitlines()[0]}); skipped")
        return 0
    try:
        upgrade(pg)
        measure("postgresql", pg, sizes, report)
    finally:
        pg.dispose()
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE "{name}"'))
    return 0


if __name__ == "__main__":
    sys.exit(main())
