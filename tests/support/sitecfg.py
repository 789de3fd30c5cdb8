"""A remotebridge configuration for the test site (ops/testsite), for integration tests.

``site_config_text(test_site, control_dir)`` gives the TOML of ``[site.testsite]``
(kind ssh, scheduler slurm, front ends fe1..fe3, the site's ssh_config, known_hosts
and identity, scratch and permanent roots, Slurm's partition and node size), the
default site; ``write_config`` writes it to a file for the CLI. ``site_config`` is the
same site as a :class:`SiteConfig` for tests that build links themselves, and
``open_masters`` starts their masters with the site's askpass (a dmz token each).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from remotebridge.config import SchedulerKind, SiteConfig, SiteKind
from remotebridge.errors import LinkError
from remotebridge.ssh import Link, OpenSSHLink


def site_values(test_site: Any, control_dir: Path) -> dict[str, Any]:
    """The ``[site.testsite]`` keys for the running test site."""
    return {
        "kind": "ssh", "scheduler": "slurm", "frontends": list(test_site.front_ends),
        "ssh_config": test_site.ssh_config, "known_hosts": test_site.known_hosts,
        "identity": test_site.identity_file, "control_dir": str(control_dir),
        "remote_root": test_site.user_scratch, "permanent_root": test_site.user_permanent,
        "partition": test_site.slurm_partition, "cores_per_node": 4, "max_nodes": 2,
        "walltime_min": 600, "poll_interval": 5, "bundle_bytes": 1_000_000,
        "jobs_per_frontend": 2,
    }


def site_config_text(test_site: Any, control_dir: Path) -> str:
    """TOML text of a configuration whose default site is the test site."""
    lines = ['default_site = "testsite"', "", "[site.testsite]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in site_values(test_site, control_dir).items()]
    return "\n".join(lines) + "\n"


def write_config(path: Path, test_site: Any, control_dir: Path) -> Path:
    """Write the configuration to ``path`` and return it."""
    path.write_text(site_config_text(test_site, control_dir), encoding="utf-8")
    return path


def site_config(test_site: Any, control: Path, **kw: Any) -> SiteConfig:
    """A SiteConfig for the test site (every front end, its Slurm partition) with its
    sockets in ``control``; ``kw`` overrides any field."""
    values: dict[str, Any] = dict(
        name="testsite", kind=SiteKind.SSH, scheduler=SchedulerKind.SLURM,
        frontends=list(test_site.front_ends), ssh_config=test_site.ssh_config,
        known_hosts=test_site.known_hosts, control_dir=str(control),
        remote_root=test_site.user_scratch, partition=test_site.slurm_partition)
    values.update(kw)
    return SiteConfig(**values)


def start_master(link: OpenSSHLink, askpass: str, patience: float = 60.0) -> bool:
    """Start the master, waiting a little if another test has cut the link (``patience``
    0: one try). Returns what :meth:`OpenSSHLink.start_master` returns."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return link.start_master(askpass=askpass)
        except LinkError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(2)


@contextmanager
def open_masters(links: Sequence[Link], askpass: str, *, patience: float = 60.0,
                 new: bool = False) -> Iterator[list[OpenSSHLink]]:
    """Masters to each link's front end (a token each), stopped afterwards; the links
    must be OpenSSH links. ``new``: assert that each start made a new master."""
    ssh: list[OpenSSHLink] = []
    try:
        for link in links:
            assert isinstance(link, OpenSSHLink)
            ssh.append(link)
            started = start_master(link, askpass, patience)
            assert started or not new
        yield ssh
    finally:
        for link in ssh:
            link.stop_master()
