#!/usr/bin/env python3
"""Benchmark poll's dbinfo replay: bulk (checked, one transaction) vs row at a time.

    python bench/bench_poll.py [--exposures N] [--no-postgres] [--pg URL]

Builds a chip run of N exposures x 60 chips (default 1000 x 60 = 60,000 dbinfo
records, synthetic but shaped like rb_chip's) on SQLite and PostgreSQL (tables in a
schema of their own), then replays the records into chipProcessedImfile twice
each way, once into an empty table (inserts) and once over the rows already there
(updates, as when a run is polled again after a revert):

* ours: :func:`remotebridge.poll.replay.check_records` (every record validated
  against the stage's dbinfo_schema) + :func:`apply_rows` in ONE transaction
  (SQLite: one ``INSERT ... ON CONFLICT DO UPDATE`` executemany; PostgreSQL: the
  portable way below);
* portable: one key SELECT per 500 components, a batched INSERT of the new rows and
  an executemany UPDATE by key of the others;
* baseline: the same validation, then per record a SELECT by key and an INSERT or
  UPDATE statement of its own (still in one transaction, which flatters it).

Prints seconds and the ratio baseline / ours. ``ratio`` is baseline_s / ours_s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, select, text, update

from remotebridge.db.base import Base
from remotebridge.db.engine import make_engine, write_session
from remotebridge.db.pipeline import ChipProcessedImfile, ChipRun, RawExp
from remotebridge.poll.replay import Rows, _select_then_write, apply_rows, check_records
from remotebridge.prepare.chip import ChipStage

CHIPS = 60
PG_URL = os.environ.get("RB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
Item = tuple[int, str, int, dict[str, Any]]


def records(n_exp: int, salt: float = 0.0) -> list[Item]:
    """``(stage_id, file, line, record)`` for every chip image of ``n_exp`` exposures."""
    out: list[Item] = []
    for e in range(1, n_exp + 1):
        name = f"dbinfo/{e}.dbinfo.jsonl"
        for c in range(CHIPS):
            cid = f"xy{c // 8}{c % 8}"
            rec = {"v": 1, "table": "chipProcessedImfile",
                   "key": {"chip_id": e, "class_id": cid},
                   "values": {"uri": f"/data/work/o{e:07d}/o{e:07d}.{cid}.ch.fits",
                              "fault": 0, "bg": 150.0 + c + salt, "bg_stdev": 3.5,
                              "n_stars": 10 + c, "fwhm": 2.5, "dtime_script": 140.0 + salt,
                              "hostname": f"nid{c:05d}"}}
            out.append((e, name, c + 2, rec))
    return out


def setup(engine: Engine, n_exp: int) -> None:
    """Fresh tables with ``n_exp`` exposures and chipRuns."""
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    t0 = datetime(2011, 7, 3)
    with engine.begin() as conn:
        conn.execute(insert(RawExp), [{"exp_id": e, "exp_name": f"o{e:07d}", "dateobs":
                                       t0 + timedelta(minutes=e), "filter": "r",
                                       "exp_time": 30.0, "ra": 1.0, "decl": 2.0}
                                      for e in range(1, n_exp + 1)])
        conn.execute(insert(ChipRun), [{"chip_id": e, "exp_id": e, "label": "bench",
                                        "workdir": "/data/work"} for e in range(1, n_exp + 1)])


def ours(engine: Engine, items: list[Item]) -> float:
    t0 = time.perf_counter()
    tables = check_records("chip", ChipStage.dbinfo_schema, items)
    with write_session(engine) as s:
        apply_rows(s, tables)
    return time.perf_counter() - t0


def portable(engine: Engine, items: list[Item]) -> float:
    """Ours without the dialect upsert: key SELECT, bulk INSERT, bulk UPDATE by key."""
    t0 = time.perf_counter()
    tables = check_records("chip", ChipStage.dbinfo_schema, items)
    with write_session(engine) as s:
        _select_then_write(s, tables)
    return time.perf_counter() - t0


def baseline(engine: Engine, items: list[Item]) -> float:
    t0 = time.perf_counter()
    tables: dict[str, Rows] = check_records("chip", ChipStage.dbinfo_schema, items)
    t = tables["chipProcessedImfile"].table
    with write_session(engine) as s:
        for _sid, _name, _line, rec in items:
            key, values = rec["key"], rec["values"]
            where = and_(*[t.c[k] == v for k, v in key.items()])
            if s.execute(select(t.c.chip_id).where(where)).first() is None:
                s.execute(insert(t).values({**key, **values}))
            else:
                s.execute(update(t).where(where).values(values))
    return time.perf_counter() - t0


def clear(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(ChipProcessedImfile))


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(ChipProcessedImfile.chip_id)).all())


def bench(label: str, engine: Engine, n_exp: int) -> None:
    setup(engine, n_exp)
    first, second = records(n_exp), records(n_exp, salt=1.0)
    rows = []
    for phase, fill in (("insert", False), ("update", True)):
        times = {}
        for name, fn in (("ours", ours), ("portable", portable), ("baseline", baseline)):
            clear(engine)
            if fill:
                ours(engine, first)
            times[name] = fn(engine, second if fill else first)
            assert count(engine) == len(first)
        rows.append((phase, times["ours"], times["portable"], times["baseline"]))
    for phase, t_ours, t_port, t_base in rows:
        print(f"{label:<11} {phase:<7} {len(first):>7} {t_ours:>9.2f} {t_port:>11.2f} "
              f"{t_base:>11.2f} {t_base / t_ours:>7.1f}x")
        sys.stdout.flush()


def pg_engine(url: str) -> Engine | None:
    """A PostgreSQL engine on a private schema, or None when not reachable."""
    try:
        base = make_engine(url)
        with base.begin() as conn:
            conn.execute(text("CREATE SCHEMA IF NOT EXISTS rb_bench_poll"))
        base.dispose()
        sep = "&" if "?" in url else "?"
        return make_engine(f"{url}{sep}options=-csearch_path%3Drb_bench_poll")
    except Exception as exc:  # noqa: BLE001 - report and skip
        print(f"# postgresql not available ({str(exc).splitlines()[0]}); skipped")
        return None


def main() -> None:
    """Run the benchmark."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exposures", type=int, default=1000)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--pg", default=PG_URL)
    args = ap.parse_args()
    print(f"{'database':<11} {'replay':<7} {'records':>7} {'ours_s':>9} {'portable_s':>11} "
          f"{'baseline_s':>11} {'ratio':>8}")
    with tempfile.TemporaryDirectory(prefix="rb-bench-poll-") as tmp:
        lite = make_engine(f"sqlite:///{tmp}/bench.db")
        bench("sqlite", lite, args.exposures)
        lite.dispose()
    if not args.no_postgres:
        pg = pg_engine(args.pg)
        if pg is not None:
            bench("postgresql", pg, args.exposures)
            Base.metadata.drop_all(pg)
            pg.dispose()


if __name__ == "__main__":
    main()
