"""``control-tool check``: is the site's link fine, about to be cut, or down?

Per site: the masters alive, the time left before the site cuts the oldest live
login (``login_lifetime`` after it was opened), the maintenance pause and the runs
paused in ``auth``. The verdict maps to the exit code in the CLI: fine (0), cut
within ``warn_before`` (1: cron mails the key-card holder), down (75).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Engine, func, select

from remotebridge import control
from remotebridge.config import SiteConfig
from remotebridge.db import pause as pausedb
from remotebridge.db.bridge import RemoteRun
from remotebridge.db.engine import read_session
from remotebridge.states import RunState


class Verdict(StrEnum):
    """The state of a site's link as check sees it."""

    FINE = "fine"
    WARN = "cut soon"
    DOWN = "down"


@dataclass
class SiteCheck:
    """One site's check: masters, seconds left before the cut, pause, runs in auth."""

    site: str
    verdict: Verdict
    masters: control.SiteMasters
    left: float | None
    pause: pausedb.Pause | None
    auth_runs: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {"site": self.site, "verdict": self.verdict.value,
                "seconds_left": None if self.left is None else int(self.left),
                "pause": None if self.pause is None else {
                    "reason": self.pause.reason, "by": self.pause.paused_by,
                    "at": self.pause.paused_at.isoformat(timespec="seconds")},
                "auth_runs": self.auth_runs, **self.masters.to_dict()}


def seconds_left(site: SiteConfig, masters: control.SiteMasters,
                 now: datetime | None = None) -> float | None:
    """Seconds until the oldest live master reaches ``login_lifetime``; None when no
    live master has a known opening time."""
    now = now or datetime.now(UTC)
    opened = [datetime.fromisoformat(m.opened) for m in masters.all() if m.alive and m.opened]
    if not opened:
        return None
    cut = min(opened) + timedelta(seconds=site.login_lifetime)
    return (cut - now).total_seconds()


def verdict(site: SiteConfig, masters: control.SiteMasters, left: float | None) -> Verdict:
    """DOWN when a master is not alive; WARN when less than ``warn_before`` is left (or
    the opening time is unknown); else FINE. A local site is always FINE."""
    if masters.mode is control.StartMode.LOCAL:
        return Verdict.FINE if all(m.alive for m in masters.all()) else Verdict.DOWN
    if control.failed(masters):
        return Verdict.DOWN
    if left is None or left < site.warn_before:
        return Verdict.WARN
    return Verdict.FINE


def _db_part(engine: Engine | None, site: SiteConfig,
             is_default: bool) -> tuple[pausedb.Pause | None, int]:
    if engine is None:
        return None, 0
    names = [site.name, ""] if is_default else [site.name]
    with read_session(engine) as s:
        auth = s.execute(select(func.count()).select_from(RemoteRun).where(
            RemoteRun.state == RunState.AUTH.value, RemoteRun.site.in_(names))).scalar_one()
        return pausedb.get(s, site.name), int(auth)


def check(site: SiteConfig, engine: Engine | None, *, is_default: bool = False,
          now: datetime | None = None) -> SiteCheck:
    """Check one site (see the module docstring)."""
    masters = control.status(site)
    left = seconds_left(site, masters, now)
    paused, auth = _db_part(engine, site, is_default)
    return SiteCheck(site.name, verdict(site, masters, left), masters, left, paused, auth)
