"""control-tool without a live site: status, switch-user, start failures (real ssh client)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from remotebridge import config as cfgmod
from remotebridge import control
from remotebridge.cli.control import main
from remotebridge.config import site_user, user_state_file
from remotebridge.errors import UsageError
from remotebridge.ssh import OpenSSHLink


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """XDG state in tmp, a short control dir, and a config with an ssh and a local site."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("SSH_ASKPASS", raising=False)
    ctl = Path(tempfile.mkdtemp(prefix="rbc", dir="/tmp"))
    (tmp_path / "ssh_config").write_text("Host fe-a fe-b\n  HostName 127.0.0.1\n  Port 9\n")
    (tmp_path / "config.toml").write_text(
        f'[site.far]\nkind = "ssh"\nscheduler = "slurm"\nfrontends = ["fe-a", "fe-b"]\n'
        f'ssh_config = "{tmp_path / "ssh_config"}"\ncontrol_dir = "{ctl}"\n'
        f'remote_root = "/scratch/rb"\nuser = "alice"\n\n'
        f'[site.demo]\nkind = "local"\nlocal_root = "{tmp_path / "side"}"\n')
    yield tmp_path
    shutil.rmtree(ctl, ignore_errors=True)


def cfg(env: Path) -> cfgmod.Config:
    return cfgmod.load(str(env / "config.toml"))


def cli(env: Path, *args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["--config", str(env / "config.toml"), *args])
    return r.exit_code, r.stdout


def test_status_of_a_local_site(env: Path) -> None:
    (state,) = control.status(cfg(env).site("demo"))
    assert state.alive and state.action == "local (no master)" and state.socket == ""
    code, out = cli(env, "--json", "status", "--site", "demo")
    assert code == 0 and json.loads(out)["masters"][0]["alive"] is True


def test_status_of_an_ssh_site_without_masters(env: Path) -> None:
    states = control.status(cfg(env).site("far"))
    assert [(s.host, s.alive, s.user) for s in states] == [("fe-a", False, "alice"),
                                                           ("fe-b", False, "alice")]
    assert all(s.socket.startswith("/tmp/rbc") for s in states)
    code, out = cli(env, "--json", "status", "--site", "far")
    assert code == 75 and len(json.loads(out)["masters"]) == 2


def test_switch_user_records_the_user_and_ssh_uses_it(env: Path) -> None:
    site = cfg(env).site("far")
    before = OpenSSHLink(site, "fe-a")
    opts = before.base_options()
    assert site_user(site) == "alice" and opts[opts.index("-l") + 1] == "alice"
    assert control.switch_user(site, "bob") == "alice"
    assert user_state_file("far").read_text() == "bob\n" and site_user(site) == "bob"
    after = OpenSSHLink(site, "fe-a")
    opts = after.base_options()
    assert opts[opts.index("-l") + 1] == "bob"
    assert after.socket_path != before.socket_path  # the socket name hashes the remote user too
    code, out = cli(env, "--json", "switch-user", "carol", "--site", "far")
    assert code == 0 and json.loads(out) == {"site": "far", "user": "carol",
                                             "previous": "bob"}
    assert [s.user for s in control.status(site)] == ["carol", "carol"]


def test_switch_user_refuses_bad_names(env: Path) -> None:
    with pytest.raises(UsageError):
        control.switch_user(cfg(env).site("far"), "-oProxyCommand=x")


def test_start_reports_failed_front_ends_and_exits_75(env: Path) -> None:
    states = control.start(cfg(env).site("far"), ["fe-b"])
    assert [(s.host, s.alive, s.action) for s in states] == [("fe-b", False, "failed")]
    assert states.masters[0].error
    code, out = cli(env, "--json", "start", "--site", "far", "--host", "fe-a")
    assert code == 75 and json.loads(out)["masters"][0]["action"] == "failed"
    code, _ = cli(env, "start", "--site", "far", "--host", "nope")
    assert code == 2


def test_stop_without_masters(env: Path) -> None:
    code, out = cli(env, "--json", "stop", "--site", "far")
    assert code == 0
    assert {m["action"] for m in json.loads(out)["masters"]} == {"not running"}


def test_switch_user_keeps_the_former_users_for_finding_their_jobs(env: Path) -> None:
    """A job submitted before a switch-user stays ours (find by token, Moab's User check)."""
    from remotebridge.config import site_users

    site = cfg(env).site("far")
    assert site_users(site) == ["alice"]
    control.switch_user(site, "bob")
    control.switch_user(site, "carol")
    assert site_users(site) == ["carol", "alice", "bob"]
