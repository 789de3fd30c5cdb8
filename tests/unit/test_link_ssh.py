"""The OpenSSH link without a site: error classes, control dir safety, retry policy.

The ``ssh`` binary is replaced by a small script (``ssh_binary``) that answers
``-G`` like ssh and otherwise either fails the way ssh does (exit 255 + a message)
or runs the remote command string with ``sh -c``, as the remote login shell would.
The real ssh is exercised in tests/integration/test_link_site.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
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

FAKE_SSH = r"""#!/bin/sh
# fake ssh: -G prints the control path; else behave as $FAKE_SSH_MODE says
for a; do last=$a; done
case " $* " in *" -G "*) echo "controlpath $FAKE_SSH_SOCKET"; exit 0 ;; esac
echo x >> "$FAKE_SSH_COUNT"
case $FAKE_SSH_MODE in
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
    sock = ctl / "sock"
    count = tmp_path / "count"
    monkeypatch.setenv("FAKE_SSH_SOCKET", str(sock))
    monkeypatch.setenv("FAKE_SSH_COUNT", str(count))
    return {"ctl": ctl, "ssh": ssh, "sock": sock, "count": count}


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
                f"ControlPath={fake['ctl']}/%C"):
        assert opt in joined
    assert argv[argv.index("-F") + 1] == "/x/cfg"
    assert argv[-3:] == ["--", "fe1", "echo 'a b'"]
    assert link.socket_path == fake["sock"]


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
    with listening_socket(fake["sock"]), pytest.raises(TransientLinkError):
        link.run(["true"])
    assert attempts(fake["count"]) == 3


def test_retry_bounded_in_time(fake: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "timeout")
    link = OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"]))
    link.retry = RetryPolicy(attempts=1000, deadline=0.5, wait_initial=0.1, wait_max=0.1)
    with listening_socket(fake["sock"]), pytest.raises(TransientLinkError):
        link.run(["true"])
    assert 2 <= attempts(fake["count"]) <= 10


def test_no_retry_when_asked(fake: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "timeout")
    link = fast(OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"])), 5)
    with listening_socket(fake["sock"]), pytest.raises(TransientLinkError):
        link.run(["sbatch", "x"], retry=False)
    assert attempts(fake["count"]) == 1


@pytest.mark.parametrize("mode, cls", [("denied", LinkDown), ("hostkey", HostKeyMismatch)])
def test_auth_and_hostkey_never_retried(fake: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                        mode: str, cls: type) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", mode)
    link = fast(OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"])), 5)
    with listening_socket(fake["sock"]), pytest.raises(cls):
        link.run(["true"])
    assert attempts(fake["count"]) == 1


def test_remote_failure_never_retried(fake: dict[str, Path],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SSH_MODE", "exec")
    link = fast(OpenSSHLink(make_site(fake["ctl"]), "fe1", ssh_binary=str(fake["ssh"])), 5)
    with listening_socket(fake["sock"]), pytest.raises(RemoteCommandFailed) as info:
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
    with listening_socket(fake["sock"]):
        assert json.loads(link.run([*echo, *HOSTILE]).out) == HOSTILE
    assert not list(tmp_path.glob("pwned*"))
