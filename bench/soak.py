"""The campaign soak: a survey label through chip -> cam -> warp -> stack on the test site
while a seeded fault injector cuts logins and links, purges scratch, kills commands and
Slurm daemons, and drops submit answers (docs/soak.md).

    .venv/bin/python bench/soak.py --minutes 6 --seed 1 [--json]
    .venv/bin/python bench/soak.py --seed 1 --schedule-only     # print the schedule

Needs root, the running test site (``ops/testsite/site``) and PostgreSQL
(``--db``, default ``$RB_TEST_PG_URL``; every table of that database is emptied). Two
"hosts" (bench/soak_hosts.py, each its own process session and state folder) run the
cron lines in a loop against the one database and one shared ``path_base``. Prints the
schedule, each fault as it happens, then one figure per check (``--json``: one object
per line). Exits 0 when the soak ran; the figures say whether it passed (``met``), and a
failing soak prints the seed and the last events of each run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import ROOT, Report, figure, parser, setup_path

setup_path()

from soak_checks import JobSampler, check  # noqa: E402
from soak_faults import ALL_KINDS, Injector, Kind, make_schedule  # noqa: E402

BIN = Path(sys.executable).parent
SITE = str(ROOT / "ops" / "testsite" / "site")
LABEL = "soak"
SETTLED = 10.0      # seconds without change (nothing busy, stack begun): the campaign ended
STOP_GRACE = 30.0   # seconds the hosts get to finish their commands at the end
ENDING = 40.0       # seconds of the budget kept for stopping the hosts and the checks


@dataclass
class Soak:
    """One soak's folders, configuration and running hosts."""

    work: Path
    db: str
    status: dict[str, Any]
    lease: int
    max_attempts: int
    limit: int = 0
    mails_seen: int = 0
    cfg: Path = field(init=False)
    control: Path = field(init=False)
    hosts: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cfg = self.work / "config.toml"
        self.control = Path(tempfile.mkdtemp(prefix="rbsk", dir="/tmp"))

    def write_config(self) -> None:
        """The test site as the default site, the database, the short lease, and one
        shared path_base per stage."""
        from tests.support.sitecfg import site_config_text

        text = site_config_text(types.SimpleNamespace(**self.status), self.control)
        text = text.replace('default_site = "testsite"\n',
                            f'default_site = "testsite"\n\n[database]\nurl = "{self.db}"\n'
                            f"lease_seconds = {self.lease}\n")
        text += f"max_attempts = {self.max_attempts}\n"
        for stage in ("chip", "cam", "warp", "stack"):
            text += f'\n[stage.{stage}]\npath_base = "{self.work / "jobs" / stage}"\n'
        self.cfg.write_text(text, encoding="utf-8")

    def start_masters(self) -> bool:
        """``control-tool start`` with the site's askpass (one token)."""
        r = subprocess.run([str(BIN / "control-tool"), "--config", str(self.cfg), "start",
                            "--askpass", self.status["askpass"]], capture_output=True,
                           text=True, timeout=120, check=False)
        return r.returncode == 0

    def link_down(self) -> bool:
        """``control-tool check`` says the site is down (exit 75)."""
        r = subprocess.run([str(BIN / "control-tool"), "--config", str(self.cfg), "--quiet",
                            "check"], capture_output=True, text=True, timeout=120, check=False)
        return r.returncode == 75

    def start_hosts(self, names: tuple[str, ...] = ("hostA", "hostB")) -> None:
        """Each host its own session (process tree) and state folder."""
        for name in names:
            argv = [sys.executable, str(ROOT / "bench" / "soak_hosts.py"), "--name", name,
                    "--config", str(self.cfg), "--label", LABEL, "--state",
                    str(self.work / "hosts" / name), "--stop", str(self.work / "stop"),
                    "--limit", str(self.limit)]
            self.hosts.append(subprocess.Popen(argv, start_new_session=True))

    def stop_hosts(self, grace: float = STOP_GRACE) -> None:
        """Touch the stop file; whatever still runs after ``grace`` is killed."""
        (self.work / "stop").touch()
        deadline = time.monotonic() + grace
        for p in self.hosts:
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def check_hosts(self) -> None:
        """Stop the soak (SystemExit naming the host) when a host's loop has ended before
        the stop file: a soak without its cron would measure nothing."""
        for p in self.hosts:
            if p.poll() is not None and not (self.work / "stop").exists():
                raise SystemExit(f"soak: host process {p.args[3]} exited with {p.returncode} "
                                 "(its error is above)")

    def down_mails(self) -> int:
        """``control-tool check`` lines of the hosts that exited 75 (site down: cron mails
        the holder) since the last call."""
        mails = [c for c in self.commands()
                 if "control-tool" in c["command"] and " check" in c["command"]
                 and c["rc"] == 75]
        new = len(mails) - self.mails_seen
        self.mails_seen = len(mails)
        return max(0, new)

    def commands(self) -> list[dict[str, Any]]:
        """Every command the hosts ran, in order of start."""
        rows = []
        for log in (self.work / "hosts").glob("*/commands.jsonl"):
            rows += [json.loads(line) for line in log.read_text().splitlines() if line]
        return sorted(rows, key=lambda r: r["t0"])


