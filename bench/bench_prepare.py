#!/usr/bin/env python3
"""Benchmark ``prepare`` of a big chip run against the field log's approach, same run.

    .venv/bin/python bench/bench_prepare.py [--json] [--sizes 1000,10000] [--quick]
                                            [--no-postgres] [--pg URL] [--sample N]

For each size (exposures x 60 chips; default 1000 and 10000 = 60,000 and 600,000
commands; ``--quick``: 25, 100) builds the pipeline rows (rawExp, rawImfile, shared
detrends, chipRun) and one remoteRun on SQLite and PostgreSQL (tables re-created in a
schema of their own), then times ``prepare_run`` (database load, detrend choice, stat
of every input, plan, chunks, script, job folder written) in a child process of its
own, so that its peak RSS is prepare's alone. Input files are made once under
``$TMPDIR/rb-bench-files`` and stat'ed by prepare as in production; the raw chip images
are hard links to a few 64-byte files (a real path and stat each, without 600,000 inodes).
The wall time on a loaded shared machine mostly measures the other users: the CPU
seconds of the child (with its start-up) are reported beside it.

Baseline, same run: the field log's approach re-implemented faithfully on a sample of
``--sample`` chip images (default 3,000): per chip image one detrend look-up query
(bias/dark/mask/flat of that chip valid at the exposure's time, the newest), a stat
of its input and its command line; its per-image time x the size's chip images.
Targets: 600,000 commands < 30 s, peak RSS < 600 MB.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from _common import Report, backend_cpu, figure, load_note, parser, setup_path

setup_path()

from sqlalchemy import Engine, insert, or_, select, text  # noqa: E402

from remotebridge import config as cfgmod  # noqa: E402
from remotebridge.db.base import Base  # noqa: E402
from remotebridge.db.bridge import RemoteComponent, RemoteRun  # noqa: E402
from remotebridge.db.engine import make_engine, read_session, write_session  # noqa: E402
from remotebridge.db.pipeline import ChipRun, DetrendFile, RawExp, RawImfile  # noqa: E402
from remotebridge.prepare import prepare_run  # noqa: E402

CHIPS = 60
FILTERS = ["g", "r", "i", "z", "y"]
LIMIT_S, LIMIT_MB = 30.0, 600.0
T0 = datetime(2011, 7, 3)
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def class_ids() -> list[str]:
    """60 chip names like the GPC1 'xy01'."""
    return [f"xy{i // 8}{i % 8}" for i in range(CHIPS)]


def make_files(root: Path, n_exp: int) -> None:
    """The raw and detrend files (made once, reused).

    Every raw chip image is a real directory entry that prepare stat()s like in
    production, but they are hard links to a few 64-byte files: 600,000 inputs cost
    directory entries, not 600,000 inodes and data blocks.
    """
    root.mkdir(parents=True, exist_ok=True)
    for e in range(n_exp):
        raw = root / f"raw.one.{e // 1000}"  # ext4 allows 65,000 links to one inode
        if not raw.exists():
            raw.write_bytes(b"x" * 64)
        d = root / "raw" / f"e{e:05d}"
        if not (d / f"e{e:05d}.{class_ids()[-1]}.fits").exists():
            d.mkdir(parents=True, exist_ok=True)
            for c in class_ids():
                p = d / f"e{e:05d}.{c}.fits"
                if not p.exists():
                    os.link(raw, p)
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
        "frontends": ["fe1"],
        "permanent_root": "/projects/rb",
        "path_rules": [{"local": str(Path(tempfile.gettempdir()) / "rb-bench-files" / "det"),
                        "remote": "/projects/rb/detrends", "area": "permanent"}]}}})


def status_mb(key: str) -> float:
    """A memory figure of this process from /proc/self/status (VmHWM: peak RSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    use = resource.getrusage(resource.RUSAGE_SELF)  # not Linux: the nearest figure
    return use.ru_maxrss / 1024


def child(url: str) -> None:
    """In a process of its own: prepare remote run 1, print seconds, the peak RSS (MB)
    and the peak RSS before prepare started (interpreter, imports, engine)."""
    engine = make_engine(url)
    config = bench_config()
    before = status_mb("VmHWM")
    t0 = time.perf_counter()
    res = prepare_run(engine, config, 1)
    took = time.perf_counter() - t0
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"s": took, "rss_mb": status_mb("VmHWM"), "start_mb": before,
                      "cmd": res.info["tasks"]["cmd"], "cpu_s": use.ru_utime + use.ru_stime}))


def run_one(url: str, engine: Engine, root: Path, n_exp: int) -> dict[str, float]:
    """Seconds (``s``), peak RSS (``rss_mb``; ``start_mb`` before prepare began) and CPU
    seconds (``cpu_s``) of one prepare of n_exp exposures (in a child; its CPU includes
    starting Python and the imports)."""
    jobs = Path(tempfile.mkdtemp(prefix="rb-bench-jobs-"))
    try:
        populate(engine, root, n_exp, jobs)
        out = subprocess.run([sys.executable, __file__, "--child", url], check=True,
                             capture_output=True, text=True).stdout
        got = json.loads(out.strip().splitlines()[-1])
        assert got["cmd"] == n_exp * CHIPS, got
        return got
    finally:
        shutil.rmtree(jobs, ignore_errors=True)


