"""The OpenSSH link without a site: error classes, control dir safety, retry policy.

The ``ssh`` binary is replaced by a small script (``ssh_binary``) that answers
``-G`` like ssh and otherwise either fails the way ssh does (exit 255 + a message)
or runs the remote command string with ``sh -c``, as the remote login shell would.
The real ssh is exercised in tests/integration/test_link_site.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from remotebridge.config import SchedulerKind, SiteConfig, SiteKind
from remotebridge.errors import (
    HostKeyMismatch,
    LinkDown,
    RemoteCommandFailed,
    TransientLinkError,
    UnsafeConfiguration,
)
from remotebridge.ssh import OpenSSHLink, RetryPolicy, classify_ssh_failure, control_dir
from remotebridge.ssh import openssh as openssh_mod

FAKE_SSH = r"""#!/bin/sh
# fake ssh: -G prints resolved settings; else behave as $FAKE_SSH_MODE says
for a; do last=$a; done
[ -n "$FAKE_SSH_ARGV" ] && printf '%s\n' "$*" >> "$FAKE_SSH_ARGV"
case " $* " in *" -G "*) printf 'user rbremote\nhostname %s\nport 22\nproxyjump %s\n' \
  "$last" "${FAKE_SSH_JUMP:-none}"; exit 0 ;; esac
case " $* " in *" -O "*) exit "${FAKE_SSH_CONTROL_RC:-0}" ;; esac
echo x >> "$FAKE_SSH_COUNT"
case $FAKE_SSH_MODE in
  silent)  exit 255 ;;
  refused) echo "mux_client_request_session: session request failed: Session open" \
             "refused by peer" >&2
           echo "kex_exchange_identification: Connection closed by remote host" >&2
           echo "Connection closed by UNKNOWN port 65535" >&2; exit 255 ;;
  timeout) echo "ssh: connect to host fe1 port 22: Connection timed out" >&2; exit 255 ;;
  denied)  echo "rbremote@fe1: Permission denied (publickey,keyboard-interactive)." >&2; exit 255 ;;
  hostkey) echo "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@" >&2
           echo "Host key verification failed." >&2; exit 255 ;;
  exec)    exec sh -c "$last" ;;