def site_status() -> dict[str, Any]:
    """``site status --json`` (the site must be up)."""
    r = subprocess.run([SITE, "status", "--json"], capture_output=True, text=True, timeout=60,
                       check=False)
    status = json.loads(r.stdout)
    if status.get("state") != "up":
        raise SystemExit(f"soak: the test site is not up ({status.get('state')})")
    return dict(status)


def prepare_database(url: str, survey: Path, exposures: int, chips: int,
                     poison: int) -> set[int]:
    """Empty the database, make the survey, and spoil one raw image of the first
    ``poison`` exposures (their chip task fails every time); returns those chip_ids."""
    from sqlalchemy import select

    from remotebridge.db.engine import make_engine, read_session
    from remotebridge.db.migrate import upgrade
    from remotebridge.db.pipeline import ChipRun, RawImfile
    from remotebridge.demo.generate import init_survey
    from tests.support.db import truncate_pg

    engine = make_engine(url)
    upgrade(engine)
    truncate_pg(url)
    init_survey(engine, survey, exposures=exposures, chips=chips, size=64, label=LABEL)
    with read_session(engine) as s:
        runs = s.execute(select(ChipRun.chip_id, ChipRun.exp_id)
                         .order_by(ChipRun.chip_id).limit(poison)).all()
        for _chip_id, exp_id in runs:
            uri = s.execute(select(RawImfile.uri).where(RawImfile.exp_id == exp_id)
                            .order_by(RawImfile.class_id).limit(1)).scalar_one()
            Path(uri).write_bytes(b"SIMPLE  = this is not a FITS image\n" * 3)
    engine.dispose()
    return {chip_id for chip_id, _ in runs}


def progress(url: str) -> tuple[int, int, int, int]:
    """(runs still busy, remote runs, pipeline stage runs, stack runs): the soak has
    settled when nothing is busy, stack has begun, and this stops changing."""
    from sqlalchemy import func, select

    from remotebridge.db.bridge import RemoteRun
    from remotebridge.db.engine import make_engine, read_session
    from remotebridge.db.pipeline import CamRun, ChipRun, StackRun, WarpRun

    engine = make_engine(url)
    try:
        with read_session(engine) as s:
            def count(t: Any, *where: Any) -> int:
                return int(s.execute(select(func.count()).select_from(t).where(*where))
                           .scalar_one())
            busy = count(RemoteRun, RemoteRun.state.in_(["new", "pending", "run", "auth"]))
            stage_runs = sum(count(t) for t in (ChipRun, CamRun, WarpRun, StackRun))
            return busy, count(RemoteRun), stage_runs, count(StackRun)
    finally:
        engine.dispose()


