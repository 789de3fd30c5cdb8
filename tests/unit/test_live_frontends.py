"""``live_frontends``: the one helper (and message) for "which front ends of a site
can run a command now", used by exec, poll, control and site check."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from remotebridge import control, controlcheck, sitecheck, ssh
from remotebridge.cli import remotetool
from remotebridge.cli.control import main as control_main
from remotebridge.config import SchedulerKind, SiteConfig, SiteKind
from remotebridge.ssh import Link, LocalLink, live_frontends, no_frontend

_DOWN = "no front end of site 'lab' can run a command (fe-a, fe-b)"


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


def test_answers_asks_live_frontends_of_the_one_link(tmp_path: Path) -> None:
    up, cut = _links(tmp_path, {"fe-a"})
    assert ssh.answers(_site(tmp_path), up) and not ssh.answers(_site(tmp_path), cut)


def _up_site(tmp_path: Path) -> SiteConfig:
    """A local site whose folder exists: every front end would answer if asked."""
    (tmp_path / "site").mkdir(exist_ok=True)
    return SiteConfig(name="lab", kind=SiteKind.LOCAL, local_root=str(tmp_path / "site"),
                      frontends=["fe-a", "fe-b"], scheduler=SchedulerKind.LOCAL,
                      remote_root=str(tmp_path / "site"))


def _only(up: set[str], asked: list[str]) -> Callable[..., tuple[list[Link], str]]:
    """A stand-in for ``live_frontends``: only ``up`` answer; records who asked."""

    def fake(site: SiteConfig, factory: Callable[[SiteConfig], Sequence[Link]] | None = None
             ) -> tuple[list[Link], str]:
        links = list(factory(site)) if factory else []
        asked.extend(link.host for link in links)
        live = [link for link in links if link.host in up]
        return live, "" if live else no_frontend(site, links)

    return fake


@pytest.mark.parametrize("patched, down_of", [
    (sitecheck, lambda site: sitecheck.check_site(site).down),
    (ssh, lambda site: control.status(site).down),
], ids=["site check", "control status"])
def test_asks_live_frontends_and_says_its_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patched: object,
        down_of: Callable[[SiteConfig], str]) -> None:
    asked: list[str] = []
    monkeypatch.setattr(patched, "live_frontends", _only(set(), asked))
    assert down_of(_up_site(tmp_path)) == _DOWN
    assert sorted(set(asked)) == ["fe-a", "fe-b"]


def test_site_check_down_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sitecheck, "live_frontends", _only(set(), []))
    report = sitecheck.check_site(_up_site(tmp_path))
    assert report.link_down and not report.ok
    masters = [r for r in report.rows if r.check == "master"]
    assert [(r.host, r.ok) for r in masters] == [("fe-a", False), ("fe-b", False)]


def test_site_check_one_front_end_up_is_not_down(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sitecheck, "live_frontends", _only({"fe-b"}, []))
    report = sitecheck.check_site(_up_site(tmp_path))
    assert not report.link_down and report.down == ""
    by = {(r.host, r.check): r.ok for r in report.rows}
    assert by[("fe-a", "master")] is False and by[("fe-a", "command")] is None
    assert by[("fe-b", "master")] is True and by[("fe-b", "command")] is True


def _lab_config(tmp_path: Path) -> Path:
    cfg = tmp_path / "rb.toml"
    cfg.write_text(f'[site.lab]\nkind = "local"\nscheduler = "local"\n'
                   f'frontends = ["fe-a", "fe-b"]\nlocal_root = "{tmp_path / "site"}"\n')
    return cfg


def test_site_check_cli_exits_75_with_the_helpers_message(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_env: str) -> None:
    monkeypatch.setattr(sitecheck, "live_frontends", _only(set(), []))
    cfg = _lab_config(tmp_path)
    res = CliRunner().invoke(remotetool.main, ["--config", str(cfg), "site", "check"])
    assert res.exit_code == 75, res.output
    assert _DOWN in res.stderr and _DOWN not in res.stdout


def test_control_check_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "live_frontends", _only(set(), []))
    check = controlcheck.check(_up_site(tmp_path), None)
    assert [m.alive for m in check.masters] == [False, False]
    assert check.verdict is controlcheck.Verdict.DOWN and check.masters.down == _DOWN


def test_control_status_one_front_end_up_is_not_down(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ssh, "live_frontends", _only({"fe-a"}, []))
    masters = control.status(_up_site(tmp_path))
    assert [m.alive for m in masters] == [True, False] and masters.down == ""


def test_control_cli_status_and_check_say_the_helpers_message(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setattr(ssh, "live_frontends", _only(set(), []))
    cfg = _lab_config(tmp_path)
    for verb in ("status", "check"):
        res = CliRunner().invoke(control_main, ["--config", str(cfg), "--db", db_url, verb,
                                                 "--site", "lab"])
        assert res.exit_code == 75, res.output
        assert _DOWN in res.output, (verb, res.output)
