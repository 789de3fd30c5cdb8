"""The test site's configuration texts and settings (ops/testsite/rbsite), checked without
root and without the site: every builder takes its paths and values as arguments."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ops" / "testsite"))

from rbsite import cli, config, network, sshd, switches, texts  # noqa: E402

PATHS = config.Paths("/x/site")


def _lines(text: str) -> list[str]:
    return text.splitlines()


def test_front_end_sshd_config_keeps_openssh_default_sessions() -> None:
    text = texts.sshd_config_text("fe2", PATHS, "rbremote")
    assert "ListenAddress 10.77.0.12" in _lines(text)
    assert "AuthenticationMethods publickey" in _lines(text)
    assert "SetEnv SLURM_CONF=/x/site/state/slurm/slurm.conf RB_SITE_HOST=fe2 " \
           "RB_SITE_SCRATCH=/x/site/scratch RB_SITE_PERMANENT=/x/site/permanent " \
           "PATH=/x/site/state/bin:/usr/local/bin:/usr/bin:/bin" in _lines(text)
    assert "MaxSessions" not in text
    assert text.endswith("Subsystem sftp internal-sftp\n")


def test_front_end_sshd_config_with_max_sessions() -> None:
    text = texts.sshd_config_text("fe1", PATHS, "rbremote", max_sessions=4)
    assert [line for line in _lines(text) if line.startswith("MaxSessions")] == ["MaxSessions 4"]


def test_dmz_sshd_config_needs_key_and_token_and_bounces_to_front_ends_only() -> None:
    text = texts.sshd_config_text("dmz", PATHS, "someone", max_sessions=4)
    lines = _lines(text)
    assert "AuthenticationMethods publickey,keyboard-interactive" in lines
    assert "AllowUsers someone" in lines
    assert "PermitOpen 10.77.0.11:22 rbsite-fe1:22 10.77.0.12:22 rbsite-fe2:22 " \
           "10.77.0.13:22 rbsite-fe3:22" in lines
    assert "PidFile /x/site/state/run/sshd-dmz.pid" in lines
    assert "MaxSessions" not in text


def test_dmz_pam_uses_the_site_usersfile() -> None:
    text = texts.dmz_pam_text(PATHS)
    assert "auth     requisite  pam_oath.so usersfile=/x/site/state/oath/users.oath " \
           "window=20 digits=6" in _lines(text)


def test_slurm_conf_carries_wait_time_nodes_and_partition() -> None:
    text = texts.slurm_conf_text(PATHS, "short", 7, "vm")
    lines = _lines(text)
    assert [line for line in lines if line.lower().startswith("waittime=")] == ["Waittime=7"]
    assert "SlurmctldHost=vm(10.77.1.5)" in lines
    assert "AuthInfo=socket=/x/site/state/munge/munge.socket.2" in lines
    assert "NodeName=cn2 NodeAddr=10.77.1.22 NodeHostname=cn2 CPUs=4 RealMemory=4000 " \
           "State=UNKNOWN" in lines
    assert lines[-1] == "PartitionName=short Nodes=cn1,cn2 Default=YES MaxTime=INFINITE State=UP"
    assert "$" not in text


def test_client_ssh_config_jumps_through_the_dmz() -> None:
    text = texts.client_ssh_config_text(PATHS, "rbremote", "/a/askpass")
    blocks = {b.split()[1]: b for b in text.split("\n\n")[1:]}
    assert sorted(blocks) == ["dmz", "fe1", "fe2", "fe3"]
    assert "ProxyJump" not in blocks["dmz"]
    assert all("    ProxyJump dmz" in blocks[h] for h in ("fe1", "fe2", "fe3"))
    assert "    IdentityFile /x/site/state/client/id_ed25519" in _lines(blocks["fe3"])
    assert "SSH_ASKPASS=/a/askpass" in text.splitlines()[2]


def test_known_hosts_names_each_host_by_name_address_and_alias() -> None:
    keys = {h: f"ssh-ed25519 KEY{h} rbsite-{h}\n" for h in config.SSH_HOSTS}
    lines = _lines(texts.known_hosts_text(keys))
    assert lines[1] == "fe1,10.77.0.11,rbsite-fe1 ssh-ed25519 KEYfe1"
    assert len(lines) == 4


def test_hosts_block_is_replaced_not_repeated() -> None:
    block = texts.hosts_block()
    assert "10.77.1.21 rbsite-cn1-ib cn1" in _lines(block)
    assert "10.77.1.11 rbsite-fe1-ib" in _lines(block)
    etc = "127.0.0.1 localhost\n" + block + "::1 ip6-localhost\n"
    stripped = texts.strip_hosts_block(etc)
    assert stripped == "127.0.0.1 localhost\n::1 ip6-localhost\n"
    assert (texts.strip_hosts_block(stripped + block) + block).count(config.HOSTS_BEGIN) == 1


def test_render_refuses_a_missing_value() -> None:
    with pytest.raises(KeyError):
        texts.render("pam_dmz")


def test_load_config_wait_time_from_ini_env_and_default(tmp_path: Path) -> None:
    ini = tmp_path / "site.ini"
    ini.write_text("[site]\nroot = /r\n")
    assert config.load_config(str(ini), environ={})["slurm_wait_time"] == 3
    ini.write_text("[site]\nslurm_wait_time = 9\n[links]\nrate_fe2 = 10mbit\n")
    cfg = config.load_config(str(ini), environ={"RB_SITE_RATE_FE3": "80mbit"})
    assert cfg["slurm_wait_time"] == 9
    assert cfg["rates"] == {"dmz": "1gbit", "fe1": "200mbit", "fe2": "10mbit", "fe3": "80mbit"}
    env = {"RB_SITE_SLURM_WAIT_TIME": "0", "RB_SITE_ROOT": "/else"}
    cfg = config.load_config(str(ini), environ=env)
    assert (cfg["slurm_wait_time"], cfg["root"]) == (0, "/else")
    with pytest.raises(SystemExit, match="slurm_wait_time"):
        config.load_config(str(ini), environ={"RB_SITE_SLURM_WAIT_TIME": "3s"})


def test_max_sessions_is_remembered_and_written_to_front_ends_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = config.Paths(str(tmp_path))
    monkeypatch.setattr(sshd, "P", paths)
    assert sshd.max_sessions() is None
    sshd.set_max_sessions(switches.parse_max_sessions("25"))
    for h in config.SSH_HOSTS:
        sshd.write_sshd_config(h)
    assert "MaxSessions 25" in _lines(Path(paths.sshd_config("fe3")).read_text())
    assert "MaxSessions" not in Path(paths.sshd_config("dmz")).read_text()
    sshd.set_max_sessions(switches.parse_max_sessions("default"))
    sshd.write_sshd_config("fe3")
    assert sshd.max_sessions() is None
    assert "MaxSessions" not in Path(paths.sshd_config("fe3")).read_text()


@pytest.mark.parametrize("word", ["0", "-1", "ten", "", "3.5"])
def test_max_sessions_refuses_what_is_not_a_positive_number(word: str) -> None:
    with pytest.raises(SystemExit, match="maxsessions"):
        switches.parse_max_sessions(word)


def test_hotp_matches_rfc_4226_vectors() -> None:
    secret = b"12345678901234567890".hex()
    assert [sshd.hotp(secret, c) for c in range(3)] == ["755224", "287082", "359152"]


def test_otp_state_reads_the_pam_oath_counter() -> None:
    assert sshd.otp_state_of("HOTP rbremote - ABCD\n", "rbremote") == (0, 0)
    used = "HOTP other - AB 9 2026-01-01T00:00:00L\nHOTP rbremote - AB 4 2026-01-01T00:00:00L\n"
    assert sshd.otp_state_of(used, "rbremote") == (5, 5)
    assert sshd.otp_state_of("", "rbremote") is None


def test_rates_and_token_bucket() -> None:
    assert network.rate_bits("200mbit") == 200_000_000
    assert network.rate_bits("10MBps") == 80_000_000
    argv = network.tbf_argv("pub0", "1gbit")
    assert argv[argv.index("burst") + 1] == str(1_000_000_000 // 8 // 100)
    assert network.tbf_argv("pub0", "1mbit")[argv.index("burst") + 1] == str(32 * 1024)
    with pytest.raises(SystemExit, match="bad rate"):
        network.rate_bits("fast")


def test_cli_keeps_every_verb_and_adds_maxsessions() -> None:
    verbs = {"up", "down", "status", "expire", "cut", "heal", "purge", "stop-slurm",
             "start-slurm", "token", "auth-count", "shape", "exec", "maxsessions",
             "kill-slurmd", "drop-submit", "dropped"}
    assert set(cli.VERBS) == verbs
    assert cli.parser().parse_args(["drop-submit", "2"]).n == 2
    assert cli.parser().parse_args(["dropped", "--json"]).json
    a = cli.parser().parse_args(["maxsessions", "default"])
    assert (a.cmd, a.n) == ("maxsessions", "default")
    a = cli.parser().parse_args(["exec", "fe1", "--", "ip", "a"])
    assert a.command[-2:] == ["ip", "a"]
    assert cli.parser().parse_args(["purge", "--older-than", "5"]).older_than == 5.0


def test_status_lines_read_like_before() -> None:
    st = {"state": "up", "site_root": "/r", "login_user": "u", "auth_count": 2,
          "otp_counter": 2, "ssh_config": "/c", "askpass": "/a",
          "hosts": {"ctl": {"netns": "rb-ctl", "address": None, "cluster_address": "10.77.1.5",
                            "link": "up", "slurmctld": True}}}
    lines = cli.status_lines(st)
    assert lines[1] == "  ctl  rb-ctl  pub=-           clu=10.77.1.5   link=up     slurmctld=True"
    assert re.match(r"state: up +root: /r", lines[0])
