#!/usr/bin/env python3
"""Benchmark ``exec`` of a big chip run on the local site: first exec vs a repeated
exec of the unchanged job folder, same run, and the inputs hashed by each.

    .venv/bin/python bench/bench_exec.py [--json] [--exposures N] [--quick]

Builds bench_prepare's pipeline rows (N exposures x 60 chips, default 1000 = 60,000
commands and 60,540 inputs: raw chip images hard-linked to a few 64-byte files, 540
shared detrends) in a SQLite database and prepares the run (``prepare_run``) for a
*local* site (``kind: local``, the local scheduler, the "remote side" a folder under
``$TMPDIR``; no ssh). The home digest cache is a fresh one of this run (prepare fills
it). Then:

* first exec (the baseline): the site's check finds every input missing, all are
  pushed (tar bundles through the local link), checked again (each hashed on the site
  once, recorded in the job folder's ``inputs.verified``), the job is submitted;
* the job runs to its end, the run is set back to ``pending`` (as a resubmission
  would), and exec runs again on the unchanged folder (ours): the check must hash
  nothing on the site (``inputs.verified``) and nothing at home (the digest cache).

Files hashed are counted at home (``remotebridge.digests.file_sha256``, in this
process) and on the site: ``remote_python`` is a wrapper that runs ``rbhelper.py``
with its ``digest_matches`` counted (the exec's checks and the job's precheck) and,
inside the job, ends every other program at once (the science tasks are not part of
this benchmark). Target: 0 files hashed on both sides on the repeat.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from _common import Report, figure, load_note, parser, setup_path

setup_path()

from bench_prepare import CHIPS, make_files, populate  # noqa: E402

from remotebridge import config as cfgmod  # noqa: E402
from remotebridge import digests  # noqa: E402
from remotebridge.db import statemachine  # noqa: E402
from remotebridge.db.engine import make_engine, write_session  # noqa: E402
from remotebridge.exec import exec_runs  # noqa: E402
from remotebridge.exec.runner import ExecOutcome, ExecResult  # noqa: E402
from remotebridge.prepare import prepare_run  # noqa: E402
from remotebridge.schedulers import LocalScheduler  # noqa: E402
from remotebridge.ssh import LocalLink  # noqa: E402
from remotebridge.states import RunState  # noqa: E402

WRAPPER = '''#!{python}
"""remote_python of bench_exec: rbhelper.py with its hashes counted; in the job, no
science program runs."""
import importlib.util, os, sys
args = sys.argv[1:]
if args and args[0].endswith("rbhelper.py"):
    spec = importlib.util.spec_from_file_location("rbhelper", args[0])
    helper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helper)
    real, hashed = helper.digest_matches, []
    def counting(path, want):
        hashed.append(path)
        return real(path, want)
    helper.digest_matches = counting
    try:
        rc = helper.main(args[1:])
    finally:
        with open(os.environ["RB_BENCH_HASH_LOG"], "a") as fh:
            fh.write("%s\\t%d\\n" % (args[1] if len(args) > 1 else "", len(hashed)))
    sys.exit(rc)
if os.environ.get("RB_JOB_ID"):
    sys.exit(0)
os.execv(sys.executable, [sys.executable] + args)
'''
JOB_TIMEOUT_S = 600.0
WALLTIME_MAX_S = 60 * 24 * 3600
"""The local scheduler has one node: 60,000 chip commands ask for days (not run)."""


class Bench:
    """The local site, its database and the counters of one benchmark run."""

    def __init__(self, tmp: Path, files: Path, exposures: int) -> None:
        self.tmp, self.files, self.exposures = tmp, files, exposures
        self.side = tmp / "remote side"
        self.log = tmp / "site-hashes.log"
        wrapper = tmp / "python-counting"
        wrapper.write_text(WRAPPER.format(python=sys.executable))
        wrapper.chmod(0o755)
        os.environ["RB_BENCH_HASH_LOG"] = str(self.log)
        self.cfg = cfgmod.build({"site": {"hpc": {
            "kind": "local", "scheduler": "local", "local_root": str(self.side),
            "cores_per_node": 24, "remote_python": str(wrapper),
            "walltime_max": WALLTIME_MAX_S}}})
        self.engine = make_engine(f"sqlite:///{tmp / 'bench.db'}")
        self.home_hashed: list[str] = []
        real = digests.file_sha256

        def counting(path: str) -> str:
            self.home_hashed.append(path)
            return real(path)
        digests.file_sha256 = counting  # type: ignore[assignment]

    def prepare(self) -> int:
        """Prepare remote run 1; the number of inputs."""
        populate(self.engine, self.files, self.exposures, self.tmp / "jobs")
        res = prepare_run(self.engine, self.cfg, 1)
        assert res.info["tasks"]["cmd"] == self.exposures * CHIPS, res.info
        return len(self.home_hashed)

    def exec_once(self) -> tuple[float, ExecOutcome, int, Counter[str]]:
        """Seconds, outcome, files hashed at home and on the site (per helper verb)."""
        self.home_hashed.clear()
        self.log.write_text("")
        t0 = time.perf_counter()
        (out,) = exec_runs(self.engine, self.cfg)
        took = time.perf_counter() - t0
        if out.result is not ExecResult.RUN:
            raise SystemExit(f"bench_exec: exec did not submit: {out.result}: {out.message}")
        return took, out, len(self.home_hashed), self.site_hashed()

    def site_hashed(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for line in self.log.read_text().splitlines():
            verb, _, n = line.partition("\t")
            counts[verb] += int(n)
        return counts

    def job_end(self, job_id: str) -> Counter[str]:
        """Wait for the job (its precheck) to end; the site's hashes since the exec
        (its checks and the job's)."""
        sched = LocalScheduler(LocalLink(self.side), self.cfg.site("hpc"))
        end = time.monotonic() + JOB_TIMEOUT_S
        while not sched.status([job_id])[job_id].terminal:
            if time.monotonic() > end:
                raise SystemExit(f"bench_exec: job {job_id} did not end")
            time.sleep(0.5)
        return self.site_hashed()

    def back_to_pending(self) -> None:
        with write_session(self.engine) as s:
            statemachine.transition(s, 1, RunState.RUN, RunState.PENDING,
                                    note="bench: exec the unchanged folder again")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures."""
    p = parser(__doc__)
    p.add_argument("--exposures", type=int, default=1000, help="x 60 chips = commands")
    p.add_argument("--quick", action="store_true", help="20 exposures")
    args = p.parse_args(argv)
    n = 20 if args.quick else args.exposures
    report = Report(args.json)
    report.note(load_note())
    files = Path(tempfile.gettempdir()) / "rb-bench-files"
    make_files(files, n)
    tmp = Path(tempfile.mkdtemp(prefix="rb-bench-exec-"))
    os.environ["XDG_DATA_HOME"] = str(tmp / "data")  # a digest cache of this run
    os.environ["XDG_STATE_HOME"] = str(tmp / "state")
    try:
        bench = Bench(tmp, files, n)
        prepared = bench.prepare()
        report.note(f"{n * CHIPS:,} commands prepared, {prepared:,} inputs hashed at home")
        t1, first, home1, site1 = bench.exec_once()
        site1 = bench.job_end(str(first.job_id))
        bench.back_to_pending()
        t2, again, home2, site2 = bench.exec_once()
        site2 = bench.job_end(str(again.job_id))
        report_figures(report, n * CHIPS, (t1, first, home1, site1), (t2, again, home2, site2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report_figures(report: Report, cmds: int, first: tuple[float, ExecOutcome, int, Counter[str]],
                   again: tuple[float, ExecOutcome, int, Counter[str]]) -> None:
    """Time of the repeat against the first exec; files hashed at home and on the site."""
    t1, out1, home1, site1 = first
    t2, out2, home2, site2 = again
    zero = again[2] == 0 and sum(site2.values()) == 0
    report.add(figure(f"exec {cmds:,} commands again, unchanged", t2, t1, unit="s",
                      target="nothing hashed again", check=lambda _o, _r: zero,
                      baseline_is=f"first exec of the folder ({out1.missing:,} of "
                      f"{out1.inputs:,} inputs pushed)",
                      note=f"repeat: {out2.missing} inputs missing on the site",
                      commands=cmds, inputs=out1.inputs))
    report.add(figure("files hashed at home, repeated exec", home2, home1, unit="files",
                      target="0", check=lambda o, _r: o == 0,
                      baseline_is="the first exec (the cache prepare filled)"))
    for verb in ("check-inputs", "precheck"):
        report.add(figure(f"files hashed on the site, repeat, {verb}", site2[verb],
                          site1[verb], unit="files", target="0",
                          check=lambda o, _r: o == 0,
                          baseline_is=f"the first exec and its job ({verb})"))


if __name__ == "__main__":
    sys.exit(main())