esac
exit 99
"""

HOSTILE = ["with space", "it's", 'dq"', "a;b", "$(echo pwned)", "`echo pwned`",
           "new\nline", "-rf", "--", "*", "", "\\", "$HOME", "#hash", "~"]


@pytest.fixture()
def short_tmp() -> Iterator[Path]:
    """A short temp dir: socket paths must stay under ~90 bytes."""
    d = Path(tempfile.mkdtemp(prefix="rbt", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture()
def fake(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    tmp_path = short_tmp
    ctl = tmp_path / "c"
    ctl.mkdir(mode=0o700)
    ssh = tmp_path / "fake-ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(0o755)
    count = tmp_path / "count"
    monkeypatch.setenv("FAKE_SSH_COUNT", str(count))
    monkeypatch.delenv("FAKE_SSH_ARGV", raising=False)
    return {"ctl": ctl, "ssh": ssh, "count": count}


def make_site(ctl: Path, **kw: object) -> SiteConfig:
    return SiteConfig(name="t", kind=SiteKind.SSH, scheduler=SchedulerKind.SLURM,
                      frontends=["fe1"], control_dir=str(ctl), **kw)  # type: ignore[arg-type]


def listening_socket(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    return s


def attempts(count: Path) -> int:
    return len(count.read_text().splitlines()) if count.exists() else 0


def fast(link: OpenSSHLink, n: int = 3) -> OpenSSHLink:
    link.retry = RetryPolicy(attempts=n, deadline=10, wait_initial=0.01, wait_max=0.02)
    return link


# --- classification -------------------------------------------------------------------

@pytest.mark.parametrize("stderr, cls", [
    ("Host key verification failed.", HostKeyMismatch),
    ("@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @", HostKeyMismatch),
    ("No ED25519 host key is known for fe1 and you have requested strict checking.",
     HostKeyMismatch),
    ("rbremote@10.77.0.2: Permission denied (keyboard-interactive).", LinkDown),
    ("Control socket connect(/x/y): Connection refused", LinkDown),
    ("Master refused session request: Permission denied", LinkDown),
    ("kex_exchange_identification: Connection closed by remote host\n"
     "Connection closed by UNKNOWN port 65535", LinkDown),
    ("ssh: connect to host fe1 port 22: Connection timed out", TransientLinkError),
    ("ssh: connect to host fe1 port 22: No route to host", TransientLinkError),
    ("ssh: connect to host fe1 port 22: Connection refused", TransientLinkError),
    ("client_loop: send disconnect: Broken pipe", TransientLinkError),
    ("Read from remote host fe1: Connection reset by peer", TransientLinkError),
    ("Timeout, server fe1 not responding.", TransientLinkError),
    ("mux_client_request_session: session request failed: Session open refused by peer",
     TransientLinkError),
    ("python3: can't open file 'x.py'", None),
])
def test_classify(stderr: str, cls: type | None) -> None:
    assert classify_ssh_failure(stderr) is cls


# --- control directory ---------------------------------------------------------------

def test_control_dir_created_private(short_tmp: Path) -> None:
    d = control_dir(make_site(short_tmp / "new" / "rb"))
    assert stat.S_IMODE(d.stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o722, 0o1777])
def test_group_or_world_writable_control_dir_refused(tmp_path: Path, mode: int) -> None:
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(mode)
    with pytest.raises(UnsafeConfiguration, match="writable by group or others"):
        control_dir(make_site(d))


def test_control_dir_of_another_user_refused(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "theirs"
    d.mkdir(mode=0o700)
    if os.getuid() == 0:
        os.chown(d, 65534, 65534)  # a real other owner ('nobody')
    else:  # not root (pytest -m "not site"): we cannot give it away, so we become another uid
        owner = d.stat().st_uid
        monkeypatch.setattr(os, "getuid", lambda: owner + 1)
    with pytest.raises(UnsafeConfiguration, match="belongs to uid"):
        control_dir(make_site(d))


def test_too_long_socket_path_refused(tmp_path: Path) -> None:
    d = tmp_path / ("x" * 80)
    with pytest.raises(UnsafeConfiguration, match="too long"):
        control_dir(make_site(d))


def test_link_refuses_unsafe_dir(tmp_path: Path, fake: dict[str, Path]) -> None:
    fake["ctl"].chmod(0o777)
    with pytest.raises(UnsafeConfiguration):
        OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"]))


# --- command line --------------------------------------------------------------------

def test_client_options_never_prompt_nor_log_in(fake: dict[str, Path]) -> None:
    site = make_site(fake["ctl"], ssh_config="/x/cfg", known_hosts="/x/kh")
    link = OpenSSHLink(site, "fe1", ssh_binary=str(fake["ssh"]))
    argv = link._local_argv(["echo", "a b"])
    joined = " ".join(argv)
    for opt in ("BatchMode=yes", "ControlMaster=no", "ProxyCommand=false",
                "StrictHostKeyChecking=yes", "UserKnownHostsFile=/x/kh",
                f"ControlPath={link.socket_path}"):
        assert opt in joined
    assert argv[argv.index("-F") + 1] == "/x/cfg"
    assert argv[-3:] == ["--", "fe1", "echo 'a b'"]
    assert link.socket_path.parent == fake["ctl"]


# --- running, retries ----------------------------------------------------------------

def test_no_master_is_link_down_without_running_ssh(fake: dict[str, Path]) -> None:
    link = fast(OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"])))
    with pytest.raises(LinkDown):
        link.run(["true"])
    assert attempts(fake["count"]) == 0
    assert not link.check()


def test_transient_errors_are_retried_bounded(fake: dict[str, Path],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "timeout")
    link = fast(OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"])), 3)
    with listening_socket(link.socket_path), pytest.raises(TransientLinkError):
        link.run(["true"])
    assert attempts(fake["count"]) == 3


def test_retry_bounded_in_time(fake: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "timeout")
    link = OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"]))
    link.retry = RetryPolicy(attempts=1000, deadline=0.5, wait_initial=0.1, wait_max=0.1)
    with listening_socket(link.socket_path), pytest.raises(TransientLinkError):
        link.run(["true"])
    assert 2 <= attempts(fake["count"]) <= 10


def test_no_retry_when_asked(fake: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "timeout")
    link = fast(OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"])), 5)
    with listening_socket(link.socket_path), pytest.raises(TransientLinkError):
        link.run(["sbatch", "x"], retry=False)
    assert attempts(fake["count"]) == 1


@pytest.mark.parametrize("mode, cls", [("denied", LinkDown), ("hostkey", HostKeyMismatch)])
def test_auth_and_hostkey_never_retried(fake: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                        mode: str, cls: type) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", mode)
    link = fast(OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"])), 5)
    with listening_socket(link.socket_path), pytest.raises(cls):
        link.run(["true"])
    assert attempts(fake["count"]) == 1


def test_remote_failure_never_retried(fake: dict[str, Path],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "exec")
    link = fast(OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"])), 5)
    with listening_socket(link.socket_path), pytest.raises(RemoteCommandFailed) as info:
        link.run(["sh", "-c", "echo bad >&2; exit 7"])
    assert attempts(fake["count"]) == 1
    assert info.value.evidence.rc == 7 and "bad" in info.value.evidence.stderr


def test_hostile_argv_survives_the_remote_shell(fake: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch,
                                                tmp_path: Path) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "exec")
    monkeypatch.chdir(tmp_path)
    link = OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"]))
    echo = [sys.executable, "-c", "import sys,json;print(json.dumps(sys.argv[1:]))"]
    with listening_socket(link.socket_path):
        assert json.loads(link.run([*echo, *HOSTILE]).out) == HOSTILE
    assert not list(tmp_path.glob("pwned*"))


# --- real-site fidelity: literal ControlPath, refused sessions, dying master ------------

def control_paths(argv_log: Path) -> list[str]:
    """Every ControlPath value in every logged ssh call (``-G`` calls included)."""
    paths = []
    for line in argv_log.read_text().splitlines():
        words = line.split()
        paths += [w.split("=", 1)[1] for w in words if w.startswith("ControlPath=")]
    return paths


def test_every_kind_of_call_names_the_literal_socket(
        fake: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """OpenSSH 9.6+ hashes %j into %C, which ProxyCommand=false blanks: no '%' anywhere."""
    log = tmp_path / "argv"
    monkeypatch.setenv("FAKE_SSH_ARGV", str(log))
    monkeypatch.setenv("FAKE_SSH_MODE", "exec")
    monkeypatch.setenv("FAKE_SSH_JUMP", "dmz")
    monkeypatch.chdir(tmp_path)
    link = OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"]))
    (tmp_path / "src").write_bytes(b"data")
    with listening_socket(link.socket_path):
        link.run(["true"])
        with open(tmp_path / "src", "rb") as src, open(tmp_path / "sink", "wb") as sink:
            link.run_stream_in(["cat"], src)
            link.run_stream_out(["echo", "x"], sink)
        link.put(tmp_path / "src", str(tmp_path / "remote"))
        link.get(str(tmp_path / "remote"), tmp_path / "back")
        assert link.check() and link.master_alive()
        assert link.stop_master()
    kinds = log.read_text()
    assert " -O check " in kinds and " -O exit " in kinds and "ProxyCommand=false" in kinds
    paths = control_paths(log)
    assert len(paths) >= 8
    assert {p for p in paths if p != "none"} == {str(link.socket_path)}
    assert not [p for p in paths if "%" in p]


def test_socket_name_hashes_the_proxyjump(fake: dict[str, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    direct = OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"]))
    monkeypatch.setenv("FAKE_SSH_JUMP", "dmz")
    jumped = OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"]))
    want = hashlib.sha1((socket.gethostname() + "fe122rbremotedmz").encode()).hexdigest()
    assert jumped.socket_path == fake["ctl"] / want
    assert direct.socket_path != jumped.socket_path


def test_control_dir_with_percent_refused(short_tmp: Path) -> None:
    with pytest.raises(UnsafeConfiguration, match="%"):
        control_dir(make_site(short_tmp / "a%hb"))


def test_socket_path_limit_is_the_bsd_one(short_tmp: Path) -> None:
    """86 bytes (macOS/BSD) rather than Linux's 90: a path of 87..90 is refused."""
    pad = 86 - 41 - len(str(short_tmp)) - 1
    ok = short_tmp / ("d" * pad)
    assert len(str(ok)) + 41 == 86
    control_dir(make_site(ok))
    with pytest.raises(UnsafeConfiguration, match="too long"):
        control_dir(make_site(short_tmp / ("d" * (pad + 1))))


