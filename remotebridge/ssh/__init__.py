"""Links to a site: run argv lists on one host, stream bytes, copy files.

``links_for(site)`` gives one :class:`Link` per front end: :class:`OpenSSHLink` over
the ControlMaster sockets for ``kind = "ssh"``, :class:`LocalLink` for ``kind = "local"``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from remotebridge.config import SiteConfig, SiteKind
from remotebridge.ssh.base import DEFAULT_TIMEOUT, Link, Result, RetryPolicy
from remotebridge.ssh.local import LocalLink
from remotebridge.ssh.openssh import (
    OpenSSHLink,
    classify_ssh_failure,
    control_dir,
    master_alive,
    start_master,
    stop_master,
)
from remotebridge.ssh.slots import SessionSlots

__all__ = [
    "DEFAULT_TIMEOUT", "Link", "LocalLink", "OpenSSHLink", "Result", "RetryPolicy",
    "SessionSlots", "answers", "classify_ssh_failure", "control_dir", "links_for", "live_frontends",
    "master_alive", "no_frontend", "start_master", "stop_master",
]


def links_for(site: SiteConfig) -> list[Link]:
    """One link per front end of ``site``, in the configured order."""
    if site.kind is SiteKind.LOCAL:
        hosts = site.frontends or ["localhost"]
        return [LocalLink(site.local_root or ".", host=h) for h in hosts]
    if not site.frontends:
        from remotebridge.errors import ConfigError

        raise ConfigError("an ssh site needs at least one front end",
                          key=f"site.{site.name}.frontends")
    return [OpenSSHLink(site, h) for h in site.frontends]


def no_frontend(site: SiteConfig, links: Sequence[Link]) -> str:
    """The one message for a site none of whose front ends can run a command."""
    return (f"no front end of site '{site.name}' can run a command "
            f"({', '.join(link.host for link in links)})")


def live_frontends(site: SiteConfig,
                   factory: Callable[[SiteConfig], Sequence[Link]] | None = None
                   ) -> tuple[list[Link], str]:
    """(the front ends of ``site`` that run a command right now, why none do).

    ``factory`` gives the site's links (default :func:`links_for`); the reason is
    empty when some front end answers, else :func:`no_frontend`'s message.
    """
    links = list((factory or links_for)(site))
    live = [link for link in links if link.check()]
    return live, "" if live else no_frontend(site, links)


def answers(site: SiteConfig, link: Link) -> bool:
    """Can this one front end of ``site`` run a command now? :func:`live_frontends`
    asked of it alone (for callers that look at front ends one by one)."""
    return bool(live_frontends(site, lambda _site: [link])[0])
