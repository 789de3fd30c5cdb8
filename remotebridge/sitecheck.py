"""``remotetool site check``: is every front end of a site usable right now?

For each front end, in order: the master connection (``master``), a trivial command
(``command``), the remote user (``user``), the scheduler (``scheduler``), the scratch
area (``scratch``: writable, and how full per ``df -P``), and the remote helper
(``helper``: ``<remote_python> --version``). A check that cannot run because an
earlier one failed is reported as skipped (``ok = None``). Nothing here raises for a
down link: the rows say so, and the report's ``down`` (the message of
:func:`remotebridge.ssh.live_frontends`, the one judge of which front ends can run a
command) tells the CLI to exit 75.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from remotebridge.config import SiteConfig, SiteKind
from remotebridge.errors import BridgeError, LinkDown, LinkError
from remotebridge.schedulers import make_scheduler
from remotebridge.ssh import Link, answers, links_for, live_frontends
from remotebridge.ssh.openssh import OpenSSHLink

CHECKS = ("master", "command", "user", "scheduler", "scratch", "helper")

_SCRATCH = r"""
d=$1
[ -d "$d" ] || { echo "missing: $d"; exit 3; }
t="$d/.rb_check.$$"
( : > "$t" ) 2>/dev/null || { echo "not writable: $d"; exit 4; }
rm -f -- "$t"
df -P -- "$d" | awk 'NR==2 {print $5 " used, " int($4/1048576) " GiB free"}'
"""


@dataclass(frozen=True)
class CheckRow:
    """One check of one front end: ``ok`` is True, False, or None (skipped)."""

    host: str
    check: str
    ok: bool | None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for --json."""
        return asdict(self)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:200] if lines else ""


@dataclass(frozen=True)
class SiteReport:
    """Every row of a site check, and why no front end can run a command ("" if one can)."""

    rows: list[CheckRow]
    down: str = ""

    @property
    def link_down(self) -> bool:
        """True when no front end can run a command (the CLI exits 75)."""
        return bool(self.down)

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all_ok(self.rows)


def _master(link: Link, live: bool) -> CheckRow:
    if isinstance(link, OpenSSHLink):  # the socket itself: a master can be up yet refuse
        alive = link.master_alive()
        detail = str(link.socket_path) if alive else "no master: run 'control-tool start'"
        return CheckRow(link.host, "master", alive, detail)
    return CheckRow(link.host, "master", live, "local folder, no master needed")


def _command(link: Link, argv: list[str]) -> str:
    return _first_line(link.run(argv, timeout=30).out)


def check_frontend(link: Link, site: SiteConfig, live: bool | None = None) -> list[CheckRow]:
    """All checks of one front end, in :data:`CHECKS` order; ``live`` is whether
    :func:`live_frontends` found it answering (asked here when not given)."""
    rows = [_master(link, answers(site, link) if live is None else live)]
    if not rows[0].ok:
        return rows + [CheckRow(link.host, c, None, "skipped: no master") for c in CHECKS[1:]]
    scratch = site.remote_root or "."
    steps: list[tuple[str, Callable[[], str]]] = [
        ("command", lambda: _command(link, ["echo", "ok"])),
        ("user", lambda: _command(link, ["id", "-un"])),
        ("scheduler", lambda: _first_line(make_scheduler(link, site).probe().out) or "answers"),
        ("scratch", lambda: f"{scratch}: " + _command(
            link, ["sh", "-c", _SCRATCH, "rb-check", scratch])),
        ("helper", lambda: _command(link, ["sh", "-c", '"$1" --version 2>&1', "rb-check",
                                           site.remote_python or "python3"])),
    ]
    down = False
    for name, step in steps:
        if down:
            rows.append(CheckRow(link.host, name, None, "skipped: link down"))
            continue
        try:
            rows.append(CheckRow(link.host, name, True, step()))
        except LinkDown as exc:
            down = True
            rows.append(CheckRow(link.host, name, False, f"link down: {exc}"))
        except (LinkError, BridgeError) as exc:
            detail = exc.evidence.summary() if hasattr(exc, "evidence") else str(exc)
            rows.append(CheckRow(link.host, name, False, detail or str(exc)))
    return rows


def check_site(site: SiteConfig) -> SiteReport:
    """Check every front end of ``site`` (one row per front end and check); whether
    any can run a command is :func:`live_frontends`' answer and message."""
    links = links_for(site)
    live, down = live_frontends(site, lambda _site: links)
    rows: list[CheckRow] = []
    for link in links:
        rows.extend(check_frontend(link, site, live=link in live))
    return SiteReport(rows, down)


def all_ok(rows: list[CheckRow]) -> bool:
    """True when every check passed."""
    return all(r.ok for r in rows)


def describe(site: SiteConfig) -> str:
    """One line naming the site, for the table title."""
    kind = "local folder" if site.kind is SiteKind.LOCAL else "ssh"
    hosts = " ".join(shlex.quote(h) for h in site.frontends) or "localhost"
    return f"site {site.name} ({kind}, {site.scheduler}): {hosts}"
