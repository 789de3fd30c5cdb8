#!/usr/bin/env python3
"""Benchmark start-up: --help, a usage error, and cron ticks with nothing to do.

    .venv/bin/python bench/bench_startup.py [--json] [--runs N] [--no-postgres] [--pg URL]

Each command runs N times (default 7) in a fresh interpreter of this Python; the
figure is the median, wall and CPU (user + system of the child). The baseline is
``python -c pass`` measured in the same run. Targets: ``remotetool --help``, a usage
error and ``control-tool --help`` <= 0.15 s; an ``exec``, ``poll``, ``prepare`` or
``definebyquery`` (a known label, nothing ready) tick on an empty,
current SQLite database (and, when reachable, PostgreSQL: a private schema ``rb_bench_start``
in the database of ``--pg``) <= 0.3 s. What they import is checked by
tests/unit/test_startup.py (no SQLAlchemy, alembic, rich tables or Jinja2).
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, Report, figure, load_note, parser, setup_path

setup_path()

REMOTETOOL = "from remotebridge.cli.remotetool import main; main(prog_name='remotetool')"
CONTROL = "from remotebridge.cli.control import main; main(prog_name='control-tool')"
PG_URL = os.environ.get("RB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pg_url(url: str, env: dict[str, str], report: Report) -> str | None:
    """``url`` narrowed to a private, current schema; None when PostgreSQL is not there."""
    from sqlalchemy import text

    from remotebridge.db.engine import make_engine

    try:
        base = make_engine(url)
        with base.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS rb_bench_start CASCADE"))
            conn.execute(text("CREATE SCHEMA rb_bench_start"))
        base.dispose()
    except Exception as exc:  # noqa: BLE001 - report and skip
        report.note(f"postgresql not available ({str(exc).splitlines()[0]}); skipped")
        return None
    private = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3Drb_bench_start"
    subprocess.run([sys.executable, "-c", REMOTETOOL, "--db", private, "db", "upgrade"],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    return private


def run(args: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``python args`` over ``runs`` runs."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, *args], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
        walls.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    """Run the benchmark."""
    ap = parser(__doc__)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--pg", default=PG_URL, help="PostgreSQL database for the ticks")
    args = ap.parse_args()
    report = Report(args.json)
    report.note(load_note())
    with tempfile.TemporaryDirectory(prefix="rb-bench-start-") as tmp:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": f"{tmp}/config",
               "XDG_DATA_HOME": f"{tmp}/data"}
        db = ["--db", f"sqlite:///{Path(tmp) / 'rb.db'}"]
        subprocess.run([sys.executable, "-c", REMOTETOOL, *db, "db", "upgrade"], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        _seed_label(db[1])
        cases = [("remotetool --help", [REMOTETOOL, "--help"], 0.15),
                 ("remotetool usage error", [REMOTETOOL, "definebyquery"], 0.15),
                 ("control-tool --help", [CONTROL, "--help"], 0.15),
                 ("exec tick, nothing to do", [REMOTETOOL, *db, "exec"], 0.3),
                 ("poll tick, nothing to do", [REMOTETOOL, *db, "poll"], 0.3),
                 ("prepare tick, nothing to do", [REMOTETOOL, *db, "prepare", "--label",
                                                  "bench"], 0.3),
                 ("definebyquery tick, nothing to do",
                  [REMOTETOOL, *db, "definebyquery", "--label", "bench", "--stage", "cam"],
                  0.3)]
        pg = None if args.no_postgres else pg_url(args.pg, env, report)
        if pg is not None:
            cases += [(f"{cmd} tick, nothing to do, postgresql",
                       [REMOTETOOL, "--db", pg, cmd], 0.3)
                      for cmd in ("exec", "poll", "prepare")]
        base_wall, base_cpu = run(["-c", "pass"], env, args.runs)
        for name, argv, limit in cases:
            wall, cpu = run(["-c", *argv], env, args.runs)
            for kind, ours, base in (("wall", wall, base_wall), ("cpu", cpu, base_cpu)):
                report.add(figure(f"{name} {kind}", ours, base, unit="s",
                                  target=f"<= {limit} s", baseline_is="python -c pass",
                                  check=lambda o, _r, lim=limit: o <= lim, clock=kind,
                                  over_python_s=ours - base))
    return 0


def _seed_label(url: str) -> None:
    """One finished chipRun of label ``bench``: cron's definebyquery of a later stage
    then has a known label and nothing to define (the common tick)."""
    from remotebridge.db.engine import make_engine
    from tests.support.db import add_chipruns

    engine = make_engine(url)
    add_chipruns(engine, "bench", 1, state="full")
    engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
