"""control-tool check (exit 0 / 1 / 75), the opening records, the jump host, other users'
sockets: without a live site (real ssh client, nothing listening)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from remotebridge import config as cfgmod
from remotebridge import control, masterlog
from remotebridge.cli.control import main
from remotebridge.control import MasterState, SiteMasters, StartMode
from remotebridge.ssh import OpenSSHLink


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site whose front ends jump through 'dmz' (nothing listens), a short socket dir."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.delenv("SSH_ASKPASS", raising=False)
    ctl = Path(tempfile.mkdtemp(prefix="rbk", dir="/tmp"))
    (tmp_path / "ssh_config").write_text(
        "Host dmz\n  HostName 127.0.0.1\n  Port 9\n"
        "Host fe-a fe-b\n  HostName 127.0.0.2\n  Port 9\n  ProxyJump dmz\n"
        "Host solo\n  HostName 127.0.0.3\n  Port 9\n")
    (tmp_path / "config.toml").write_text(
        f'default_site = "far"\n'
        f'[site.far]\nkind = "ssh"\nscheduler = "slurm"\nfrontends = ["fe-a", "fe-b"]\n'
        f'ssh_config = "{tmp_path / "ssh_config"}"\ncontrol_dir = "{ctl}"\n'
        f'remote_root = "/scratch/rb"\nlogin_lifetime = 43200\nwarn_before = 3600\n\n'
        f'[site.plain]\nkind = "ssh"\nscheduler = "slurm"\nfrontends = ["solo"]\n'
        f'ssh_config = "{tmp_path / "ssh_config"}"\ncontrol_dir = "{ctl}"\n'
        f'remote_root = "/scratch/rb"\n')
    yield tmp_path
    shutil.rmtree(ctl, ignore_errors=True)


def site(env: Path, name: str = "far") -> cfgmod.SiteConfig:
    return cfgmod.load(str(env / "config.toml")).site(name)


def cli(env: Path, db_url: str, *args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, ["--config", str(env / "config.toml"), "--db", db_url, *args])
    return r.exit_code, r.stdout, r.stderr


def masters(opened_ago: timedelta | None, *, down: bool = False) -> SiteMasters:
    when = "" if opened_ago is None else (datetime.now(UTC) - opened_ago).isoformat()
    up = [MasterState(h, True, opened=when) for h in ("fe-a", "fe-b")]
    if down:
        up[1] = MasterState("fe-b", False, action="")
    return SiteMasters(StartMode.VIA_JUMP, up, MasterState("dmz", True, opened=when))


@pytest.mark.parametrize(("state", "code"), [
    (masters(timedelta(hours=1)), 0),
    (masters(timedelta(hours=11, minutes=30)), 1),
    (masters(timedelta(hours=13)), 1),
    (masters(timedelta(hours=1), down=True), 75),
])
def test_check_exit_codes(env: Path, db_url: str, monkeypatch: pytest.MonkeyPatch,
                          state: SiteMasters, code: int) -> None:
    monkeypatch.setattr(control, "status", lambda s, hosts=None: state)
    got, out, _ = cli(env, db_url, "check", "--site", "far")
    assert got == code, out
    assert out.startswith("site far: ")
    quiet, qout, _ = cli(env, db_url, "--quiet", "check", "--site", "far")
    assert quiet == code and (qout == "") == (code == 0)


def test_check_time_left_counts_from_the_oldest_live_master(env: Path, db_url: str,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    state = masters(timedelta(hours=2))
    assert state.jump is not None
    state.jump.opened = (datetime.now(UTC) - timedelta(hours=11, minutes=50)).isoformat()
    monkeypatch.setattr(control, "status", lambda s, hosts=None: state)
    code, out, _ = cli(env, db_url, "--json", "check", "--site", "far")
    (report,) = json.loads(out)
    assert code == 1 and 500 < report["seconds_left"] <= 600


def test_check_of_a_site_with_no_master_is_down(env: Path, db_url: str) -> None:
    code, out, _ = cli(env, db_url, "check", "--site", "far")
    assert code == 75 and "masters up 0/3" in out


def test_the_jump_host_comes_from_ssh_g_and_carries_the_front_ends(env: Path) -> None:
    links = [OpenSSHLink(site(env), h) for h in ("fe-a", "fe-b")]
    jump = control.jump_link(site(env), links)
    assert jump is not None and jump.host == "dmz"
    proxy = jump.proxy_through()
    assert f"ControlPath={jump.socket_path}" in proxy and "-W %h:%p" in proxy
    assert proxy.count("%") == 2  # only ssh's own %h:%p: the socket path is literal
    assert "BatchMode=yes" in proxy and "ProxyCommand=false" in proxy  # never a new login
    assert control.jump_link(site(env, "plain"), [OpenSSHLink(site(env, "plain"), "solo")]) \
        is None


def test_refused_jump_host_is_named_exits_75_and_leaves_no_socket(env: Path,
                                                                  db_url: str) -> None:
    code, out, err = cli(env, db_url, "--json", "start")
    data = json.loads(out)
    assert code == 75 and data["mode"] == StartMode.VIA_JUMP.value
    assert data["jump"]["host"] == "dmz" and data["jump"]["action"] == "failed"
    assert "dmz refused" in data["jump"]["error"] and "dmz" in err
    assert {m["action"] for m in data["masters"]} == {"failed"}  # not tried: no token spent
    assert list(Path(data["jump"]["socket"]).parent.iterdir()) == []  # nothing half-open
    assert masterlog.read("far") == {}


def test_site_without_jump_host_logs_in_per_front_end(env: Path, db_url: str) -> None:
    code, out, _ = cli(env, db_url, "--json", "start", "--site", "plain")
    data = json.loads(out)
    assert code == 75 and data["mode"] == StartMode.PER_HOST.value and data["jump"] is None
    assert [m["host"] for m in data["masters"]] == ["solo"]


def test_other_users_master_is_reported_not_used_not_closed(
        env: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    jump = OpenSSHLink(site(env), "dmz")
    jump.socket_path.write_text("")  # stands for a socket another local user's ssh made
    monkeypatch.setattr(control, "_my_uid", lambda: 4242)  # so its owner is not us
    code, out, _ = cli(env, db_url, "--json", "start")
    data = json.loads(out)
    assert code == 75 and data["jump"]["action"] == "other user's"
    assert "not used, not closed" in data["jump"]["error"]
    assert jump.socket_path.exists()  # not removed as stale
    code, out, _ = cli(env, db_url, "--json", "stop")
    assert json.loads(out)["jump"]["action"] == "other user's" and jump.socket_path.exists()


def test_openings_are_recorded_and_forgotten(env: Path) -> None:
    rec = masterlog.record("far", "dmz", login="alice", via="")
    assert masterlog.read("far")["dmz"] == rec and rec.local_user
    masterlog.forget("far", "dmz")
    assert masterlog.read("far") == {}
