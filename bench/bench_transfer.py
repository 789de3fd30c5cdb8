#!/usr/bin/env python3
"""Benchmark the transfer engine on the test site: one file at a time vs tar bundles.

    .venv/bin/python bench/bench_transfer.py [--json] [--small 400] [--small-kb 64]
                                   [--large 3] [--large-mb 16] [--bundle-mb 8] [--jobs 4]
                                   [--rate 200mbit]

Brings the test site up (``ops/testsite/site up``, needs root), opens a master to
each front end (one one-time token each, through the DMZ), makes N small and a few
large random files, and moves them home -> site (push) and site -> home (pull):

  (a) baseline: ``link.put`` / ``link.get`` per file over one front end;
  (b) tar bundles over one front end (``jobs`` bundles at a time);
  (c) tar bundles over all three front ends;
  (d) classic baselines over front end 1's master, same files: one ``scp`` per file,
      ``rsync -a`` (rsync must be on the front end; the test site installs it) and
      ``tar -c | ssh tar -x`` (and back).

Prints MB/s for each and the ratios to the baseline (bench/_common.py figures), and checks that
the transfers spent no DMZ token. Front ends run at the site's rate (200 Mbit/s)
unless ``--rate`` shapes them (put back afterwards).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import Report, figure, parser, setup_path

setup_path()

from remotebridge.config import SchedulerKind, SiteConfig, SiteKind  # noqa: E402
from remotebridge.ssh import Link, OpenSSHLink  # noqa: E402
from remotebridge.transfer import FileSpec, pull, push  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SITE = REPO / "ops" / "testsite" / "site"


def site(*args: str) -> str:
    """Run ``ops/testsite/site ARGS`` and return its stdout (fails loudly)."""
    proc = subprocess.run([str(SITE), *args], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        sys.exit(f"site {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def open_links(status: dict, control: Path) -> list[OpenSSHLink]:
    """Masters to every front end of the running site."""
    cfg = SiteConfig(name="bench", kind=SiteKind.SSH, scheduler=SchedulerKind.SLURM,
                     frontends=list(status["front_ends"]), ssh_config=status["ssh_config"],
                     known_hosts=status["known_hosts"], control_dir=str(control),
                     sessions_per_master=8)
    links = [OpenSSHLink(cfg, h) for h in cfg.frontends]
    for link in links:
        link.start_master(askpass=status["askpass"])
    return links


def make_files(root: Path, args: argparse.Namespace) -> list[tuple[Path, int]]:
    """Random local files: ``--small`` of ``--small-kb`` KB and ``--large`` of ``--large-mb``."""
    rnd = random.Random(3)
    sizes = [args.small_kb * 1024] * args.small + [args.large_mb * 1_000_000] * args.large
    out = []
    for i, size in enumerate(sizes):
        path = root / f"d{i % 20}" / f"file {i:04d}.fits"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rnd.randbytes(size))
        out.append((path, size))
    return out


def one_by_one_push(link: Link, specs: list[FileSpec]) -> None:
    for s in specs:
        link.put(s.local, s.remote)


def one_by_one_pull(link: Link, specs: list[FileSpec]) -> None:
    for s in specs:
        link.get(s.remote, s.local)


def ssh_words(link: OpenSSHLink) -> list[str]:
    """The options of an ssh/scp/rsync call over ``link``'s master (no new login);
    ``-l user`` becomes ``-o User=`` (for scp ``-l`` is a bandwidth limit)."""
    opts = [*link.base_options(), "-o", "BatchMode=yes", "-o", "ControlMaster=no",
            "-o", "ProxyCommand=false"]
    if "-l" in opts:
        i = opts.index("-l")
        opts[i:i + 2] = ["-o", f"User={opts[i + 1]}"]
    return opts


def sh(argv: list[str] | str, **kw: object) -> None:
    """Run a baseline command; any failure ends the benchmark loudly."""
    proc = subprocess.run(argv, capture_output=True, shell=isinstance(argv, str), check=False,
                          **kw)  # type: ignore[call-overload]
    if proc.returncode != 0:
        raise BaselineFailed(f"{argv}: {proc.stderr[-300:]!r}")


class BaselineFailed(Exception):
    """A classic tool failed (e.g. the shared site's link was cut): its figures are
    left out and said so, ours are still reported."""


def scp_each(link: OpenSSHLink, pairs: list[tuple[str, str]]) -> None:
    """One scp process per file over the master (the field log's way)."""
    for src, dst in pairs:
        sh(["scp", "-q", *ssh_words(link), src, dst])


def baseline_mode(name: str, link: OpenSSHLink, src: Path, work: Path,
                  remote_base: str) -> tuple[float, float]:
    """Push then pull the whole ``src`` tree with a classic tool; (push_s, pull_s)."""
    remote, back, host = f"{remote_base}/{name}", work / name, link.host
    files = sorted(p for p in src.rglob("*") if p.is_file())
    link.run(["mkdir", "-p", "--", *sorted({f"{remote}/{p.parent.name}" for p in files})])
    back.mkdir(parents=True)
    for d in {p.parent.name for p in files}:
        (back / d).mkdir(exist_ok=True)
    rsh = shlex.join(["ssh", *ssh_words(link)])
    q = shlex.quote
    if name == "scp-each":
        t_push = timed(lambda: scp_each(link, [(str(p), f"{host}:{remote}/{p.parent.name}/"
                                                f"{p.name}") for p in files]), f"{name} push")
        t_pull = timed(lambda: scp_each(link, [(f"{host}:{remote}/{p.parent.name}/{p.name}",
                                                str(back / p.parent.name / p.name))
                                               for p in files]), f"{name} pull")
    elif name == "rsync":
        t_push = timed(lambda: sh(["rsync", "-a", "-e", rsh, f"{src}/", f"{host}:{remote}/"]),
                       f"{name} push")
        t_pull = timed(lambda: sh(["rsync", "-a", "-e", rsh, f"{host}:{remote}/", f"{back}/"]),
                       f"{name} pull")
    else:  # tar-ssh: tar -c | ssh tar -x, and back
        t_push = timed(lambda: sh(f"tar -C {q(str(src))} -cf - . | {rsh} {q(host)} "
                                  f"{q('tar -xf - -C ' + q(remote))}"), f"{name} push")
        t_pull = timed(lambda: sh(f"{rsh} {q(host)} {q('tar -cf - -C ' + q(remote) + ' .')} "
                                  f"| tar -xf - -C {q(str(back))}"), f"{name} pull")
    for p in files[:: max(1, len(files) // 25)]:
        assert sha(p) == sha(back / p.parent.name / p.name), f"{name}: {p.name} differs"
    link.run(["rm", "-rf", "--", remote])
    shutil.rmtree(back, ignore_errors=True)
    return t_push, t_pull


BUSY: dict[str, float] = {}
"""Per "mode way": the share of the machine's CPU time that was busy while it ran."""


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def timed(fn: Callable[[], object], key: str = "") -> float:
    """Seconds ``fn`` took (exits if it reports failed files); with ``key``, also the
    machine's CPU busy share during it into :data:`BUSY` (on the test site the front
    ends, the DMZ and both ssh hops run on these cores too)."""
    busy0, total0 = cpu_ticks()
    start = time.monotonic()
    result = fn()
    failed = getattr(result, "failed", None)
    if failed:
        sys.exit(f"transfer failed: {getattr(result, 'errors', [])[:3]}")
    busy1, total1 = cpu_ticks()
    if key:
        BUSY[key] = (busy1 - busy0) / max(1, total1 - total0)
    return time.monotonic() - start


def sha(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def run_mode(name: str, links: list[OpenSSHLink], files: list[tuple[Path, int]],
             work: Path, remote_base: str, args: argparse.Namespace) -> tuple[float, float]:
    """Push then pull every file with one strategy; returns (push_s, pull_s)."""
    remote = f"{remote_base}/{name}"
    up = [FileSpec(str(p), f"{remote}/{p.parent.name}/{p.name}", s) for p, s in files]
    down = [FileSpec(str(work / name / f"{i}"), u.remote, u.size) for i, u in enumerate(up)]
    opts = {"bundle_bytes": args.bundle_mb * 1_000_000, "jobs_per_link": args.jobs}
    use = links[:1] if name != "bundles-3fe" else links
    if name == "one-by-one":
        t_push = timed(lambda: one_by_one_push(use[0], up), f"{name} push")
        t_pull = timed(lambda: one_by_one_pull(use[0], down), f"{name} pull")
    else:
        t_push = timed(lambda: push(use, up, **opts), f"{name} push")
        t_pull = timed(lambda: pull(use, down, **opts), f"{name} pull")
    for u, d in zip(up[:: max(1, len(up) // 25)], down[:: max(1, len(up) // 25)], strict=True):
        assert sha(u.local) == sha(d.local), f"{name}: {d.local} differs"
    links[0].run(["rm", "-rf", "--", remote])
    shutil.rmtree(work / name, ignore_errors=True)
    return t_push, t_pull


def main() -> int:
    """Run the benchmark (needs the test site)."""
    ap = parser(__doc__)
    ap.add_argument("--small", type=int, default=400)
    ap.add_argument("--small-kb", type=int, default=64)
    ap.add_argument("--large", type=int, default=3)
    ap.add_argument("--large-mb", type=int, default=16)
    ap.add_argument("--bundle-mb", type=int, default=8)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--rate", default=None,
                    help="shape every front end to this tc rate (restored afterwards)")
    args = ap.parse_args()
    report = Report(args.json)

    site("up")
    status = json.loads(site("status", "--json"))
    rate = args.rate or status["hosts"][status["front_ends"][0]].get("rate", "?")
    if args.rate:
        for fe in status["front_ends"]:
            site("shape", fe, args.rate)
    control = Path(tempfile.mkdtemp(prefix="rbb", dir="/tmp"))
    work = Path(tempfile.mkdtemp(prefix="rb-bench-xfer-"))
    links = open_links(status, control)
    remote_base = f"{status['user_scratch']}/rb-bench-xfer-{int(time.time())}"
    try:
        files = make_files(work / "src", args)
        total = sum(s for _, s in files) / 1e6
        report.note(f"{len(files)} files, {total:.1f} MB ({args.small} x {args.small_kb} KB + "
              f"{args.large} x {args.large_mb} MB); front ends at {rate}; "
              f"bundles of {args.bundle_mb} MB, {args.jobs} jobs per front end")
        tokens = int(site("auth-count").strip())
        rows = {m: run_mode(m, links, files, work, remote_base, args)
                for m in ("one-by-one", "bundles-1fe", "bundles-3fe")}
        for m in ("scp-each", "rsync", "tar-ssh"):
            try:
                rows[m] = baseline_mode(m, links[0], work / "src", work, remote_base)
            except BaselineFailed as exc:
                report.note(f"baseline {m} failed, its figures are left out: {exc}")
        spent = int(site("auth-count").strip()) - tokens
    finally:
        for link in links:
            link.stop_master()
        shutil.rmtree(control, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
        if args.rate:
            for fe in status["front_ends"]:
                site("shape", fe, "default")
    # (figure, ours, baseline, what the baseline is, target ratio)
    cases = [("bundles 1 fe", "bundles-1fe", "one-by-one", "link.put/get per file", 10.0),
             ("fan-out 1 -> 3 fe", "bundles-3fe", "bundles-1fe", "bundles over 1 fe", 2.8),
             ("bundles 1 fe vs scp", "bundles-1fe", "scp-each", "scp per file, master", 10.0),
             ("bundles 1 fe vs rsync", "bundles-1fe", "rsync", "rsync -a over master", 1.0),
             ("bundles 1 fe vs tar|ssh", "bundles-1fe", "tar-ssh", "tar -c | ssh tar -x", 1.0)]
    for name, mode, base_mode, base_is, want in cases:
        if base_mode not in rows:
            continue
        for i, way in enumerate(("push", "pull")):
            t, base = rows[mode][i], rows[base_mode][i]
            cpu = (f"CPU busy {BUSY.get(f'{mode} {way}', 0):.0%} vs "
                   f"{BUSY.get(f'{base_mode} {way}', 0):.0%} of {os.cpu_count()} cores")
            report.add(figure(f"{name} {way}", total / t, total / base, unit="MB/s",
                              higher_is_better=True, baseline_is=base_is, note=cpu,
                              target=f">= {want:g}x", check=lambda _o, r, w=want: (r or 0) >= w))
    report.note("CPU busy (all cores, the site's daemons and both ssh hops included): " +
                ", ".join(f"{k} {v:.0%}" for k, v in BUSY.items()))
    report.note(f"DMZ logins while the transfers ran: {spent} (masters, before: {len(links)}; "
                "the count is site-wide, so other sessions' logins show up here too)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