def play(soak: Soak, injector: Injector, schedule: list[Any], deadline: float,
         quiet: bool) -> None:
    """Each fault at its time (later if the one before held the injector), then wait
    until the campaign settles or the deadline passes. A dropped submit answer or a cut
    that took the masters gets the one human action: ``control-tool start``; so does a
    cron mail from ``control-tool check`` saying the site is down (:func:`tend`)."""
    for fault in schedule:
        if time.monotonic() > deadline - 60:  # leave the campaign time to drain
            break
        while time.monotonic() < injector.t0 + fault.at:
            tend(soak, injector, quiet)
            time.sleep(min(3.0, max(0.0, injector.t0 + fault.at - time.monotonic())))
        event = injector.play(fault)
        if fault.kind is Kind.CUT and soak.link_down():
            injector.human_start()  # the cut took the masters: one token
        if not quiet:
            state = "done" if event.done else "armed" if fault.kind is Kind.DROP else "MISSED"
            print(f"# t+{event.at:6.1f}s {event.kind.value} {event.target} {state}: "
                  f"{event.detail}", flush=True)
        tend(soak, injector, quiet)
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        tend(soak, injector, quiet)
        now = progress(soak.db)
        if now != last:
            last, since = now, time.monotonic()
        elif now[0] == 0 and now[3] > 0 and time.monotonic() - since > SETTLED:
            return
        time.sleep(3)


def tend(soak: Soak, injector: Injector, quiet: bool) -> None:
    """What the key-card holder does between faults: record the submit answers dropped
    since the last look, and read the cron mail: when a host's ``control-tool check``
    exited 75 (site down) since the last look, or a dropped answer took the connection,
    and the site is still down, type ``control-tool start`` and one token."""
    soak.check_hosts()
    new = injector.collect_drops()
    if new and not quiet:
        for event in injector.events[-new:]:
            print(f"# t+{event.at:6.1f}s drop done: {event.detail}", flush=True)
    mails = soak.down_mails()
    if (new or mails) and soak.link_down():
        if not quiet:
            why = f"{mails} cron mail(s) 'site down'" if mails else "dropped answer"
            print(f"# t+{time.monotonic() - injector.t0:6.1f}s start after {why}",
                  flush=True)
        injector.human_start()


def last_events(url: str, per_run: int = 3) -> list[str]:
    """The last history lines of each run (printed by a failing soak)."""
    from sqlalchemy import select

    from remotebridge.db.bridge import RemoteEvent
    from remotebridge.db.engine import make_engine, read_session

    engine = make_engine(url)
    with read_session(engine) as s:
        rows = s.execute(select(RemoteEvent).order_by(RemoteEvent.event_id)).scalars().all()
        lines: dict[int, list[str]] = {}
        for e in rows:
            lines.setdefault(e.remote_id, []).append(
                f"run {e.remote_id} {e.at:%H:%M:%S} {e.from_state}->{e.to_state} "
                f"{e.actor}: {e.note[:200]}")
    engine.dispose()
    return [line for rid in sorted(lines) for line in lines[rid][-per_run:]]


def manual_in_history(url: str) -> int:
    """History lines written by an operator's command (revert, revertauth, cancel)."""
    from sqlalchemy import func, select

    from remotebridge.db.bridge import RemoteEvent
    from remotebridge.db.engine import make_engine, read_session

    engine = make_engine(url)
    with read_session(engine) as s:
        n = s.execute(select(func.count()).select_from(RemoteEvent).where(
            RemoteEvent.note.in_(["revert", "revertauth", "cancel"]))).scalar_one()
    engine.dispose()
    return int(n)


