"""Fixtures of the integration tests (the test site's own, ``test_site`` and
``site_alone``, come from tests/site/fixtures.py through tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remotebridge.ssh import OpenSSHLink
from tests.support.demo_runs import short_dir
from tests.support.sitecfg import open_masters, site_config


@pytest.fixture()
def control_dir() -> Iterator[Path]:
    """A short private socket directory (unix socket paths are limited)."""
    with short_dir("rbi") as d:
        yield d


@pytest.fixture()
def masters(test_site: Any, control_dir: Path) -> Iterator[list[OpenSSHLink]]:
    """Masters to every front end (3 tokens), closed afterwards."""
    site = site_config(test_site, control_dir)
    with open_masters([OpenSSHLink(site, h) for h in site.frontends], test_site.askpass,
                      patience=0, new=True) as links:
        yield links
