#!/usr/bin/env python3
"""Benchmark poll's dbinfo replay: ours vs today's batched method, same run.

    .venv/bin/python bench/bench_poll.py [--json] [--exposures N] [--no-postgres] [--pg URL]
                                         [--repeat N] [--row-at-a-time]

Builds a chip run of N exposures x 60 chips (default 1000 x 60 = 60,000 dbinfo
records, synthetic but shaped like rb_chip's) on SQLite and PostgreSQL (tables in a
schema of their own), then replays the records into chipProcessedImfile, once into
an empty table (inserts) and once over the rows already there (updates, as when a
run is polled again after a revert). Every timing includes the checks
(:func:`remotebridge.poll.replay.check_records`) and one transaction:

* ours: :func:`apply_rows` (SQLite: one ``INSERT ... ON CONFLICT DO UPDATE``
  executemany; PostgreSQL: COPY into a temporary table + one ``INSERT ... SELECT ...
  ON CONFLICT DO UPDATE``);
* baseline ("batched", the method before COPY): one key SELECT per 500 components,
  a batched multi-row INSERT of the new rows and an executemany UPDATE by key;
* ``--row-at-a-time`` adds the naive way (per record a SELECT by key and its own
  INSERT or UPDATE), slow: minutes on PostgreSQL.

Targets: each ours <= 1.5 s; PostgreSQL update >= 3x the batched method. Each figure
is given twice: ``wall`` (elapsed) and ``cpu`` (CPU seconds of this process plus, on
PostgreSQL, of its backend, read from /proc): on a shared, loaded machine the wall
clock mostly measures the other users.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from datetime import datetime, timedelta
from typing import Any

from _common import Report, backend_cpu, figure, load_note, parser, setup_path

setup_path()

from sqlalchemy import Engine, and_, delete, insert, select, text, update  # noqa: E402

from remotebridge.db.base import Base  # noqa: E402
from remotebridge.db.engine import make_engine, write_session  # noqa: E402
from remotebridge.db.pipeline import ChipProcessedImfile, ChipRun, RawExp  # noqa: E402
from remotebridge.poll.replay import (  # noqa: E402
    Rows,
    _select_then_write,
    apply_rows,
    check_records,
)
from remotebridge.prepare.chip import ChipStage  # noqa: E402

CHIPS = 60
LIMIT_S = 1.5
PG_RATIO = 3.0
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


def _run(engine: Engine, items: list[Item], how: Any) -> tuple[float, float]:
    """Wall seconds and CPU seconds (this process + the database backend) of one replay."""
    t0, c0 = time.perf_counter(), time.process_time()
    tables = check_records("chip", ChipStage.dbinfo_schema, items)
    with write_session(engine) as s:
        pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one() \
            if engine.dialect.name == "postgresql" else None
        b0 = backend_cpu(pid)
        how(s, tables)
        s.flush()
        b1 = backend_cpu(pid)
    return time.perf_counter() - t0, time.process_time() - c0 + b1 - b0


def ours(engine: Engine, items: list[Item]) -> tuple[float, float]:
    """Today's replay: checks + apply_rows."""
    return _run(engine, items, apply_rows)


def portable(engine: Engine, items: list[Item]) -> tuple[float, float]:
    """The batched method: key SELECT, bulk INSERT, executemany UPDATE by key."""
    return _run(engine, items, _select_then_write)


def baseline(engine: Engine, items: list[Item]) -> tuple[float, float]:
    """Row at a time (wall time only)."""
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
    return time.perf_counter() - t0, 0.0


def clear(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(delete(ChipProcessedImfile))


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return len(conn.execute(select(ChipProcessedImfile.chip_id)).all())


def timed_replay(engine: Engine, fn: Any, items: list[Item], fill: list[Item] | None,
                 repeat: int) -> tuple[float, float]:
    """Best of ``repeat`` (wall, cpu): clear the table (fill it first for updates), time."""
    best: tuple[float, float] | None = None
    for _ in range(repeat):
        clear(engine)
        if fill is not None:
            ours(engine, fill)
        took = fn(engine, items)
        assert count(engine) == len(items)
        best = took if best is None else (min(best[0], took[0]), min(best[1], took[1]))
    assert best is not None
    return best


def bench(label: str, engine: Engine, n_exp: int, args: Any, report: Report) -> None:
    """Insert and update figures for one database: wall seconds and CPU seconds."""
    setup(engine, n_exp)
    first, second = records(n_exp), records(n_exp, salt=1.0)
    for phase, items, fill in (("insert", first, None), ("update", second, first)):
        w_ours, c_ours = timed_replay(engine, ours, items, fill, args.repeat)
        w_base, c_base = timed_replay(engine, portable, items, fill, args.repeat)
        need_ratio = label == "postgresql" and phase == "update"
        target = f"<= {LIMIT_S} s" + (f", >= {PG_RATIO:.0f}x batched" if need_ratio else "")
        for kind, o, b in (("wall", w_ours, w_base), ("cpu", c_ours, c_base)):
            report.add(figure(
                f"replay {len(items):,} {phase} {label} {kind}", o, b, unit="s",
                target=target, baseline_is="batched: key SELECT + multi-row INSERT + "
                "executemany UPDATE",
                check=lambda o, r, n=need_ratio: o <= LIMIT_S and (not n or (r or 0) >= PG_RATIO),
                records=len(items), database=label, phase=phase, clock=kind))
        if args.row_at_a_time:
            w_row, _ = timed_replay(engine, baseline, items, fill, 1)
            report.add(figure(
                f"replay {len(items):,} {phase} {label} vs rows", w_ours, w_row, unit="s",
                target="(information)", check=lambda o, r: True,
                baseline_is="row at a time", records=len(items), database=label,
                phase=phase))


def pg_engine(url: str, report: Report) -> Engine | None:
    """A PostgreSQL engine on a private schema, or None when not reachable."""
    try:
        base = make_engine(url)
        with base.begin() as conn:
            conn.execute(text("CREATE SCHEMA IF NOT EXISTS rb_bench_poll"))
        base.dispose()
        sep = "&" if "?" in url else "?"
        return make_engine(f"{url}{sep}options=-csearch_path%3Drb_bench_poll")
    except Exception as exc:  # noqa: BLE001 - report and skip
        report.note(f"postgresql not available ({str(exc).splitlines()[0]}); skipped")
        return None


def main() -> int:
    """Run the benchmark."""
    ap = parser(__doc__)
    ap.add_argument("--exposures", type=int, default=1000)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--pg", default=PG_URL)
    ap.add_argument("--repeat", type=int, default=2, help="best of N (default 2)")
    ap.add_argument("--row-at-a-time", action="store_true",
                    help="also time the naive row-at-a-time way (slow)")
    args = ap.parse_args()
    report = Report(args.json)
    report.note(load_note() + "; cpu = this process + the PostgreSQL backend")
    with tempfile.TemporaryDirectory(prefix="rb-bench-poll-") as tmp:
        lite = make_engine(f"sqlite:///{tmp}/bench.db")
        bench("sqlite", lite, args.exposures, args, report)
        lite.dispose()
    if not args.no_postgres:
        pg = pg_engine(args.pg, report)
        if pg is not None:
            bench("postgresql", pg, args.exposures, args, report)
            Base.metadata.drop_all(pg)
            pg.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
