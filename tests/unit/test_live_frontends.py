"""``live_frontends``: the one helper (and message) for "which front ends of a site
can run a command now", used by exec and poll."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from remotebridge.config import SiteConfig, SiteKind
from remotebridge.ssh import Link, LocalLink, live_frontends


def _site(tmp_path: Path) -> SiteConfig:
    return SiteConfig(name="lab", kind=SiteKind.LOCAL, local_root=str(tmp_path / "site"),
                      frontends=["fe-a", "fe-b"])


class _CutLink(LocalLink):
    """A front end whose link is cut: no command runs there."""

    def check(self) -> bool:
        return False


def _links(tmp_path: Path, up: set[str]) -> Sequence[Link]:
    return [(LocalLink if h in up else _CutLink)(tmp_path, host=h) for h in ("fe-a", "fe-b")]


def test_the_live_front_ends_and_no_reason(tmp_path: Path) -> None:
    live, why = live_frontends(_site(tmp_path), lambda site: _links(tmp_path, {"fe-b"}))
    assert [link.host for link in live] == ["fe-b"] and why == ""


def test_none_live_says_which_site_and_hosts(tmp_path: Path) -> None:
    live, why = live_frontends(_site(tmp_path), lambda site: _links(tmp_path, set()))
    assert live == []
    assert why == "no front end of site 'lab' can run a command (fe-a, fe-b)"


def test_default_factory_is_the_site_links(tmp_path: Path) -> None:
    live, why = live_frontends(_site(tmp_path))
    assert [link.host for link in live] == ["fe-a", "fe-b"] and why == ""