def arguments() -> Any:
    """The soak's options."""
    ap = parser(__doc__)
    ap.add_argument("--minutes", type=float, default=6.0, help="wall time budget")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--per-kind", type=int, default=3, help="faults of each kind")
    ap.add_argument("--kinds", default=",".join(k.value for k in ALL_KINDS),
                    help="comma-separated fault kinds")
    ap.add_argument("--exposures", type=int, default=6)
    ap.add_argument("--chips", type=int, default=4)
    ap.add_argument("--poison", type=int, default=1, help="exposures with one spoilt image")
    ap.add_argument("--limit", type=int, default=0,
                    help="components per run (definebyquery --limit; 0: the crontab's)")
    ap.add_argument("--lease", type=int, default=20, help="[database] lease_seconds")
    ap.add_argument("--max-attempts", type=int, default=2)
    ap.add_argument("--db", default=os.environ.get("RB_TEST_PG_URL", ""))
    ap.add_argument("--window", type=float, default=0.3,
                    help="part of the wall time the faults are scheduled in")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--schedule-only", action="store_true")
    return ap.parse_args()


def main() -> int:
    """Run the soak; 0 when it ran (the figures say whether it passed)."""
    a = arguments()
    kinds = [Kind(k) for k in a.kinds.split(",") if k]
    window = a.minutes * 60 * a.window  # faults in the first part, then the campaign drains
    schedule = make_schedule(a.seed, window, kinds, a.per_kind)
    out = Report(a.json)
    out.note(f"seed {a.seed}: {len(schedule)} faults over {window:.0f}s")
    for f in schedule:
        out.note(f.describe())
    if a.schedule_only:
        return 0
    if not a.db.startswith("postgresql"):
        raise SystemExit("soak: --db (or $RB_TEST_PG_URL) must be a PostgreSQL URL")
    t_start = time.monotonic()
    # a timeout's SIGTERM must still stop the hosts and heal the site (finally below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    soak = Soak(Path(tempfile.mkdtemp(prefix="rb-soak-")), a.db, site_status(), a.lease,
                a.max_attempts, a.limit)
    poisoned = prepare_database(a.db, soak.work / "survey", a.exposures, a.chips, a.poison)
    soak.write_config()
    injector = Injector(SITE, soak.start_masters, lambda: [p.pid for p in soak.hosts])
    slurm_log = Path(soak.status["site_root"]) / "state" / "log" / "slurmctld.log"
    offset = slurm_log.stat().st_size
    sampler = JobSampler(SITE, soak.status["slurm_conf"])
    sampler.start()
    injector.collect_drops()  # answers dropped before this soak are not its own
    try:
        if not injector.human_start():
            raise SystemExit("soak: control-tool start failed at the beginning")
        soak.start_hosts()
        injector.t0 = time.monotonic()
        play(soak, injector, schedule, t_start + a.minutes * 60 - ENDING, a.json)
    finally:
        soak.stop_hosts()
        sampler.stop()
        subprocess.run([SITE, "drop-submit", "0"], capture_output=True, check=False)
        subprocess.run([SITE, "heal", "all"], capture_output=True, check=False)
        subprocess.run([SITE, "start-slurm"], capture_output=True, check=False)
    from remotebridge.db.engine import make_engine

    engine = make_engine(a.db)
    rep = check(engine, soak.work, [Path(soak.status["user_scratch"]),
                                    Path(soak.status["user_permanent"])],
                slurm_log, offset, sampler, poisoned)
    engine.dispose()
    manual = injector.other_manual + manual_in_history(a.db)
    wall = time.monotonic() - t_start
    figures(out, rep, injector, kinds, manual, wall, soak.commands(), a.per_kind,
            a.minutes * 60)
    failures = rep.failures(manual) + short_of(injector, kinds, a.per_kind)
    if wall > a.minutes * 60:
        failures.append(f"wall time {wall:.0f}s over the {a.minutes * 60:.0f}s budget")
    if failures:
        report_failure(out, a.seed, failures, last_events(a.db), soak.commands())
    subprocess.run([str(BIN / "control-tool"), "--config", str(soak.cfg), "stop"],
                   capture_output=True, check=False)
    if not a.keep:
        shutil.rmtree(soak.work, ignore_errors=True)
        shutil.rmtree(soak.control, ignore_errors=True)
    return 0


