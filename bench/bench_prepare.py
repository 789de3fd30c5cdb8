#!/usr/bin/env python3
"""Benchmark ``prepare`` of a big chip run against the seed's 0.2 s per chip image.

    python bench/bench_prepare.py [--quick] [--no-postgres] [--pg URL]

Builds, for 250, 500 and 1000 exposures x 60 chips (``--quick``: 25, 50, 100), the
pipeline rows (rawExp, rawImfile, shared detrends, chipRun) and one remoteRun, on
SQLite and on PostgreSQL (tables dropped and re-created in a schema of their own),
then times ``prepare_run`` (database load, detrend choice, stat of every input,
plan, chunks, script, job folder written). Input files are small real files made
once under ``$TMPDIR/rb-bench-files`` (sizes are stat'ed, as in production).
Prints ``ours_s  seed_s  speedup`` where seed_s = 0.2 s x chip images.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine, insert, text

from remotebridge import config as cfgmod
from remotebridge.db.base import Base
from remotebridge.db.bridge import RemoteComponent, RemoteRun
from remotebridge.db.engine import make_engine, write_session
from remotebridge.db.pipeline import ChipRun, DetrendFile, RawExp, RawImfile
from remotebridge.prepare import prepare_run

CHIPS = 60
FILTERS = ["g", "r", "i", "z", "y"]
SEED_PER_IMAGE = 0.2
T0 = datetime(2011, 7, 3)
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def class_ids() -> list[str]:
    """60 chip names like the GPC1 'xy01'."""
    return [f"xy{i // 8}{i % 8}" for i in range(CHIPS)]


def make_files(root: Path, n_exp: int) -> None:
    """Tiny raw and detrend files (made once, reused)."""
    root.mkdir(parents=True, exist_ok=True)
    for e in range(n_exp):
        d = root / "raw" / f"e{e:05d}"
        if not (d / f"e{e:05d}.{class_ids()[-1]}.fits").exists():
            d.mkdir(parents=True, exist_ok=True)
            for c in class_ids():
                (d / f"e{e:05d}.{c}.fits").write_bytes(b"x" * 64)
    det = root / "det"
    det.mkdir(exist_ok=True)
    for c in class_ids():
        for name in ["bias.p1", "bias.p2", "dark", "mask"] + [f"flat.{f}" for f in FILTERS]:
            p = det / f"{name}.{c}.fits"
            if not p.exists():
                p.write_bytes(b"d" * 128)


def detrend_rows(root: Path) -> list[dict]:
    """Bias in two periods, one dark and mask, one flat per filter, for every chip."""
    mid, end, rows = T0 + timedelta(days=500), T0 + timedelta(days=5000), []
    for c in class_ids():
        spans = [("bias", "", T0, mid, "bias.p1"), ("bias", "", mid, end, "bias.p2"),
                 ("dark", "", T0, end, "dark"), ("mask", "", T0, end, "mask")]
        spans += [("flat", f, T0, end, f"flat.{f}") for f in FILTERS]
        for typ, filt, b, e, name in spans:
            rows.append({"det_type": typ, "class_id": c, "filter": filt, "time_begin": b,
                         "time_end": e, "uri": str(root / "det" / f"{name}.{c}.fits"),
                         "bytes": 128, "registered": T0})
    return rows


def populate(engine: Engine, root: Path, n_exp: int, jobs: Path) -> int:
    """Fresh tables with n_exp exposures; returns the remote_id."""
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    exps = [{"exp_id": e + 1, "exp_name": f"e{e:05d}", "dateobs": T0 + timedelta(hours=e),
             "filter": FILTERS[e % 5], "exp_time": 30.0, "ra": 10.0, "decl": 5.0}
            for e in range(n_exp)]
    imfiles = [{"exp_id": e + 1, "class_id": c,
                "uri": str(root / "raw" / f"e{e:05d}" / f"e{e:05d}.{c}.fits"), "bytes": 64}
               for e in range(n_exp) for c in class_ids()]
    chips = [{"chip_id": e + 1, "exp_id": e + 1, "label": "bench", "state": "new",
              "workdir": f"/data/work/bench/w{e // 100}", "data_group": "bench", "fault": 0,
              "registered": T0} for e in range(n_exp)]
    with write_session(engine) as s:
        s.execute(insert(RawExp), exps)
        s.execute(insert(RawImfile), imfiles)
        s.execute(insert(DetrendFile), detrend_rows(root))
        s.execute(insert(ChipRun), chips)
        s.execute(insert(RemoteRun), [{"remote_id": 1, "stage": "chip", "label": "bench",
                                       "site": "hpc", "state": "new", "path_base": str(jobs)}])
        s.execute(insert(RemoteComponent), [{"remote_id": 1, "stage_id": e + 1, "stage": "chip"}
                                            for e in range(n_exp)])
    return 1


def bench_config() -> cfgmod.Config:
    """A Slurm site like the seed's (24-core nodes, 1000 nodes, fill 0.8)."""
    return cfgmod.build({"site": {"hpc": {
        "kind": "ssh", "scheduler": "slurm", "remote_root": "/scratch/rb",
        "permanent_root": "/projects/rb",
        "path_rules": [{"local": str(Path(tempfile.gettempdir()) / "rb-bench-files" / "det"),
                        "remote": "/projects/rb/detrends", "area": "permanent"}]}}})