def field_log_way(engine: Engine, sample: int) -> tuple[float, float]:
    """Seconds and CPU seconds (ours plus the PostgreSQL backend's) per chip image of the
    field log's prepare: one detrend query per image."""
    d = DetrendFile
    with read_session(engine) as s:
        pid = s.execute(text("SELECT pg_backend_pid()")).scalar_one() \
            if engine.dialect.name == "postgresql" else None
        images = s.execute(select(RawImfile.uri, RawImfile.class_id, RawExp.dateobs,
                                  RawExp.filter).join(RawExp, RawExp.exp_id == RawImfile.exp_id)
                           .order_by(RawImfile.exp_id, RawImfile.class_id).limit(sample)).all()
        lines = []
        t0, cpu0 = time.perf_counter(), time.process_time() + backend_cpu(pid)
        for uri, class_id, dateobs, filt in images:
            found = s.execute(select(d.det_type, d.uri).where(
                d.class_id == class_id, d.time_begin <= dateobs, d.time_end > dateobs,
                d.det_type.in_(["bias", "dark", "mask", "flat"]),
                or_(d.filter == "", d.filter == filt)).order_by(
                d.det_type, d.registered.desc(), d.det_id.desc())).all()
            chosen: dict[str, str] = {}
            for det_type, det_uri in found:
                chosen.setdefault(det_type, det_uri)
            size = os.stat(uri).st_size
            lines.append(f"rb_chip.py {uri} {size} " + " ".join(chosen[t] for t in sorted(chosen)))
        took = time.perf_counter() - t0
        cpu = time.process_time() + backend_cpu(pid) - cpu0
    assert len(lines) == len(images)
    return took / max(len(images), 1), cpu / max(len(images), 1)


def pg_engine(url: str, report: Report) -> Engine | None:
    """A PostgreSQL engine on a private schema, or None when not reachable."""
    try:
        base = make_engine(url)
        with base.begin() as conn:
            conn.execute(text("CREATE SCHEMA IF NOT EXISTS rb_bench"))
        base.dispose()
        sep = "&" if "?" in url else "?"
        return make_engine(f"{url}{sep}options=-csearch_path%3Drb_bench")
    except Exception as exc:  # noqa: BLE001 - report and skip
        report.note(f"postgresql not available ({str(exc).splitlines()[0]}); skipped")
        return None


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    p = parser(__doc__)
    p.add_argument("--quick", action="store_true", help="25 and 100 exposures")
    p.add_argument("--sizes", default="1000,10000", help="exposures per run, comma separated")
    p.add_argument("--sample", type=int, default=3000, help="chip images of the baseline")
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--pg", default=os.environ.get("REMOTEBRIDGE_BENCH_PG", PG_URL))
    p.add_argument("--child", help=argparse_hidden())
    args = p.parse_args(argv)
    if args.child:
        child(args.child)
        return 0
    sizes = [25, 100] if args.quick else [int(x) for x in args.sizes.split(",")]
    report = Report(args.json)
    report.note(load_note())
    root = Path(tempfile.gettempdir()) / "rb-bench-files"
    make_files(root, max(sizes))
    dbdir = Path(tempfile.mkdtemp(prefix="rb-bench-db-"))
    urls = {"sqlite": f"sqlite:///{dbdir / 'bench.db'}"}
    if not args.no_postgres and pg_engine(args.pg, report) is not None:
        sep = "&" if "?" in args.pg else "?"
        urls["postgresql"] = f"{args.pg}{sep}options=-csearch_path%3Drb_bench"
    for name, url in urls.items():
        engine = make_engine(url)
        for n in sizes:
            got = run_one(url, engine, root, n)
            per_image, cpu_per_image = field_log_way(engine, min(args.sample, n * CHIPS))
            report_one(report, name, n * CHIPS, got, per_image, cpu_per_image)
        engine.dispose()
    shutil.rmtree(dbdir, ignore_errors=True)
    return 0


def report_one(report: Report, name: str, commands: int, got: dict[str, float],
               per_image: float, cpu_per_image: float) -> None:
    """The three figures of one prepare: wall, CPU, peak RSS."""
    sampled = "(sampled) x chip images"
    report.add(figure(f"prepare {commands:,} commands {name}", got["s"], per_image * commands,
                      unit="s", target=f"< {LIMIT_S:g} s",
                      baseline_is=f"field log's way: {per_image * 1000:.2f} ms per chip "
                      f"image {sampled}", check=lambda o, _r: o < LIMIT_S, database=name,
                      commands=commands, cpu_s=got["cpu_s"]))
    report.add(figure(f"prepare {commands:,} commands {name} CPU", got["cpu_s"],
                      cpu_per_image * commands, unit="s", target=f"< {LIMIT_S:g} s",
                      baseline_is=f"field log's way: {cpu_per_image * 1000:.2f} ms CPU per "
                      f"chip image (with the database backend's) {sampled}",
                      note="CPU of the prepare child, with its start-up",
                      check=lambda o, _r: o < LIMIT_S, database=name, commands=commands))
    report.add(figure(f"prepare {commands:,} commands {name} peak RSS", got["rss_mb"],
                      got["start_mb"], unit="MB", target=f"< {LIMIT_MB:g} MB",
                      baseline_is="VmHWM of the child before prepare (interpreter, imports, "
                      "engine)", note="VmHWM of the prepare child (/proc/self/status)",
                      check=lambda o, _r: o < LIMIT_MB, database=name, commands=commands,
                      grew_mb=got["rss_mb"] - got["start_mb"]))


def argparse_hidden() -> str:
    """Help text of an internal option (argparse.SUPPRESS)."""
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
