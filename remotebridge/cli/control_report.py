"""The output of ``control-tool check``: one line per site (plus its masters).

Quiet (``--quiet``) prints nothing when every site is fine, so a cron line mails
only a warning (exit 1) or a cut (exit 75).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from remotebridge.cli.context import AppContext

if TYPE_CHECKING:
    from remotebridge.controlcheck import SiteCheck


def _left(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds <= 0:
        return "past the cut"
    return f"{int(seconds) // 3600}h{int(seconds) % 3600 // 60:02d}m"


def check_line(r: SiteCheck) -> str:
    """``site S: VERDICT; masters up/total; left before the cut; pause; runs in auth``."""
    alive = sum(1 for m in r.masters.all() if m.alive)
    parts = [f"site {r.site}: {r.verdict.value}",
             f"masters up {alive}/{len(r.masters.all())}",
             f"left before the cut {_left(r.left)}"]
    if r.pause is not None:
        parts.append(f"PAUSED since {r.pause.paused_at:%Y-%m-%d %H:%M} UTC by "
                     f"{r.pause.paused_by}" + (f": {r.pause.reason}" if r.pause.reason else ""))
    parts.append(f"runs in auth {r.auth_runs}")
    return "; ".join(parts)


def print_check(app: AppContext, reports: Sequence[SiteCheck]) -> None:
    """JSON, or a line per site with a line per master that is not up."""
    from remotebridge.controlcheck import Verdict

    if app.json:
        app.emit([r.to_dict() for r in reports])
        return
    if app.quiet and all(r.verdict is Verdict.FINE for r in reports):
        return
    for r in reports:
        click.echo(check_line(r))
        for m in r.masters.all():
            if not m.alive:
                click.echo(f"  {m.host}: {m.action or 'down'} {m.error}".rstrip())
        if r.masters.down:
            click.echo(f"  {r.masters.down}")


def show_pauses(app: AppContext) -> None:
    """On stderr (the listing's own format stays as is): a line per paused site."""
    if app.quiet:
        return
    from remotebridge.db import pause as pausedb
    from remotebridge.db.engine import read_session

    with read_session(app.engine) as s:
        pauses = pausedb.all_pauses(s)
    for p in pauses:
        click.echo(f"site {p.site} PAUSED since {p.paused_at:%Y-%m-%d %H:%M} UTC by "
                   f"{p.paused_by}" + (f": {p.reason}" if p.reason else "")
                   + " (exec and poll take no run; control-tool resume)", err=True)
