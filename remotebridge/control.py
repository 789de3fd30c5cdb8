"""The key-card holder's work: open, check and close the master connections; switch users.

One OpenSSH ControlMaster per front end carries every command of every local
process (:mod:`remotebridge.ssh.openssh`). The site cuts them after 12 hours, so
twice a day someone with the key card runs ``control-tool start``. When the front
ends are reached through a jump host (the DMZ: the site's ``dmz`` key, or the
ProxyJump of the ssh config), start opens one master to it, the only login that asks
a one-time password, and each front end's master through it (``ssh -W`` over the
jump master's socket): one token for the whole site. Without a jump host each front
end asks its own (as before). The password is typed at the terminal or answered by
an ``SSH_ASKPASS`` program. ``stop`` closes them (``ssh -O exit``) before maintenance.
Each opening is recorded (:mod:`remotebridge.masterlog`) for ``control-tool check``.
A socket of another local user is reported, never used nor closed.

When the holder changes, the login user changes with them (the field log's
``lanl_switch_users``): :func:`switch_user` records the new user in
``$XDG_STATE_HOME/remotebridge/<site>.user``, which the OpenSSH link passes as
``ssh -l USER`` (it overrides the site's ``user`` key). Switching is refused while a
master is alive: stop first, so no process keeps using the old login.
"""

from __future__ import annotations

import os
import pwd
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

from remotebridge import masterlog
from remotebridge.config import (
    SiteConfig,
    SiteKind,
    record_former_user,
    site_user,
    user_state_file,
)
from remotebridge.errors import LinkError, Refused, UsageError
from remotebridge.ssh import Link, OpenSSHLink, answers, links_for, no_frontend

_USER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_PLAIN_HOST_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,253}$")


class MastersAlive(Refused):
    """A change that needs the masters closed was asked while some are alive."""


@dataclass
class MasterState:
    """One master connection (a front end's or the jump host's), and what was done to it."""

    host: str
    alive: bool
    socket: str = ""
    user: str = ""
    action: str = ""
    """started | already up | failed | stopped | not running | other user's |
    local (no master)"""
    error: str = ""
    opened: str = ""
    """when the master was opened (UTC, ISO), from the record or the socket file"""
    opened_by: str = ""
    """the local user who opened it (record), or the socket owner when not us"""

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return asdict(self)


class StartMode(StrEnum):
    """How ``start`` logged in: one token for all, or one per front end."""

    VIA_JUMP = "one login via the jump host"
    PER_HOST = "one login per front end"
    LOCAL = "local site (no login)"


@dataclass
class SiteMasters:
    """The site's masters: the jump host's (when the site has one) and the front ends'."""

    mode: StartMode
    masters: list[MasterState]
    jump: MasterState | None = None
    down: str = ""
    """why no front end can run a command (``no_frontend``'s message), "" when one can"""

    def all(self) -> list[MasterState]:
        """The jump host's master first, then the front ends'."""
        return ([self.jump] if self.jump else []) + self.masters

    def __iter__(self) -> Iterator[MasterState]:
        """Every master, as :meth:`all`."""
        return iter(self.all())

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {"mode": self.mode.value, "jump": self.jump.to_dict() if self.jump else None,
                "masters": [m.to_dict() for m in self.masters]}


def _links(site: SiteConfig, hosts: Sequence[str] | None = None) -> list[Link]:
    links = links_for(site)
    if hosts:
        unknown = sorted(set(hosts) - {link.host for link in links})
        if unknown:
            raise UsageError(f"not front ends of site '{site.name}': {', '.join(unknown)}",
                             hint=f"front ends: {', '.join(link.host for link in links)}")
        links = [link for link in links if link.host in hosts]
    return links


def jump_link(site: SiteConfig, links: Sequence[Link]) -> OpenSSHLink | None:
    """The jump host all front ends log in through: the site's ``dmz`` key, else the
    ProxyJump ``ssh -G`` gives every front end (one plain host name, the same for all).
    None when there is none: each front end then asks its own password."""
    ssh = [link for link in links if isinstance(link, OpenSSHLink)]
    if not ssh:
        return None
    name = site.dmz
    if not name:
        jumps = {link.proxyjump for link in ssh}
        name = jumps.pop() if len(jumps) == 1 else ""
        if not _PLAIN_HOST_RE.match(name):
            return None  # several hops, user@host:port, or none: log in per host
    return OpenSSHLink(site, name)


def _foreign(link: OpenSSHLink) -> str:
    """The owner of the link's socket when it is another local user, else ''."""
    try:
        uid = link.socket_path.lstat().st_uid
    except OSError:
        return ""
    if uid == _my_uid():
        return ""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _my_uid() -> int:
    return os.getuid()


