"""One campaign, no hands: chip -> cam -> warp -> stack for one label on the test site,
driven only by the shipped crontab's lines (ops/crontab.example, run minute by simulated
minute by tests/support/campaign.py) and the pipeline's own advance, through three login
cuts (``site expire``), a purge of all scratch between chip and cam, and a pause and
resume. The only thing a person types is ``control-tool start`` (one token) when the
day begins and after each cut, and the pause and the resume.

It asserts that every run and every stage run ends full, that nobody and no line ran
``revertauth`` or ``revert`` (runs in ``auth`` resumed by themselves), that cron saw exit
75 only between a cut and the next start, and that the DMZ counted exactly one login,
and the askpass handed out exactly one token, per start.

Expires the logins and purges scratch, so it takes the site alone (``site_alone``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from remotebridge.db.bridge import RemoteComponent, RemoteEvent
from remotebridge.db.engine import make_engine, read_session
from remotebridge.db.pipeline import STAGE_RUN_TABLES
from remotebridge.demo.generate import init_survey
from remotebridge.linkback import RESUMED_NOTE
from remotebridge.runs import RunRecord, list_runs
from tests.support.campaign import (
    CRONTAB,
    Campaign,
    CronLine,
    Crontab,
    Kind,
    Step,
    cron_env,
    parse_minutes,
    shell_runner,
)
from tests.support.cycle_site import BIN
from tests.support.sitecfg import write_config

pytestmark = pytest.mark.site

LABEL = "demo"
STAGES = ("chip", "cam", "warp", "stack")
POLL_INTERVAL_S = 1
START = "$RB/control-tool start --askpass {askpass}"
ADVANCE = CronLine(parse_minutes("4-59/5"), f"$RB/remotetool --quiet demo advance --label {LABEL}",
                   Kind.PIPELINE)
"""The pipeline's own periodic advance (IPP queues the next stage itself): not a line of
ours, and not typed by anyone."""


@dataclass
class World:
    """The test site, the database and what the scenario saw."""

    site: Any
    engine: Engine
    askpass: str
    tokens: Path
    seen: dict[str, Any] = field(default_factory=dict)

    def runs(self, stage: str | None = None) -> list[RunRecord]:
        return list_runs(self.engine, label=LABEL, stage=stage)

    def has(self, stage: str, state: str) -> bool:
        return any(r.state == state for r in self.runs(stage))

    def all_full(self, stage: str) -> bool:
        runs = self.runs(stage)
        return bool(runs) and all(r.state == "full" for r in runs)

    def tokens_used(self) -> int:
        return len(self.tokens.read_text().splitlines()) if self.tokens.exists() else 0


@pytest.fixture()
def world(site_alone: Any, db_url: str, tmp_path: Path, control_dir: Path
          ) -> Iterator[tuple[World, dict[str, str]]]:
    """The demo survey (3 exposures: a stack needs two of one filter), the config with
    the database, a counting askpass, and cron's environment."""
    cfg = write_config(tmp_path / "config.toml", site_alone, control_dir)
    # Cron's 5 simulated minutes pass in seconds here: with poll_interval 1 s a running
    # run is due at every poll line, as with the default 300 s and real 5-minute rounds.
    # A stack task's default 4 threads: more cores than a worker gets on this 2-core machine.
    text = cfg.read_text()
    assert "\npoll_interval = 5\n" in text
    cfg.write_text(text.replace("\npoll_interval = 5\n", f"\npoll_interval = {POLL_INTERVAL_S}\n")
                   + f"\n[database]\nurl = {json.dumps(db_url)}\n"
                   "\n[stage.stack]\nthreads = 2\n")
    engine = make_engine(db_url)
    init_survey(engine, tmp_path / "survey", exposures=3, chips=1, size=64, label=LABEL)
    tokens = tmp_path / "tokens.log"
    askpass = tmp_path / "askpass"
    askpass.write_text(f"#!/bin/sh\necho \"$1\" >> '{tokens}'\n"
                       f"exec '{site_alone.askpass}' \"$@\"\n")
    askpass.chmod(0o755)
    tab = Crontab.parse(CRONTAB.read_text(), replace={"PV3": LABEL})
    env = cron_env(tab, {"RB": str(BIN), "REMOTEBRIDGE_CONFIG": str(cfg),
                         "XDG_STATE_HOME": str(tmp_path / "state"),
                         "XDG_DATA_HOME": str(tmp_path / "data"),
                         "XDG_CONFIG_HOME": str(tmp_path / "config")})
    yield World(site_alone, engine, str(askpass), tokens), env
    shell_runner(120)("$RB/control-tool --quiet stop", env)
    engine.dispose()


def start(w: World) -> Any:
    """The key-card holder: control-tool start, one token."""

    def do(c: Campaign) -> None:
        before = w.tokens_used()
        r = c.operator(START.format(askpass=w.askpass))
        assert r.rc == 0, r.stdout + r.stderr
        w.seen.setdefault("tokens per start", []).append(w.tokens_used() - before)

    return do


