#!/usr/bin/env python3
"""Benchmark ``prepare`` of a big chip run against the field log's approach, same run.

    .venv/bin/python bench/bench_prepare.py [--json] [--sizes 1000,10000] [--quick]
                                            [--no-postgres] [--pg URL] [--sample N]
                                            [--repeat N]

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

Content digests, same run: every size is prepared ``--repeat`` times (default 2) in
three ways, interleaved: without digests (the hashing step left out, as before
digests existed), with a cold home digest cache (a fresh ``XDG_DATA_HOME``: every
input hashed and stored) and with the warm cache that run left. The fastest of each is
reported; ratio = with digests / without (wall and CPU), target <= 1.2. The first
figures of a size (time, CPU, peak RSS) are the cold prepare's. The inputs are 64 and
128 bytes: the figures are the per-file cost of the digests; hashing real images is
bounded by the disk (about one read of every new input's bytes, once).
"""

from __future__ import annotations

import enum
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from _common import Report, figure, load_note, parser, setup_path

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
DIGEST_SLOWDOWN = 1.2
"""Content digests may make a prepare at most 20% slower (cold cache included)."""
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
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def child(url: str, digests_on: bool) -> None:
    """In a process of its own: prepare remote run 1, print seconds and peak RSS (MB).

    ``digests_on=False`` measures prepare as it was before content digests: the step
    that hashes the inputs (or reads their digests from the home cache) is left out,
    every manifest line keeps an empty sha256 (what a v1 manifest means: sizes alone).
    """
    if not digests_on:
        from remotebridge.prepare.base import PlanBuilder

        PlanBuilder._digest_inputs = lambda self: None  # type: ignore[method-assign]
    engine = make_engine(url)
    config = bench_config()
    before = status_mb("VmHWM")
    t0 = time.perf_counter()
    res = prepare_run(engine, config, 1)
    took = time.perf_counter() - t0
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"s": took, "rss_mb": status_mb("VmHWM"), "start_mb": before,
                      "cmd": res.info["tasks"]["cmd"], "cpu_s": use.ru_utime + use.ru_stime}))


class Mode(enum.Enum):
    """How the inputs' content digests are had in one prepare."""

    OFF = "no digests"
    COLD = "digests cold"
    WARM = "digests warm"


@dataclass
class Run:
    """One prepare in a child: wall seconds, peak RSS (MB), CPU seconds (with start-up)."""

    s: float
    rss_mb: float
    cpu_s: float
    start_mb: float = 0.0
    """VmHWM of the child before prepare began (interpreter, imports, engine)."""


def run_one(url: str, engine: Engine, root: Path, n_exp: int, mode: Mode = Mode.WARM,
            cache_home: Path | None = None) -> Run:
    """One prepare of n_exp exposures in a child, the home digest cache under
    ``cache_home`` (its XDG_DATA_HOME; a fresh folder = a cold cache)."""
    jobs = Path(tempfile.mkdtemp(prefix="rb-bench-jobs-"))
    env = dict(os.environ)
    if cache_home is not None:
        env["XDG_DATA_HOME"] = str(cache_home)
    argv = [sys.executable, __file__, "--child", url]
    if mode is Mode.OFF:
        argv.append("--no-digests")
    try:
        populate(engine, root, n_exp, jobs)
        out = subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout
        got = json.loads(out.strip().splitlines()[-1])
        assert got["cmd"] == n_exp * CHIPS, got
        return Run(got["s"], got["rss_mb"], got["cpu_s"], got["start_mb"])
    finally:
        shutil.rmtree(jobs, ignore_errors=True)


def digest_runs(url: str, engine: Engine, root: Path, n_exp: int,
                repeat: int) -> dict[Mode, Run]:
    """The fastest of ``repeat`` prepares in each mode, interleaved (the machine's load
    drifts: each round measures all three close together). Cold: a fresh cache folder
    each round; warm: the same folder right after the cold prepare filled it."""
    best: dict[Mode, Run] = {}
    for _ in range(repeat):
        cache = Path(tempfile.mkdtemp(prefix="rb-bench-cache-"))
        try:
            got = {Mode.OFF: run_one(url, engine, root, n_exp, Mode.OFF, cache),
                   Mode.COLD: run_one(url, engine, root, n_exp, Mode.COLD, cache),
                   Mode.WARM: run_one(url, engine, root, n_exp, Mode.WARM, cache)}
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        for mode, run in got.items():
            if mode not in best or run.s < best[mode].s:
                best[mode] = run
    return best


