"""Hostile files on the site: links, special files, crash leftovers, cut pushes.

The site check (``rbtransfer.py sizes`` sent inline), the pull without
``--dereference``, the sweep of stale staging folders and the atomic push, each over
a LocalLink with the real tar and the real helper.
"""

from __future__ import annotations

import importlib
import io
import os
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from remotebridge.poll.faults import PollFault
from remotebridge.poll.remote_files import check_products, planned_roots
from remotebridge.remote import inline_transfer_argv
from remotebridge.ssh import LocalLink
from remotebridge.transfer import FileSpec, pull, push

PY = sys.executable
OLD = time.time() - 7200  # older than the 30-minute lease


@pytest.fixture()
def site(tmp_path: Path) -> Path:
    """A job folder and two planned output folders, one good product in each."""
    for d in ("job", "out/c1", "out/c2"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "out/c1/a.fits").write_bytes(b"A" * 100)
    (tmp_path / "out/c2/b.fits").write_bytes(b"B" * 50)
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret/a.fits").write_bytes(b"not yours")
    return tmp_path


def check(site: Path, *products: str) -> dict[str, int]:
    paths = [str(site / p) for p in products]
    planned = [str(site / p) for p in ("out/c1/a.fits", "out/c2/b.fits", *products)]
    return check_products(LocalLink(site / "cwd"), paths,
                          planned_roots(str(site / "job"), planned), python=PY)


def refused(site: Path, product: str) -> PollFault:
    with pytest.raises(PollFault) as info:
        check(site, "out/c1/a.fits", product)
    return info.value


def test_regular_products_give_their_sizes_and_missing_ones_are_left_out(site: Path) -> None:
    (site / "job/log.txt").write_text("x" * 7)
    assert check(site, "out/c1/a.fits", "out/c2/b.fits", "job/log.txt", "out/c1/none") == {
        str(site / "out/c1/a.fits"): 100, str(site / "out/c2/b.fits"): 50,
        str(site / "job/log.txt"): 7}


def test_hostile_names_are_data(site: Path) -> None:
    name = "out/c1/new\nline $(touch PWNED) 'q\" -rf ü.fits"
    (site / name).write_bytes(b"12345")
    assert check(site, name) == {str(site / name): 5}
    assert not list(site.rglob("PWNED"))


@pytest.mark.parametrize("target", ["/etc/passwd", "secret/a.fits", "out/c2/b.fits",
                                    "/nonexistent/dangling"])
def test_product_that_is_a_link_to_a_file(site: Path, target: str) -> None:
    """Anywhere on the site, inside the run's folders too, or dangling: a link is refused."""
    dest = target if target.startswith("/") else str(site / target)
    (site / "out/c1/l.fits").symlink_to(dest)
    exc = refused(site, "out/c1/l.fits")
    assert exc.fault == 37 and "l.fits is a symbolic link" in exc.message


@pytest.mark.parametrize("target", ["/etc", "secret", "out/c2"])
def test_product_that_is_a_link_to_a_folder(site: Path, target: str) -> None:
    dest = target if target.startswith("/") else str(site / target)
    (site / "out/c1/d").symlink_to(dest)
    exc = refused(site, "out/c1/d")
    assert exc.fault == 37 and "symbolic link" in exc.message


@pytest.mark.parametrize(("product", "link", "target"), [
    ("out/c3/passwd", "out/c3", "/etc"),                 # planned folder replaced by a link
    ("out/c3/a.fits", "out/c3", "secret"),               # ... to a folder of the same user
    ("out/c1/sub/a.fits", "out/c1/sub", "secret"),       # a link below a planned folder
    ("out/c1/x/y/a.fits", "out/c1/x", "secret"),         # deeper below the link
])
def test_link_in_a_parent_folder_escaping_is_refused(site: Path, product: str, link: str,
                                                     target: str) -> None:
    (site / "secret/y").mkdir()
    (site / "secret/y/a.fits").write_bytes(b"deep")
    (site / "out/a.fits").write_bytes(b"up")
    (site / link).symlink_to(site / target if not target.startswith("/") else target)
    exc = refused(site, product)
    assert exc.fault == 37 and "outside the run's own folders" in exc.message, exc.message


