"""Push and pull through the DMZ to the three front ends of the test site, real OpenSSH.

Needs root and the network-namespace site (the ``test_site`` fixture brings it up).
The masters cost one token each when they start; the transfer itself must cost none.
"""

from __future__ import annotations

import hashlib
import os
import random
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from remotebridge.ssh import OpenSSHLink
from remotebridge.transfer import FileSpec, pull, push
from tests.support.sitecfg import open_masters, site_config

pytestmark = pytest.mark.site

HOSTILE = ["with space", "it's", 'dq"x', "a;b", "$(touch /tmp/rb_xfer_pwned)",
           "`touch /tmp/rb_xfer_pwned2`", "new\nline", "-rf", "back\\slash", "ünï", "*"]


@pytest.fixture()
def ssh_log(tmp_path: Path) -> Path:
    """An ssh wrapper that logs each invocation's argv, NUL-separated, in a file of its
    own under the returned folder (calls run in parallel, and an argument may be long
    and hold newlines, e.g. the inline ``python -c SOURCE``)."""
    log = tmp_path / "ssh-calls"
    log.mkdir()
    wrapper = tmp_path / "ssh-logged"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\0' \"$@\" > \"$(mktemp '{log}/call.XXXXXX')\"\n"
        'exec ssh "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    return log


@pytest.fixture()
def frontends(test_site: Any, ssh_log: Path, control_dir: Path) -> Iterator[list[OpenSSHLink]]:
    """Masters to fe1..fe3 (a token each), stopped afterwards."""
    site = site_config(test_site, control_dir, partition="", sessions_per_master=8)
    wrapper = str(ssh_log.parent / "ssh-logged")
    with open_masters([OpenSSHLink(site, h, ssh_binary=wrapper) for h in site.frontends],
                      test_site.askpass) as links:
        yield links


def sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_files(tmp: Path, remote_dir: str) -> list[FileSpec]:
    rnd = random.Random(11)
    sizes = [rnd.randint(0, 40_000) for _ in range(150)] + [4_000_000, 6_500_000]
    specs = []
    for i, size in enumerate(sizes):
        name = HOSTILE[i % len(HOSTILE)]
        local = tmp / "out" / f"{i} {name}"
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(rnd.randbytes(size))
        specs.append(FileSpec(str(local), f"{remote_dir}/{name} d{i % 5}/{i}-{name}", size))
    return specs


def test_push_then_pull_over_three_front_ends(site_alone: Any, frontends: list[OpenSSHLink],
                                              ssh_log: Path, tmp_path: Path) -> None:
    test_site = site_alone
    remote_dir = f"{test_site.user_scratch}/rb-xfer-{uuid.uuid4().hex[:8]}"
    files = make_files(tmp_path, remote_dir)
    total = sum(f.size for f in files)
    for old in ssh_log.iterdir():
        old.unlink()  # the masters' own calls are not the transfer's
    before = test_site.auth_count()
    try:
        rep = push(frontends, files, bundle_bytes=500_000, jobs_per_link=3)
        assert rep.ok, rep.errors[:5]
        assert (rep.files, rep.bytes) == (len(files), total)
        assert all(v > 0 for v in rep.per_link.values()), rep.per_link
        back = [FileSpec(str(tmp_path / "in" / f"{i}"), f.remote, f.size if i % 2 else -1)
                for i, f in enumerate(files)]
        rep2 = pull(frontends, back, bundle_bytes=500_000, jobs_per_link=3)
        assert rep2.ok, rep2.errors[:5]
        assert (rep2.files, rep2.bytes) == (len(files), total)
        assert test_site.auth_count() == before  # the transfer spent no token
    finally:
        frontends[0].run(["rm", "-rf", "--", remote_dir])
    for f, b in zip(files, back, strict=True):
        assert sha(b.local) == sha(f.local)
    assert not os.path.exists("/tmp/rb_xfer_pwned") and not os.path.exists("/tmp/rb_xfer_pwned2")
    calls = [p.read_bytes().split(b"\0") for p in sorted(ssh_log.iterdir())]
    assert calls, "the transfer made no ssh call?"
    for argv in calls:  # every call rode a master and could not log in on its own
        assert b"ControlMaster=no" in argv and b"ProxyCommand=false" in argv
        assert b"BatchMode=yes" in argv


def test_remote_files_are_owned_by_the_login_user_and_fresh(
        test_site: Any, frontends: list[OpenSSHLink], tmp_path: Path) -> None:
    src = tmp_path / "old"
    src.write_bytes(b"x" * 1000)
    os.utime(src, (1_000_000_000, 1_000_000_000))
    remote = f"{test_site.user_scratch}/rb-xfer-{uuid.uuid4().hex[:8]}/deep/er/old"
    try:
        rep = push(frontends[:1], [FileSpec(str(src), remote, 1000)])
        assert rep.ok, rep.errors
        out = frontends[0].run(["stat", "-c", "%U %s %Y", "--", remote]).out.split()
        assert out[0] == test_site.login_user and out[1] == "1000"
        assert abs(int(out[2]) - time.time()) < 600  # stamped on arrival: purge-safe
    finally:
        frontends[0].run(["rm", "-rf", "--", remote.rsplit("/deep/", 1)[0]])


def test_link_and_socket_products_are_refused_on_the_site(
        test_site: Any, frontends: list[OpenSSHLink], tmp_path: Path) -> None:
    """The one-call product check on a real front end: a link to /etc/passwd is fault
    37, a socket fault 38, a plain file gives its size; the link is not pulled either."""
    from remotebridge.poll.faults import PollFault
    from remotebridge.poll.remote_files import check_products

    base = f"{test_site.user_scratch}/rb-links-{uuid.uuid4().hex[:8]}"
    job, out = f"{base}/job", f"{base}/out"
    link = frontends[0]
    make = ("import os, socket, sys; job, out = sys.argv[1:]; os.makedirs(job); "
            "os.makedirs(out); open(out + '/ok.fits', 'w').write('x' * 42); "
            "os.symlink('/etc/passwd', out + '/l.fits'); "
            "socket.socket(socket.AF_UNIX).bind(out + '/s.fits')")
    link.run(["python3", "-c", make, job, out])
    roots = [job, out]
    try:
        assert check_products(link, [f"{out}/ok.fits"], roots) == {f"{out}/ok.fits": 42}
        for name, fault, words in (("l.fits", 37, "symbolic link"), ("s.fits", 38, "a socket")):
            with pytest.raises(PollFault) as info:
                check_products(link, [f"{out}/ok.fits", f"{out}/{name}"], roots)
            assert info.value.fault == fault and words in info.value.message
        rep = pull(frontends, [FileSpec(str(tmp_path / "l"), f"{out}/l.fits")])
        assert not rep.ok and "is a link" in rep.errors[0]
        assert not (tmp_path / "l").exists()
    finally:
        link.run(["rm", "-rf", "--", base])
