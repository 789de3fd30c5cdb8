"""A remotebridge configuration for the test site (ops/testsite), for integration tests.

``site_config_text(test_site, control_dir)`` gives the TOML of ``[site.testsite]``
(kind ssh, scheduler slurm, front ends fe1..fe3, the site's ssh_config, known_hosts
and identity, scratch and permanent roots, Slurm's partition and node size), the
default site; ``write_config`` writes it to a file for the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
