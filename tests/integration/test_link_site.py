"""The OpenSSH link against the real test site (ops/testsite: dmz with OTP, fe1..fe3).

Needs root and the network-namespace site; the ``test_site`` fixture brings it up.
Each master costs one dmz token; the tests check that nothing else ever does.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from remotebridge.errors import HostKeyMismatch, LinkDown, TransientLinkError
from remotebridge.sitecheck import check_site
from remotebridge.ssh import OpenSSHLink, RetryPolicy, links_for
from tests.support.sitecfg import site_config

pytestmark = pytest.mark.site

HOSTILE = ["with space", "it's", 'dq"', "a;b", "$(touch /tmp/rb_pwned)", "`id`",
           "new\nline", "-rf", "--", "*", "", "\\", "$HOME", "#hash", "~", "a\tb", "ünï"]
ECHO = ["python3", "-c", "import sys,json;print(json.dumps(sys.argv[1:]))"]


def test_hostile_names_reach_the_remote_command_exactly(masters: list[OpenSSHLink]) -> None:
    link = masters[0]
    assert json.loads(link.run([*ECHO, *HOSTILE]).out) == HOSTILE
    out = link.run(["printf", "%s\\0", *HOSTILE]).stdout
    assert out.split(b"\0")[:-1] == [a.encode() for a in HOSTILE]
    assert link.run(["sh", "-c", "test -e /tmp/rb_pwned && echo yes || echo no"]).out == "no\n"


def test_files_round_trip_over_the_master(masters: list[OpenSSHLink], tmp_path: Path,
                                          test_site) -> None:  # type: ignore[no-untyped-def]
    link = masters[1]
    payload = bytes(range(256)) * 4096
    src = tmp_path / "in"
    src.write_bytes(payload)
    remote = f"{test_site.user_scratch}/rb link test/it's $(x).bin"
    link.put(src, remote)
    link.get(remote, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == payload
    link.run(["rm", "-rf", "--", f"{test_site.user_scratch}/rb link test"])


def test_no_master_is_link_down_at_once(site_alone, control_dir: Path) -> None:  # type: ignore[no-untyped-def]
    test_site = site_alone
    before = test_site.auth_count()
    link = OpenSSHLink(site_config(test_site, control_dir), "fe2")
    start = time.monotonic()
    with pytest.raises(LinkDown):
        link.run(["true"])
    assert time.monotonic() - start < 5
    assert not link.check()
    # even with the socket check bypassed, ssh cannot fall back to a new login
    link.socket_path.touch()
    start = time.monotonic()
    with pytest.raises(LinkDown):
        link.run(["true"])
    assert time.monotonic() - start < 5
    assert test_site.auth_count() == before


def test_concurrent_commands_never_use_a_second_token(  # type: ignore[no-untyped-def]
        site_alone, masters: list[OpenSSHLink]) -> None:
    test_site = site_alone
    before = test_site.auth_count()
    errors: list[BaseException] = []
    outputs: list[str] = []

    def work(link: OpenSSHLink, i: int) -> None:
        try:
            outputs.append(link.run(["sh", "-c", f"sleep 0.5; echo {i}"]).out.strip())
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    # 24 over 3 masters, then 24 on a single master (past sshd's 10 sessions unless limited)
    for batch in ([masters[i % 3] for i in range(24)], [masters[0]] * 24):
        threads = [threading.Thread(target=work, args=(link, i)) for i, link in enumerate(batch)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors, errors
    assert sorted(outputs, key=int) == sorted([str(i) for i in range(24)] * 2, key=int)
    assert test_site.auth_count() == before


def test_site_check_all_ok(test_site, masters: list[OpenSSHLink]) -> None:  # type: ignore[no-untyped-def]
    report = check_site(masters[0].site)
    assert report.ok and not report.down, [r for r in report.rows if not r.ok]
    assert {r.detail for r in report.rows if r.check == "user"} == {test_site.login_user}


def test_site_check_down(test_site, control_dir: Path) -> None:  # type: ignore[no-untyped-def]
    report = check_site(site_config(test_site, control_dir))
    assert report.link_down and not report.ok
    assert report.down.startswith("no front end of site ")


def test_changed_host_key_is_refused(test_site, control_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    key = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    fake = key.with_suffix(".pub").read_text().split()[1]
    lines = []
    for line in Path(test_site.known_hosts).read_text().splitlines():
        names, kind, _blob = line.split()[:3]
        if "fe3" in names.split(","):
            line = f"{names} {kind} {fake}"
        lines.append(line)
    tampered = tmp_path / "known_hosts"
    tampered.write_text("\n".join(lines) + "\n")
    link = OpenSSHLink(site_config(test_site, control_dir, known_hosts=str(tampered)), "fe3")
    with pytest.raises(HostKeyMismatch):
        link.start_master(askpass=test_site.askpass)
    assert not link.master_alive()


def test_cut_link_is_transient_then_heals(site_alone, control_dir: Path) -> None:  # type: ignore[no-untyped-def]
    test_site = site_alone
    link = OpenSSHLink(site_config(test_site, control_dir), "fe2")
    link.start_master(askpass=test_site.askpass)
    link.retry = RetryPolicy(attempts=2, deadline=20, wait_initial=0.5, wait_max=1)
    try:
        assert link.run(["echo", "before"]).out == "before\n"
        test_site.cut("fe2")
        try:
            with pytest.raises(TransientLinkError):
                link.run(["echo", "during"], timeout=3)
        finally:
            test_site.heal("fe2")
        assert link.run(["echo", "after"], timeout=60).out == "after\n"
    finally:
        link.stop_master()


def test_expired_login_is_link_down(site_alone, control_dir: Path) -> None:  # type: ignore[no-untyped-def]
    test_site = site_alone
    site = site_config(test_site, control_dir, frontends=["fe1"])
    (link,) = links_for(site)
    assert isinstance(link, OpenSSHLink)
    link.start_master(askpass=test_site.askpass)
    assert link.run(["true"]).ok
    test_site.expire()
    assert test_site.wait_until(lambda: not link.master_alive(), timeout=30)
    start = time.monotonic()
    with pytest.raises(LinkDown):
        link.run(["true"])
    assert time.monotonic() - start < 5