def scenario(w: World) -> list[Step]:
    """The campaign's events, in order (each fires at the first minute its time came)."""

    def cut(c: Campaign) -> None:
        w.site.expire()
        # the cut is instant at the site; here the masters take a moment to notice
        assert w.site.wait_until(lambda: masters_down(c.env), timeout=20)
        # A real cut lasts hours; here the next poll line can come within a second of
        # exec's submit, before the run is due (poll_interval 1 s) and so without
        # touching the link. Hold the clock past poll_interval: the cut is then met.
        time.sleep(POLL_INTERVAL_S + 1)

    def pause(c: Campaign) -> None:
        assert c.operator("$RB/control-tool pause --reason 'campaign maintenance'").rc == 0
        w.seen["cam paused"] = [r.remote_id for r in w.runs("cam")]

    def resume(c: Campaign) -> None:
        w.seen["cam at resume"] = [r.state for r in w.runs("cam")]
        assert c.operator("$RB/control-tool resume").rc == 0

    return [
        Step("day begins", lambda c: True, start(w)),
        Step("cut 1: chip job running", lambda c: w.has("chip", "run"), cut),
        Step("start 1", lambda c: c.since("cut 1: chip job running") >= 5, start(w)),
        Step("purge: chip full", lambda c: w.all_full("chip"), lambda c: w.site.purge()),
        Step("pause: cam prepared", lambda c: w.has("cam", "pending"), pause),
        Step("resume", lambda c: c.since("pause: cam prepared") >= 10, resume),
        Step("cut 2: warp prepared", lambda c: w.has("warp", "pending"), cut),
        Step("start 2", lambda c: c.since("cut 2: warp prepared") >= 5, start(w)),
        Step("cut 3: stack job running", lambda c: w.has("stack", "run"), cut),
        Step("start 3", lambda c: c.since("cut 3: stack job running") >= 5, start(w)),
    ]


def masters_down(env: Mapping[str, str]) -> bool:
    """No master of the site is alive (``control-tool status`` exits 75); not recorded:
    the test's own look, not an operator's."""
    rc, _out, _err, _trace = shell_runner(60)("$RB/control-tool --quiet status", env)
    return rc == 75


def windows(c: Campaign) -> list[tuple[int, int]]:
    """(cut minute, next start minute) of each cut: the only times cron may see 75."""
    cuts = sorted((m, name) for name, m in c.fired.items() if name.startswith("cut"))
    return [(m, c.fired["start " + name.split(":")[0].split()[1]]) for m, name in cuts]


def history(engine: Engine) -> list[RemoteEvent]:
    with read_session(engine) as s:
        return list(s.execute(select(RemoteEvent).order_by(RemoteEvent.event_id)).scalars())


def pipeline_states(engine: Engine) -> dict[str, set[str]]:
    with read_session(engine) as s:
        return {stage: set(s.execute(select(model.state)  # type: ignore[attr-defined]
                                     .where(model.label == LABEL)).scalars())  # type: ignore[attr-defined]
                for stage, (model, _pk) in STAGE_RUN_TABLES.items()}


def done(w: World) -> Any:
    return lambda c: all(w.all_full(s) for s in STAGES)


def test_one_campaign_no_hands(world: tuple[World, dict[str, str]]) -> None:
    w, env = world
    logins_before = w.site.auth_count()
    tab = Crontab.parse(CRONTAB.read_text(), replace={"PV3": LABEL}).with_line(ADVANCE)
    camp = Campaign(tab, env, shell_runner(600), scenario(w))
    finished = camp.run(done(w), max_minutes=240)
    trail = [(r.minute, r.kind.value, r.command[:60], r.rc, r.stderr[-300:]) for r in camp.ran
             if r.rc or r.kind is not Kind.CRON]
    assert finished, (camp.fired, [(r.remote_id, r.stage, r.state) for r in w.runs()], trail)

    # every run and every stage run of the label ended full
    assert {r.stage for r in w.runs()} == set(STAGES)
    assert pipeline_states(w.engine) == {s: {"full"} for s in STAGES}
    with read_session(w.engine) as s:
        parts = set(s.execute(select(RemoteComponent.state)).scalars())
    assert parts == {"full"}, "no component abandoned or left behind"

    # a person typed start (once a day and after each cut), pause and resume: nothing else
    typed = [r.command.split()[1] for r in camp.of(Kind.OPERATOR)]
    assert typed == ["start", "start", "pause", "resume", "start", "start"], typed
    assert all(r.rc == 0 for r in camp.of(Kind.OPERATOR))
    every = camp.commands_run()
    assert not [c for c in every if "revert" in c], "no revertauth / revert, by hand or cron"
    events = history(w.engine)
    assert not [e for e in events if e.note in ("revertauth", "revert")]
    # runs caught by a cut went to auth and came back by themselves. How many a cut
    # catches depends on which command meets the dead link first (an exec that finds
    # the link down before claiming leaves a pending run pending): each cut is shown
    # to have been felt by the 75s asserted below, not by a count of auth moves here.
    to_auth = [e for e in events if e.to_state == "auth"]
    resumed = [e for e in events if e.note == RESUMED_NOTE]
    assert to_auth and len(resumed) == len(to_auth), [
        (e.remote_id, e.from_state, e.to_state, e.note) for e in events]

    # one DMZ login, and one token, per start
    starts = typed.count("start")
    assert w.site.auth_count() - logins_before == starts
    assert w.seen["tokens per start"] == [1] * starts

    # cron: 0, or 75 (try later, mailed) only between a cut and the next start
    cuts = windows(camp)
    for r in camp.of(Kind.CRON) + camp.of(Kind.PIPELINE):
        inside = any(a <= r.minute <= b for a, b in cuts)
        assert r.rc == 0 or (r.rc == 75 and inside), (r.minute, r.command, r.rc, r.stderr)
    for a, b in cuts:
        assert any(r.rc == 75 for r in camp.of(Kind.CRON) if a <= r.minute <= b), (
            a, b, [(r.minute, r.command[:50], r.rc, r.stdout[-200:], r.stderr[-200:])
                   for r in camp.of(Kind.CRON) if a <= r.minute <= b])

    # the pause held the prepared cam run back; cron needed no edit
    assert w.seen["cam paused"] and set(w.seen["cam at resume"]) == {"pending"}