@pytest.mark.parametrize(("product", "link", "target"), [
    ("out/c1/sub/b.fits", "out/c1/sub", "out/c2"),       # to another planned folder
    ("job/o/a.fits", "job/o", "out/c1"),                 # from the job folder to an output
    ("out/c1/j/log", "out/c1/j", "job"),                 # to the job folder
])
def test_link_in_a_parent_folder_staying_inside_is_read(site: Path, product: str, link: str,
                                                        target: str) -> None:
    (site / "job/log").write_bytes(b"12")
    (site / link).symlink_to(site / target)
    assert check(site, product)[str(site / product)] == (site / product).stat().st_size


def test_socket_fifo_and_folder_are_refused(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sock = socket.socket(socket.AF_UNIX)
    monkeypatch.chdir(site / "out/c1")  # a socket path is limited to about 100 bytes
    try:
        sock.bind("s.fits")
        for product, kind in (("out/c1/s.fits", "a socket"), ("out/c1/f.fits", "a fifo"),
                              ("out/c1/d.fits", "a folder")):
            if product.endswith("f.fits"):
                os.mkfifo(site / product)
            if product.endswith("d.fits"):
                (site / product).mkdir()
            exc = refused(site, product)
            assert exc.fault == 38 and f"is {kind}" in exc.message, exc.message
    finally:
        sock.close()


def test_a_link_counts_before_a_socket(site: Path) -> None:
    os.mkfifo(site / "out/c1/f.fits")
    (site / "out/c2/l.fits").symlink_to("/etc/passwd")
    with pytest.raises(PollFault) as info:
        check(site, "out/c1/f.fits", "out/c2/l.fits")
    assert info.value.fault == 37 and "1 products refused" in info.value.message


def test_the_helper_answer_is_checked(site: Path) -> None:
    class Liar(LocalLink):
        def _local_argv(self, argv: Sequence[str]) -> list[str]:
            return ["printf", "reg 5 i /etc/passwd\\0"]

    with pytest.raises(PollFault) as info:
        check_products(Liar(site), [str(site / "out/c1/a.fits")], [str(site)], python=PY)
    assert info.value.fault == 32


# --- pull: a link swapped in after the check is not followed -----------------------------


@pytest.mark.parametrize("target", ["/etc/passwd", "/etc", "secret/a.fits"])
def test_pull_does_not_follow_a_link(site: Path, target: str) -> None:
    dest = target if target.startswith("/") else str(site / target)
    (site / "out/c1/l.fits").symlink_to(dest)
    home = site / "home"
    rep = pull([LocalLink(site / "cwd")], [FileSpec(str(home / "l.fits"),
                                                    str(site / "out/c1/l.fits"))])
    assert [f.local for f in rep.failed] == [str(home / "l.fits")]
    assert "is a link" in rep.errors[0]
    assert not (home / "l.fits").exists()


# --- staging folders left by killed pulls ------------------------------------------------


def staging(folder: Path, name: str, *, age: float) -> Path:
    d = folder / name
    d.mkdir(parents=True)
    (d / "000001").write_bytes(b"partial")
    for p in (d / "000001", d):
        os.utime(p, (time.time() - age, time.time() - age))
    return d


def test_pull_sweeps_stale_staging_folders_only(site: Path) -> None:
    home = site / "home"
    host = socket.gethostname()
    dead = staging(home, f".rb-staging-99999999@{host}-abcd1234", age=7200)
    old_format = staging(home, ".rb-staging-k2j3h4g5", age=7200)
    other_host = staging(home, ".rb-staging-12@elsewhere-abcd1234", age=7200)
    young = staging(home, f".rb-staging-99999999@{host}-young123", age=60)
    alive = staging(home, f".rb-staging-{os.getpid()}@{host}-alive123", age=7200)
    rep = pull([LocalLink(site / "cwd")],
               [FileSpec(str(home / "a.fits"), str(site / "out/c1/a.fits"))])
    assert rep.ok and (home / "a.fits").read_bytes() == b"A" * 100
    assert rep.swept == 3
    assert not dead.exists() and not old_format.exists() and not other_host.exists()
    assert young.exists() and alive.exists()
    assert sorted(p.name for p in home.iterdir() if p.name.startswith(".rb")) == sorted(
        [young.name, alive.name])


def test_staging_folder_names_its_owner(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pullmod = importlib.import_module("remotebridge.transfer.pull")
    seen: list[str] = []
    real = pullmod.Staging.new_file

    def spy(self: Any, dest: str) -> Path:
        path = real(self, dest)
        seen.append(path.parent.name)
        return path

    monkeypatch.setattr(pullmod.Staging, "new_file", spy)
    pull([LocalLink(site / "cwd")], [FileSpec(str(site / "h/a"), str(site / "out/c1/a.fits"))])
    assert seen and seen[0].startswith(f".rb-staging-{os.getpid()}@")


# --- pushes: a file at its final path is always whole ------------------------------------


class CutLink(LocalLink):
    """Delivers only the first ``cut`` bytes of every stream sent to the helper."""

    def __init__(self, root: Path, cut: int) -> None:
        super().__init__(root)
        self.cut = cut

    def _local_argv(self, argv: Sequence[str]) -> list[str]:
        if "unpack" not in argv:
            return list(argv)
        return ["sh", "-c", 'head -c "$0" | "$@"', str(self.cut), *argv]


@pytest.fixture()
def big(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    local = tmp_path / "home/big.bin"
    local.parent.mkdir()
    local.write_bytes(os.urandom(3_000_000))
    remote = tmp_path / "site/in/big.bin"
    yield local, remote


def test_push_cut_mid_way_leaves_no_short_file(tmp_path: Path, big: tuple[Path, Path]) -> None:
    local, remote = big
    rep = push([CutLink(tmp_path / "cwd", 1_000_000)],
               [FileSpec(str(local), str(remote), 3_000_000)])
    assert [f.remote for f in rep.failed] == [str(remote)]
    assert not remote.exists()
    assert os.listdir(remote.parent) == [], "no staging folder is left after a clean cut"


def test_push_cut_mid_way_keeps_the_old_file(tmp_path: Path, big: tuple[Path, Path]) -> None:
    local, remote = big
    remote.parent.mkdir(parents=True)
    remote.write_bytes(b"old complete version")
    small = tmp_path / "home/small.txt"
    small.write_bytes(b"small first")
    rep = push([CutLink(tmp_path / "cwd", 1_000_000)],
               [FileSpec(str(small), str(remote.parent / "small.txt"), 11),
                FileSpec(str(local), str(remote), 3_000_000)], bundle_bytes=10_000_000)
    assert [f.remote for f in rep.failed] == [str(remote)]
    assert remote.read_bytes() == b"old complete version"
    assert (remote.parent / "small.txt").read_bytes() == b"small first"


def _tar_of(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_killed_unpack_leaves_only_a_staging_folder_that_the_next_push_sweeps(
        tmp_path: Path, big: tuple[Path, Path]) -> None:
    local, remote = big
    stream = _tar_of(str(remote).lstrip("/"), local.read_bytes())
    proc = subprocess.Popen(inline_transfer_argv(PY, "unpack"), stdin=subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write(stream[:1_500_000])
    proc.stdin.flush()
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".rb-push-") and any(p.iterdir())
                  for p in remote.parent.glob(".rb-push-*")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.kill()  # SIGKILL: no clean-up at all
    proc.wait()
    proc.stdin.close()
    assert not remote.exists(), "nothing at the final path"
    [left] = remote.parent.glob(".rb-push-*")
    assert left.name.startswith(f".rb-push-{proc.pid}@")
    for p in [*left.iterdir(), left]:
        os.utime(p, (OLD, OLD))
    rep = push([LocalLink(tmp_path / "cwd")], [FileSpec(str(local), str(remote), 3_000_000)])
    assert rep.ok and remote.read_bytes() == local.read_bytes()
    assert os.listdir(remote.parent) == ["big.bin"]


def test_unpack_refuses_links_and_climbing_members(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        link = tarfile.TarInfo(str(tmp_path / "l").lstrip("/"))
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        up = tarfile.TarInfo(str(tmp_path / "x/../up").lstrip("/"))
        tf.addfile(up, io.BytesIO(b""))
    done = subprocess.run(inline_transfer_argv(PY, "unpack"), input=buf.getvalue(),
                          capture_output=True, check=False)
    assert done.returncode == 1 and b"refused" in done.stderr
    assert not (tmp_path / "l").is_symlink() and not (tmp_path / "up").exists()
