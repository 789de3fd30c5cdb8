#!/usr/bin/env python3
"""Benchmark of the link and of the scheduler status query, on the test site.

(a) one remote command over the ControlMaster vs a fresh, non-multiplexed login
    (key + a DMZ one-time password from the site's token helper, via its askpass);
(b) ``status`` of 500 jobs in ONE remote call vs one call per job (the baseline is
    measured on a sample and scaled to 500), against the 2 s target.

Run as root with the test site up:  .venv/bin/python bench/bench_link.py [--json]
``--offline`` runs (b) only, through the LocalLink with a fake ``squeue`` printing
500 captured lines (no site needed). Prints the figures (bench/_common.py).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from _common import Figure, Report, figure, parser, setup_path  # noqa: E402

setup_path()

from remotebridge.config import SchedulerKind, SiteConfig, SiteKind  # noqa: E402
from remotebridge.schedulers import JobState, SlurmScheduler  # noqa: E402
from remotebridge.ssh import LocalLink, OpenSSHLink  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SITE_CMD = REPO / "ops" / "testsite" / "site"
TARGET_STATUS_S = 2.0


def site_status() -> dict[str, object]:
    out = subprocess.run([str(SITE_CMD), "status", "--json"], capture_output=True, text=True,
                         check=True).stdout
    data: dict[str, object] = json.loads(out)
    return data


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def row(name: str, ours: float, base: float, target: str = "(information)",
        limit: float | None = None) -> Figure:
    """A time figure (``limit``: ours must be at most this many seconds)."""
    return figure(name, ours, base, unit="s", target=target,
                  check=lambda o, _r: limit is None or o <= limit)


def bench_latency(st: dict[str, object], link: OpenSSHLink, n_master: int,
                  n_fresh: int) -> Figure:
    over = timed(lambda: link.run(["true"]), n_master)
    env = dict(os.environ, SSH_ASKPASS=str(st["askpass"]), SSH_ASKPASS_REQUIRE="force")
    fresh_cmd = ["ssh", "-F", str(st["ssh_config"]), "-o", "ControlPath=none",
                 "-o", "ControlMaster=no", "fe1", "true"]
    fresh = timed(lambda: subprocess.run(fresh_cmd, env=env, stdin=subprocess.DEVNULL,
                                         check=True, capture_output=True), n_fresh)
    return row(f"(a) 'true' on fe1: master (n={n_master}) vs fresh login (n={n_fresh})",
               statistics.median(over), statistics.median(fresh))


def submit_held(sched: SlurmScheduler, n: int) -> list[str]:
    """n tiny held jobs, submitted in one remote loop (so the set-up stays quick)."""
    folder = f"{sched.site.remote_root}/rb bench/{uuid.uuid4().hex[:8]}"
    sched.link.run(["mkdir", "-p", folder])
    sched.link.run(["sh", "-c", 'printf "#!/bin/sh\\ntrue\\n" > "$1/job.sh"', "w", folder])
    loop = ('i=0; while [ $i -lt "$1" ]; do sbatch --parsable --hold --job-name=bench.$i '
            '--output=/dev/null ${3:+--partition=$3} "$2/job.sh" || exit 1; i=$((i+1)); done')
    out = sched.link.run(["sh", "-c", loop, "bench", str(n), folder, sched.site.partition],
                         timeout=600).out
    return [ln.split(";")[0] for ln in out.split()]


def bench_status(sched: SlurmScheduler, ids: list[str], sample: int) -> list[Figure]:
    ours = timed(lambda: sched.status(ids), 3)
    states = sched.status(ids)
    assert len(states) == len(ids) and JobState.UNKNOWN not in set(states.values()), states
    one = ids[:sample]
    per_job = timed(lambda: [sched.link.run(["squeue", "-h", "-j", j, "-o", "%T"])
                             for j in one], 1)[0] / len(one)
    best = min(ours)
    fig = row(f"(b) status of {len(ids)} jobs: 1 call vs 1 call/job", best,
              per_job * len(ids), f"<= {TARGET_STATUS_S:.1f} s", TARGET_STATUS_S)
    fig.baseline_is = f"one call per job, measured on {len(one)} jobs, scaled"
    return [fig]


def offline_scheduler(tmp: Path, n: int) -> SlurmScheduler:
    lines = "".join(f"{1000 + i}|PENDING|JobHeldUser|bench.{i}|rb:b{i}\n" for i in range(n))
    (tmp / "squeue.txt").write_text(lines)
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "squeue"
    fake.write_text(f"#!/bin/sh\nif [ \"$2\" = -j ]; then grep \"^$3|\" {tmp}/squeue.txt; "
                    f"else cat {tmp}/squeue.txt; fi\n")
    fake.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    site = SiteConfig(scheduler=SchedulerKind.SLURM, local_root=str(tmp / "root"))
    return SlurmScheduler(LocalLink(tmp / "root", env=env), site)


def main() -> int:
    ap = parser(__doc__)
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--sample", type=int, default=25, help="jobs timed one by one (baseline)")
    ap.add_argument("--fresh", type=int, default=5, help="fresh logins (each costs a token)")
    ap.add_argument("--offline", action="store_true", help="(b) only, via LocalLink + fixture")
    args = ap.parse_args()
    out: list[Figure] = []
    tmp = Path(tempfile.mkdtemp(prefix="rbb", dir="/tmp"))
    try:
        if args.offline:
            sched = offline_scheduler(tmp, args.jobs)
            out += bench_status(sched, [str(1000 + i) for i in range(args.jobs)], args.sample)
        else:
            st = site_status()
            site = SiteConfig(name="testsite", kind=SiteKind.SSH, scheduler=SchedulerKind.SLURM,
                              frontends=["fe1"], ssh_config=str(st["ssh_config"]),
                              known_hosts=str(st["known_hosts"]), control_dir=str(tmp / "c"),
                              remote_root=str(st["user_scratch"]),
                              partition=str(st["slurm_partition"]))
            link = OpenSSHLink(site, "fe1")
            link.start_master(askpass=str(st["askpass"]))
            try:
                out.append(bench_latency(st, link, 50, args.fresh))
                sched = SlurmScheduler(link, site)
                ids = submit_held(sched, args.jobs)
                try:
                    out += bench_status(sched, ids, args.sample)
                finally:
                    link.run(["scancel", *ids], check=False, timeout=300)
            finally:
                link.stop_master()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = Report(args.json)
    for fig in out:
        report.add(fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
