"""Links to a site: run argv lists on one host, stream bytes, copy files.

``links_for(site)`` gives one :class:`Link` per front end: :class:`OpenSSHLink` over
the ControlMaster sockets for ``kind = "ssh"``, :class:`LocalLink` for ``kind = "local"``.
"""

from __future__ import annotations

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
    "SessionSlots", "classify_ssh_failure", "control_dir", "links_for",
    "master_alive", "start_master", "stop_master",
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
