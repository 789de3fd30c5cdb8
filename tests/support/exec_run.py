"""Helpers and fixtures shared by several test modules (first written in
tests/unit/test_exec_run.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine

from remotebridge import config as cfgmod
from remotebridge.config import SiteConfig
from remotebridge.db import statemachine
from remotebridge.db.base import utcnow
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import write_session
from remotebridge.demo.generate import init_survey
from remotebridge.errors import TransientLinkError
from remotebridge.schedulers import JobState, LocalScheduler
from remotebridge.ssh import Link, LocalLink, Result
from tests.support import demo_runs
from tests.support.demo_runs import (
    control_fixture,
    define_and_prepare,
    demo_env,
    local_site,
    wait_job_end,
)


def local_raw(tmp: Path) -> dict[str, object]:
    return {"site": {"demo": local_site(tmp)}}


def local_config(tmp: Path) -> cfgmod.Config:
    return cfgmod.build(local_raw(tmp))


def down_config(tmp: Path, control: Path) -> cfgmod.Config:
    """The same site name, but over ssh to front ends that have no master."""
    return demo_runs.down_config(tmp, control, ["fe-a", "fe-b"])


_env = demo_env


control = control_fixture("rbx")


def make_runs(engine: Engine, tmp: Path, runs: int = 1, exposures: int = 2) -> list[int]:
    """``runs`` prepared chip runs of the demo survey (state pending)."""
    init_survey(engine, tmp / "survey", exposures=exposures, chips=2, size=64)
    cfg = local_config(tmp)
    return [define_and_prepare(engine, cfg, tmp, limit=1) for _ in range(runs)]


def registry(tmp: Path) -> list[str]:
    reg = tmp / "remote side" / ".rb_local_jobs"
    return sorted(p.name for p in reg.iterdir() if p.name.startswith("local.")) \
        if reg.exists() else []


def wait_done(tmp: Path, job_id: str, timeout: float = 120) -> JobState:
    sched = LocalScheduler(LocalLink(tmp / "remote side"), local_config(tmp).site())
    return wait_job_end(sched, job_id, timeout, 0.3)


class LosingLink(LocalLink):
    """A link double: the submission runs, but its answer is lost (transient fault)."""

    lose_find = 0

    def run(self, argv: Sequence[str], **kw: object) -> Result:
        result = super().run(argv, **kw)  # type: ignore[arg-type]
        if "rb-local-submit" in argv:
            raise TransientLinkError("connection reset after sending the job")
        if "rb-local-find" in argv and LosingLink.lose_find > 0:
            LosingLink.lose_find -= 1
            raise TransientLinkError("connection reset while searching")
        return result


def losing_links(site: SiteConfig) -> list[Link]:
    return [LosingLink(site.local_root)]


class MeddlingLink(LocalLink):
    """A link double: when ``at`` (an argv word) runs, another process meddles with the
    run: ``cancel`` (an operator cancels it after our lease expired) or ``steal`` (its
    lease passed to another exec)."""

    engine: Engine
    rid = 0
    at = "rb-local-submit"
    how = "cancel"

    def run(self, argv: Sequence[str], **kw: object) -> Result:
        result = super().run(argv, **kw)  # type: ignore[arg-type]
        if MeddlingLink.at in argv:
            MeddlingLink.at = "-done-"
            with write_session(MeddlingLink.engine) as s:
                run = s.get(RemoteRun, MeddlingLink.rid)
                assert run is not None
                run.lease_until = utcnow() - timedelta(seconds=1)
                if MeddlingLink.how == "steal":
                    run.owner, run.lease_until = "other-host:1", utcnow() + timedelta(hours=1)
                else:
                    s.flush()
                    statemachine.cancel(s, MeddlingLink.rid)
        return result


def meddling(engine: Engine, rid: int, at: str, how: str) -> Callable[[SiteConfig], list[Link]]:
    MeddlingLink.engine, MeddlingLink.rid, MeddlingLink.at, MeddlingLink.how = (
        engine, rid, at, how)
    return lambda site: [MeddlingLink(site.local_root)]