def run_one(engine: Engine, root: Path, n_exp: int) -> float:
    """Seconds for one prepare of n_exp exposures."""
    jobs = Path(tempfile.mkdtemp(prefix="rb-bench-jobs-"))
    try:
        rid = populate(engine, root, n_exp, jobs)
        t0 = time.perf_counter()
        res = prepare_run(engine, bench_config(), rid)
        took = time.perf_counter() - t0
        assert res.info["tasks"]["cmd"] == n_exp * CHIPS, res.info["tasks"]
        return took
    finally:
        shutil.rmtree(jobs, ignore_errors=True)


def pg_engine(url: str) -> Engine | None:
    """A PostgreSQL engine on a private schema, or None when not reachable."""
    try:
        base = make_engine(url)
        with base.begin() as conn:
            conn.execute(text("CREATE SCHEMA IF NOT EXISTS rb_bench"))
        base.dispose()
        sep = "&" if "?" in url else "?"
        return make_engine(f"{url}{sep}options=-csearch_path%3Drb_bench")
    except Exception as exc:  # noqa: BLE001 - report and skip
        print(f"# postgresql not available ({str(exc).splitlines()[0]}); skipped")
        return None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="25/50/100 exposures")
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--pg", default=os.environ.get("REMOTEBRIDGE_BENCH_PG", PG_URL))
    args = p.parse_args(argv)
    sizes = [25, 50, 100] if args.quick else [250, 500, 1000]
    root = Path(tempfile.gettempdir()) / "rb-bench-files"
    make_files(root, max(sizes))
    dbdir = Path(tempfile.mkdtemp(prefix="rb-bench-db-"))
    engines = {"sqlite": make_engine(f"sqlite:///{dbdir / 'bench.db'}")}
    if not args.no_postgres and (pg := pg_engine(args.pg)) is not None:
        engines["postgresql"] = pg
    print(f"{'db':<11} {'exposures':>9} {'commands':>9} {'ours_s':>8} {'seed_s':>8} "
          f"{'speedup':>8}")
    for name, engine in engines.items():
        for n in sizes:
            ours, seed = run_one(engine, root, n), SEED_PER_IMAGE * n * CHIPS
            print(f"{name:<11} {n:>9} {n * CHIPS:>9} {ours:>8.2f} {seed:>8.0f} "
                  f"{seed / ours:>7.0f}x", flush=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"# peak RSS {rss:.0f} MB (whole process, including building the test rows)")
    shutil.rmtree(dbdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