def _state(link: Link, site: SiteConfig, action: str = "", error: str = "") -> MasterState:
    if not isinstance(link, OpenSSHLink):
        return MasterState(link.host, answers(site, link), "", site_user(site) or
                           os.environ.get("USER", ""), action or "local (no master)", error)
    other = _foreign(link)
    if other:  # reported, not used, not closed
        return MasterState(link.host, False, str(link.socket_path), site_user(site),
                           "other user's", error or f"master opened by local user {other}: "
                           "not used, not closed", opened_by=other)
    alive = link.master_alive()
    state = MasterState(link.host, alive, str(link.socket_path), site_user(site), action,
                        error)
    if alive:
        rec = masterlog.read(site.name).get(link.host)
        when = rec.at if rec else masterlog.socket_time(link.socket_path)
        state.opened = when.isoformat(timespec="seconds") if when else ""
        state.opened_by = rec.local_user if rec else ""
    return state


def status(site: SiteConfig, hosts: Sequence[str] | None = None) -> SiteMasters:
    """Every master of the site (jump host first): alive?, socket, login user, opened;
    ``down`` is :func:`remotebridge.ssh.no_frontend`'s message when no front end can
    run a command (no master alive; a front end without one: ``live_frontends``)."""
    links = _links(site, hosts)
    jump = jump_link(site, links)
    mode = (StartMode.LOCAL if not any(isinstance(k, OpenSSHLink) for k in links)
            else StartMode.VIA_JUMP if jump else StartMode.PER_HOST)
    states = [_state(link, site) for link in links]
    down = no_frontend(site, links) if links and not any(s.alive for s in states) else ""
    return SiteMasters(mode, states, _state(jump, site) if jump else None, down)


def _open(link: OpenSSHLink, site: SiteConfig, askpass: str | None,
          via: OpenSSHLink | None = None) -> MasterState:
    """Open one master (unless it is alive or another user's) and record it."""
    if _foreign(link):
        return _state(link, site, "failed")
    try:
        started = link.start_master(askpass=askpass, via=via)
    except LinkError as exc:
        return _state(link, site, "failed", f"{link.host} refused: {exc.message}")
    if started:
        masterlog.record(site.name, link.host, login=site_user(site),
                         via=via.host if via else "")
    return _state(link, site, "started" if started else "already up")


def start(site: SiteConfig, hosts: Sequence[str] | None = None, *,
          askpass: str | None = None) -> SiteMasters:
    """Open the site's masters: through one jump-host master (one token) when the site
    has a jump host, else one login per front end (one token each).

    ``askpass`` (else ``$SSH_ASKPASS`` when set) answers the one-time-password prompt;
    without either, ssh asks at the terminal. A front end that fails is reported
    (``action='failed'``, the refusing host named) and the others are still tried; when
    the jump host refuses, no front end is tried (each would need a token).
    """
    askpass = askpass or os.environ.get("SSH_ASKPASS") or None
    links = _links(site, hosts)
    jump = jump_link(site, links)
    if jump is None:
        mode = (StartMode.PER_HOST if any(isinstance(k, OpenSSHLink) for k in links)
                else StartMode.LOCAL)
        return SiteMasters(mode, [_open(k, site, askpass) if isinstance(k, OpenSSHLink)
                                  else _state(k, site) for k in links])
    jstate = _open(jump, site, askpass)
    if not jstate.alive:
        skipped = [_state(k, site, "failed", f"not tried: the jump host {jump.host} "
                                             "has no master") for k in links]
        return SiteMasters(StartMode.VIA_JUMP, skipped, jstate)
    return SiteMasters(StartMode.VIA_JUMP,
                       [_open(k, site, askpass, via=jump) for k in links
                        if isinstance(k, OpenSSHLink)], jstate)


def stop(site: SiteConfig, hosts: Sequence[str] | None = None) -> SiteMasters:
    """Close the front ends' masters, then the jump host's (``ssh -O exit``); another
    user's masters are reported and left alone. ``hosts`` given: only those front ends."""
    links = _links(site, hosts)
    jump = None if hosts else jump_link(site, links)
    states = [_close(link, site) for link in links]
    return SiteMasters(StartMode.VIA_JUMP if jump else StartMode.PER_HOST, states,
                       _close(jump, site) if jump else None)


def _close(link: Link, site: SiteConfig) -> MasterState:
    if not isinstance(link, OpenSSHLink):
        return _state(link, site)
    if _foreign(link):
        return _state(link, site)
    stopped = link.stop_master()
    masterlog.forget(site.name, link.host)
    return _state(link, site, "stopped" if stopped else "not running")


def failed(states: SiteMasters) -> bool:
    """True when some master (jump host or front end) is not alive after a start."""
    return any(not s.alive for s in states.all())


def switch_user(site: SiteConfig, user: str) -> str:
    """Record ``user`` as the site's login user; returns the previous one.

    Refused (:class:`MastersAlive`) while any master of the site is alive for the
    current user: run ``control-tool stop`` first.
    """
    if not _USER_RE.match(user):
        raise UsageError(f"not a valid user name: {user!r}")
    if site.kind is SiteKind.SSH:
        alive = [s.host for s in status(site).all() if s.alive]
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
