"""The key-card holder's work: open, check and close the master connections; switch users.

One OpenSSH ControlMaster per front end carries every command of every local
process (:mod:`remotebridge.ssh.openssh`). The site cuts them after 12 hours, so
twice a day someone with the key card runs ``control-tool start``: one login per
front end, each asking for a one-time password at the terminal (or answered by an
``SSH_ASKPASS`` program). ``stop`` closes them (``ssh -O exit``) before maintenance.

When the holder changes, the login user changes with them (the field log's
``lanl_switch_users``): :func:`switch_user` records the new user in
``$XDG_STATE_HOME/remotebridge/<site>.user``, which the OpenSSH link passes as
``ssh -l USER`` (it overrides the site's ``user`` key). Switching is refused while a
master is alive: stop first, so no process keeps using the old login.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from remotebridge.config import (
    SiteConfig,
    SiteKind,
    record_former_user,
    site_user,
    user_state_file,
)
from remotebridge.errors import LinkError, Refused, UsageError
from remotebridge.ssh import Link, OpenSSHLink, links_for

_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


class MastersAlive(Refused):
    """A change that needs the masters closed was asked while some are alive."""


@dataclass
class MasterState:
    """One front end's master connection, and what the last action did to it."""

    host: str
    alive: bool
    socket: str = ""
    user: str = ""
    action: str = ""
    """started | already up | failed | stopped | not running | local (no master)"""
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


def _links(site: SiteConfig, hosts: Sequence[str] | None = None) -> list[Link]:
    links = links_for(site)
    if hosts:
        unknown = sorted(set(hosts) - {link.host for link in links})
        if unknown:
            raise UsageError(f"not front ends of site '{site.name}': {', '.join(unknown)}",
                             hint=f"front ends: {', '.join(link.host for link in links)}")
        links = [link for link in links if link.host in hosts]
    return links


def _state(link: Link, site: SiteConfig, action: str = "", error: str = "") -> MasterState:
    if isinstance(link, OpenSSHLink):
        return MasterState(link.host, link.master_alive(), str(link.socket_path),
                           site_user(site), action, error)
    return MasterState(link.host, link.check(), "", site_user(site) or os.environ.get(
        "USER", ""), action or "local (no master)", error)


def status(site: SiteConfig, hosts: Sequence[str] | None = None) -> list[MasterState]:
    """Every front end's master: alive?, socket path, login user."""
    return [_state(link, site) for link in _links(site, hosts)]


def start(site: SiteConfig, hosts: Sequence[str] | None = None, *,
          askpass: str | None = None) -> list[MasterState]:
    """Open a master to each front end that has none (one login, one token, each).

    ``askpass`` (else ``$SSH_ASKPASS`` when set) answers the one-time-password prompt;
    without either, ssh asks at the terminal. A front end that fails is reported
    (``action='failed'``) and the others are still tried.
    """
    askpass = askpass or os.environ.get("SSH_ASKPASS") or None
    states = []
    for link in _links(site, hosts):
        if not isinstance(link, OpenSSHLink):
            states.append(_state(link, site))
            continue
        try:
            started = link.start_master(askpass=askpass)
        except LinkError as exc:
            states.append(_state(link, site, "failed", exc.message))
            continue
        states.append(_state(link, site, "started" if started else "already up"))
    return states


def stop(site: SiteConfig, hosts: Sequence[str] | None = None) -> list[MasterState]:
    """Close the master of each front end (``ssh -O exit``)."""
    states = []
    for link in _links(site, hosts):
        if not isinstance(link, OpenSSHLink):
            states.append(_state(link, site))
            continue
        stopped = link.stop_master()
        states.append(_state(link, site, "stopped" if stopped else "not running"))
    return states


def failed(states: Sequence[MasterState]) -> bool:
    """True when some front end has no live master after a start."""
    return any(not s.alive for s in states)


def switch_user(site: SiteConfig, user: str) -> str:
    """Record ``user`` as the site's login user; returns the previous one.

    Refused (:class:`MastersAlive`) while any master of the site is alive for the
    current user: run ``control-tool stop`` first.
    """
    if not _USER_RE.match(user):
        raise UsageError(f"not a valid user name: {user!r}")
    if site.kind is SiteKind.SSH:
        alive = [s.host for s in status(site) if s.alive]
        if alive:
            raise MastersAlive(
                f"masters are alive for {site_user(site) or 'the current user'} on "
                f"{', '.join(alive)}",
                hint=f"close them first: control-tool stop --site {site.name}")
    previous = site_user(site)
    record_former_user(site.name, previous)  # its jobs stay ours (find by token, Moab)
    path = user_state_file(site.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(user + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return previous