def test_refused_session_is_transient_not_link_down(fake: dict[str, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """MaxSessions reached: the fallback login's kex message must not read as 'down'."""
    monkeypatch.setenv("FAKE_SSH_MODE", "refused")
    link = fast(OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"])), 2)
    with listening_socket(link.socket_path), pytest.raises(TransientLinkError):
        link.run(["true"])
    assert attempts(fake["count"]) == 2


def test_silent_255_with_a_dead_master_is_link_down(fake: dict[str, Path],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "silent")
    monkeypatch.setenv("FAKE_SSH_CONTROL_RC", "255")
    link = fast(OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"])), 2)
    with listening_socket(link.socket_path), pytest.raises(LinkDown):
        link.run(["true"])


def test_silent_255_with_a_live_master_is_the_command(fake: dict[str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "silent")
    link = fast(OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"])), 2)
    with listening_socket(link.socket_path), pytest.raises(RemoteCommandFailed):
        link.run(["true"])


def test_master_with_askpass_has_no_controlling_terminal(
        fake: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Clients before OpenSSH 8.4 ignore SSH_ASKPASS_REQUIRE: a new session makes them ask."""
    seen: dict[str, object] = {}

    def fake_run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[bytes]:
        if "ControlMaster=yes" in cmd:
            seen.update(kw)
        return subprocess.CompletedProcess(cmd, 0 if "ControlMaster=yes" in cmd else 255,
                                           b"", b"")

    link = OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"]))
    monkeypatch.setattr(openssh_mod.subprocess, "run", fake_run)
    assert link.start_master(askpass="/bin/true")
    assert seen["start_new_session"] is True
    assert seen["env"]["SSH_ASKPASS"] == "/bin/true"  # type: ignore[index]