def field_log_way(engine: Engine, sample: int) -> float:
    """Seconds per chip image of the field log's prepare: one detrend query per image."""
    d = DetrendFile
    with read_session(engine) as s:
        images = s.execute(select(RawImfile.uri, RawImfile.class_id, RawExp.dateobs,
                                  RawExp.filter).join(RawExp, RawExp.exp_id == RawImfile.exp_id)
                           .order_by(RawImfile.exp_id, RawImfile.class_id).limit(sample)).all()
        lines = []
        t0 = time.perf_counter()
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
    assert len(lines) == len(images)
    return took / max(len(images), 1)


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


def report_size(report: Report, db: str, cmds: int, runs: dict[Mode, Run],
                per_image: float) -> None:
    """The figures of one size on one database: prepare's time (cold cache: new raw
    images have never been hashed) against the field log's way, its CPU and peak RSS,
    and what the content digests cost (cold and warm cache against none)."""
    cold = runs[Mode.COLD]
    report.add(figure(f"prepare {cmds:,} commands {db}", cold.s, per_image * cmds, unit="s",
                      target=f"< {LIMIT_S:g} s",
                      baseline_is=f"field log's way: {per_image * 1000:.2f} ms per chip "
                      "image (sampled) x chip images", note="digests with a cold cache",
                      check=lambda o, _r: o < LIMIT_S, database=db, commands=cmds,
                      cpu_s=cold.cpu_s))
    report.add(figure(f"prepare {cmds:,} commands {db} CPU", cold.cpu_s, None, unit="s",
                      target=f"< {LIMIT_S:g} s", note="CPU of the child process, with "
                      "start-up; the wall time is the figure above",
                      check=lambda o, _r: o < LIMIT_S, database=db, commands=cmds))
    report.add(figure(f"prepare {cmds:,} commands {db} peak RSS", cold.rss_mb, cold.start_mb,
                      unit="MB", target=f"< {LIMIT_MB:g} MB",
                      baseline_is="VmHWM of the child before prepare (interpreter, imports, "
                      "engine)", note="VmHWM of the prepare child (/proc/self/status)",
                      check=lambda o, _r: o < LIMIT_MB, database=db, commands=cmds))
    off = runs[Mode.OFF]
    for mode in (Mode.COLD, Mode.WARM):
        run = runs[mode]
        for what, ours, base in (("", run.s, off.s), (" CPU", run.cpu_s, off.cpu_s)):
            report.add(figure(
                f"prepare {cmds:,} {db} {mode.value}{what}", ours, base, unit="s",
                target=f"ratio <= {DIGEST_SLOWDOWN:g}", higher_is_better=True,
                baseline_is=f"the same prepare {Mode.OFF.value}",
                note="ratio = ours / baseline: the slowdown content digests cost"
                + ("; CPU of the child with its start-up" if what else ""),
                check=lambda _o, r: r is not None and r <= DIGEST_SLOWDOWN,
                database=db, commands=cmds, cache=mode.name.lower()))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    p = parser(__doc__)
    p.add_argument("--quick", action="store_true", help="25 and 100 exposures")
    p.add_argument("--sizes", default="1000,10000", help="exposures per run, comma separated")
    p.add_argument("--sample", type=int, default=3000, help="chip images of the baseline")
    p.add_argument("--no-postgres", action="store_true")
    p.add_argument("--pg", default=os.environ.get("REMOTEBRIDGE_BENCH_PG", PG_URL))
    p.add_argument("--repeat", type=int, default=2,
                   help="rounds per size (each: without digests, cold, warm); the fastest "
                   "of each is reported")
    p.add_argument("--child", help=argparse_hidden())
    p.add_argument("--no-digests", action="store_true", help=argparse_hidden())
    args = p.parse_args(argv)
    if args.child:
        child(args.child, digests_on=not args.no_digests)
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
            runs = digest_runs(url, engine, root, n, args.repeat)
            per_image = field_log_way(engine, min(args.sample, n * CHIPS))
            report_size(report, name, n * CHIPS, runs, per_image)
        engine.dispose()
    shutil.rmtree(dbdir, ignore_errors=True)
    return 0


def argparse_hidden() -> str:
    """Help text of an internal option (argparse.SUPPRESS)."""
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