def report_failure(out: Report, seed: int, failures: list[str], events: list[str],
                   commands: list[dict[str, Any]]) -> None:
    """What failed, the last history lines of each run and the last cron commands that
    exited non-zero: as notes in table mode, on stderr always (``--json`` keeps stdout
    one figure per line), so a failing soak in a test log names its seed and evidence."""
    lines = [f"FAILED (seed {seed}): " + " | ".join(failures), *events]
    lines += [f"{c['host']} rc={c['rc']} {c['command'][-60:]}: {c['err'][-160:]}"
              for c in [c for c in commands if c["rc"] != 0][-10:]]
    for line in lines:
        out.note(line)
        print(line, file=sys.stderr)
    print(f"soak failed: seed {seed}", file=sys.stderr)


def figures(out: Report, rep: Any, injector: Injector, kinds: list[Kind], manual: int,
            wall: float, commands: list[dict[str, Any]], per_kind: int,
            budget: float) -> None:
    """One figure per check (baseline: none; each is a count with a target)."""
    def zero(name: str, n: int, unit: str = "count", note: str = "") -> None:
        out.add(figure(name, n, None, unit=unit, target="0", check=lambda o, _r: o == 0,
                       note=note))

    def info(name: str, n: float, unit: str = "count", note: str = "") -> None:
        out.add(figure(name, n, None, unit=unit, target="-", check=lambda o, _r: True,
                       note=note))

    info("runs defined", sum(rep.runs.values()), note=json.dumps(rep.runs))
    info("runs full", rep.runs.get("full", 0))
    info("runs error", rep.runs.get("error", 0), note=" | ".join(rep.errors))
    zero("stages never run (campaign unfinished)", len(rep.stages_missing),
         note=", ".join(rep.stages_missing))
    zero("runs not full (without poisoned inputs)", len(rep.not_full),
         note="; ".join(rep.not_full))
    for stage, d in rep.stages.items():
        info(f"{stage}: good results / components", d["good"], note=json.dumps(d))
    info("components by state", sum(rep.components.values()), note=json.dumps(rep.components))
    out.add(figure("poisoned inputs abandoned", rep.poisoned_abandoned, None, unit="count",
                   target=f"= {rep.poisoned}", check=lambda o, _r: o == rep.poisoned))
    zero("lost products", len(rep.lost), note="; ".join(rep.lost[:10]))
    zero("duplicated result rows", rep.duplicates)
    zero("double submissions (one token, two jobs)", len(rep.double_submissions),
         note="; ".join(rep.double_submissions))
    info("scheduler submissions", rep.submissions,
         note="untracked: " + "; ".join(rep.untracked_jobs))
    zero("stale staging/half files at home", len(rep.stale_home),
         note="; ".join(rep.stale_home[:5]))
    zero("stale staging/half files on the site", len(rep.stale_site),
         note="; ".join(rep.stale_site[:5]))
    zero("manual commands other than control-tool start", manual)
    info("tokens typed (control-tool start)", injector.starts)
    for kind in kinds:
        n = sum(1 for e in injector.events if e.kind is kind and e.done)
        out.add(figure(f"faults injected: {kind.value}", n, None, unit="count",
                       target=f">= {per_kind}", check=lambda o, _r: o >= per_kind,
                       note="; ".join(e.detail for e in injector.events if e.kind is kind)))
    failed = sum(1 for c in commands if c["rc"] not in (0,))
    info("cron commands run", len(commands), note=f"{failed} exited non-zero")
    out.add(figure("wall time", round(wall, 1), None, unit="s", target=f"<= {budget:.0f}",
                   check=lambda o, _r: o <= budget))


def short_of(injector: Injector, kinds: list[Kind], per_kind: int) -> list[str]:
    """The fault kinds injected fewer than ``per_kind`` times."""
    done = {k: sum(1 for e in injector.events if e.kind is k and e.done) for k in kinds}
    return [f"faults injected: {k.value}: {n} < {per_kind}" for k, n in done.items()
            if n < per_kind]


if __name__ == "__main__":
    sys.exit(main())
