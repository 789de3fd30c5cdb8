"""Push and pull over LocalLinks with the real tar: round trips, sizes, faults, fan-out."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from remotebridge.errors import LinkDown, TransientLinkError
from remotebridge.ssh import LocalLink
from remotebridge.transfer import FileSpec, pull, push

HOSTILE = ["with space", "it's", 'dq"x', "a;b", "$(touch PWNED)", "`touch PWNED2`",
           "new\nline", "-rf", "--", "back\\slash", "ünï", "#hash", "*", "tab\tx", "~"]


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def make_files(tmp: Path, n_small: int = 300, big: Sequence[int] = (2_000_000, 3_100_000)
               ) -> list[FileSpec]:
    """Small and big local files with hostile names; remote paths under tmp/site."""
    rnd = random.Random(7)
    specs = []
    for i in range(n_small + len(big)):
        name = HOSTILE[i % len(HOSTILE)]
        size = big[i - n_small] if i >= n_small else rnd.randint(0, 6000)
        local = tmp / "home" / f"d{i % 7} {name}" / f"{name}.{i}"
        write(local, rnd.randbytes(size))
        specs.append(FileSpec(str(local), str(tmp / "site" / f"{name} dir" / f"-{i} {name}"),
                              size))
    return specs


def links(tmp: Path, n: int = 2) -> list[LocalLink]:
    return [LocalLink(tmp / "cwd", host=f"fe{i + 1}") for i in range(n)]


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.startswith(".rb-staging")]


def test_round_trip_many_small_and_some_big_files(tmp_path: Path) -> None:
    files = make_files(tmp_path)
    progress: list[tuple[int, int]] = []
    rep = push(links(tmp_path, 3), files, bundle_bytes=200_000, jobs_per_link=3,
               progress=lambda d, t: progress.append((d, t)))
    assert rep.ok, rep.errors
    total = sum(f.size for f in files)
    assert (rep.files, rep.bytes) == (len(files), total)
    assert rep.bundles >= 8 and sum(rep.per_link.values()) == total
    assert progress[-1] == (total, total) or max(progress)[0] == total
    for f in files:
        assert digest(f.remote) == digest(f.local)
    back = [FileSpec(str(tmp_path / "back" / f"{i} {Path(f.local).name}"), f.remote,
                     f.size if i % 2 else -1) for i, f in enumerate(files)]
    rep = pull(links(tmp_path, 3), back, bundle_bytes=200_000, jobs_per_link=3)
    assert rep.ok, rep.errors
    assert (rep.files, rep.bytes) == (len(files), total)
    for f, b in zip(files, back, strict=True):
        assert digest(b.local) == digest(f.local)
    assert not leftovers(tmp_path)
    assert not list(tmp_path.rglob("PWNED*"))


def test_pull_replaces_existing_files_and_keeps_symlinked_targets(tmp_path: Path) -> None:
    write(tmp_path / "site" / "x", b"new")
    write(tmp_path / "home" / "x", b"old contents")
    write(tmp_path / "elsewhere", b"keep")
    (tmp_path / "home" / "y").symlink_to(tmp_path / "elsewhere")
    specs = [FileSpec(str(tmp_path / "home" / "x"), str(tmp_path / "site" / "x"), 3),
             FileSpec(str(tmp_path / "home" / "y"), str(tmp_path / "site" / "x"), 3)]
    rep = pull(links(tmp_path, 1), specs[:1])
    rep2 = pull(links(tmp_path, 1), specs[1:])
    assert rep.ok and rep2.ok
    assert (tmp_path / "home" / "x").read_bytes() == b"new"
    assert not (tmp_path / "home" / "y").is_symlink()
    assert (tmp_path / "elsewhere").read_bytes() == b"keep"


def test_pull_of_missing_remote_file_installs_the_others(tmp_path: Path) -> None:
    write(tmp_path / "site" / "a", b"aaa")
    specs = [FileSpec(str(tmp_path / "home" / "a"), str(tmp_path / "site" / "a"), 3),
             FileSpec(str(tmp_path / "home" / "b"), str(tmp_path / "site" / "b"), 3)]
    rep = pull(links(tmp_path, 1), specs)
    assert rep.failed == [specs[1]] and rep.files == 1
    assert "not received" in rep.errors[0]
    assert (tmp_path / "home" / "a").read_bytes() == b"aaa"
    assert not (tmp_path / "home" / "b").exists()


def test_pull_refuses_remote_links_and_size_mismatch(tmp_path: Path) -> None:
    write(tmp_path / "site" / "real", b"12345")
    (tmp_path / "site" / "alias").symlink_to("real")
    alias = FileSpec(str(tmp_path / "home" / "alias"), str(tmp_path / "site" / "alias"), 5)
    rep = pull(links(tmp_path, 1), [alias])
    assert rep.failed == [alias] and "is a link" in rep.errors[0]
    assert not (tmp_path / "home" / "alias").exists()
    write(tmp_path / "site" / "real2", b"12345")
    ok = FileSpec(str(tmp_path / "home" / "ok"), str(tmp_path / "site" / "real2"), 5)
    short = FileSpec(str(tmp_path / "home" / "short"), str(tmp_path / "site" / "real"), 9)
    rep = pull(links(tmp_path, 1), [short, ok])
    assert set(rep.failed) == {short, ok}  # the whole bundle: nothing installed
    assert "expected 9" in rep.errors[0]
    assert not (tmp_path / "home" / "short").exists()


class TruncatingLink(LocalLink):
    """Cuts one remote file short between the push and its size check."""

    victim = ""

    def run(self, argv: Sequence[str], **kw: Any) -> Any:
        if argv[0] == "xargs" and self.victim and os.path.exists(self.victim):
            os.truncate(self.victim, 10)
        return super().run(argv, **kw)


def test_push_verifies_sizes_and_reports_a_truncated_file(tmp_path: Path) -> None:
    files = make_files(tmp_path, n_small=5, big=())
    link = TruncatingLink(tmp_path / "cwd")
    link.victim = files[2].remote
    rep = push([link], files)
    assert rep.failed == [files[2]] and rep.files == 4
    assert "is 10 bytes" in rep.errors[0] and f"expected {files[2].size}" in rep.errors[0]


def test_push_refuses_a_local_file_that_changed_or_vanished(tmp_path: Path) -> None:
    files = make_files(tmp_path, n_small=3, big=())
    changed = FileSpec(files[0].local, files[0].remote, files[0].size + 1)
    gone = FileSpec(str(tmp_path / "nope"), str(tmp_path / "site" / "nope"), 3)
    rep = push(links(tmp_path, 1), [changed, gone, *files[1:]])
    assert set(rep.failed) == {changed, gone} and rep.files == 2
    assert not Path(changed.remote).exists() and not Path(gone.remote).exists()


def test_push_into_an_unwritable_place_is_reported(tmp_path: Path) -> None:
    write(tmp_path / "l", b"x")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "file").write_bytes(b"")  # a file where a folder should be
    spec = FileSpec(str(tmp_path / "l"), str(tmp_path / "site" / "file" / "x"), 1)
    rep = push(links(tmp_path, 1), [spec])
    assert rep.failed == [spec] and "missing" in rep.errors[0] and "tar:" in rep.errors[0]


class CuttingLink(LocalLink):
    """The remote tar's output stops after ``limit`` bytes and the command fails."""

    limit = 150_000

    def _local_argv(self, argv: Sequence[str]) -> list[str]:
        if list(argv[:2]) == ["tar", "-c"]:
            return ["sh", "-c", f'tar "$@" | head -c {self.limit}; exit 1', "sh", *argv[1:]]
        return super()._local_argv(argv)


@pytest.mark.parametrize("limit", [150_000, 3 * 512 + 1000, 10])
def test_interrupted_pull_leaves_no_partial_file(tmp_path: Path, limit: int) -> None:
    for i in range(4):
        write(tmp_path / "site" / f"f{i}", os.urandom(100_000))
    specs = [FileSpec(str(tmp_path / "home" / f"f{i}"), str(tmp_path / "site" / f"f{i}"), -1)
             for i in range(4)]
    link = CuttingLink(tmp_path / "cwd")
    link.limit = limit
    rep = pull([link], specs)
    assert not rep.ok
    home = tmp_path / "home"
    # a file is either complete or absent
    for s in specs:
        assert not Path(s.local).exists() or digest(s.local) == digest(s.remote)
    assert set(rep.failed) | {s for s in specs if Path(s.local).exists()} == set(specs)
    assert not leftovers(tmp_path) and (not home.exists() or all(
        not p.name.startswith(".") for p in home.iterdir()))


def test_pull_interrupted_by_the_caller_cleans_up(tmp_path: Path) -> None:
    for i in range(3):
        write(tmp_path / "site" / f"f{i}", os.urandom(3_000_000))
    specs = [FileSpec(str(tmp_path / "home" / f"f{i}"), str(tmp_path / "site" / f"f{i}"),
                      3_000_000) for i in range(3)]

    def stop(done: int, total: int) -> None:
        if done > 4_000_000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pull(links(tmp_path, 1), specs, progress=stop)
    assert not any(Path(s.local).exists() for s in specs)
    assert not leftovers(tmp_path)


class FlakyLink(LocalLink):
    """Streams fail: ``mode`` is "transient" or "down"; ``fails`` times (-1: always)."""

    def __init__(self, root: Path, host: str, mode: str, fails: int = -1) -> None:
        super().__init__(root, host=host)
        self.mode, self.fails = mode, fails
        self.lock = threading.Lock()

    @contextlib.contextmanager
    def open_process(self, argv: Sequence[str], **kw: Any) -> Iterator[Any]:
        with self.lock:
            fail = self.fails != 0
            if self.fails > 0:
                self.fails -= 1
        if fail:
            exc = TransientLinkError if self.mode == "transient" else LinkDown
            raise exc(f"{self.host} is {self.mode}")
        with super().open_process(argv, **kw) as proc:
            yield proc


def test_transient_bundle_is_retried_on_another_link(tmp_path: Path) -> None:
    files = make_files(tmp_path, n_small=40, big=())
    bad = FlakyLink(tmp_path / "cwd", "bad", "transient")
    good = LocalLink(tmp_path / "cwd", host="good")
    rep = push([bad, good], files, bundle_bytes=20_000, jobs_per_link=2)
    assert rep.ok, rep.errors
    assert rep.per_link == {"bad": 0, "good": sum(f.size for f in files)}


def test_transient_once_on_the_only_link_is_retried_there(tmp_path: Path) -> None:
    files = make_files(tmp_path, n_small=5, big=())
    rep = push([FlakyLink(tmp_path / "cwd", "only", "transient", fails=1)], files)
    assert rep.ok, rep.errors


def test_transient_twice_is_reported_failed(tmp_path: Path) -> None:
    files = make_files(tmp_path, n_small=5, big=())
    links_ = [FlakyLink(tmp_path / "cwd", h, "transient") for h in ("a", "b")]
    rep = push(links_, files)
    assert set(rep.failed) == set(files) and rep.files == 0
    assert "transient" in rep.errors[0]


def test_one_link_down_the_others_do_the_work(tmp_path: Path) -> None:
    files = make_files(tmp_path, n_small=30, big=())
    rep = push([FlakyLink(tmp_path / "cwd", "down", "down"),
                LocalLink(tmp_path / "cwd", host="up")], files, bundle_bytes=20_000)
    assert rep.ok and rep.per_link["down"] == 0


def test_every_link_down_raises_link_down(tmp_path: Path) -> None:
    files = make_files(tmp_path, n_small=30, big=())
    with pytest.raises(LinkDown):
        push([FlakyLink(tmp_path / "cwd", h, "down") for h in ("a", "b")], files,
             bundle_bytes=20_000)


class CountingLink(LocalLink):
    """Records the most streams open at once."""

    def __init__(self, root: Path, host: str) -> None:
        super().__init__(root, host=host)
        self.lock = threading.Lock()
        self.now = self.peak = self.streams = 0

    @contextlib.contextmanager
    def open_process(self, argv: Sequence[str], **kw: Any) -> Iterator[Any]:
        with self.lock:
            self.now += 1
            self.streams += 1
            self.peak = max(self.peak, self.now)
        try:
            with super().open_process(argv, **kw) as proc:
                yield proc
        finally:
            with self.lock:
                self.now -= 1


def test_jobs_per_link_bounds_concurrency_and_all_links_work(tmp_path: Path) -> None:
    files = make_files(tmp_path, n_small=200, big=())
    links_ = [CountingLink(tmp_path / "cwd", f"fe{i}") for i in range(3)]
    rep = push(links_, files, bundle_bytes=10_000, jobs_per_link=2)
    assert rep.ok
    assert all(1 <= link.peak <= 2 for link in links_)
    assert sum(link.streams for link in links_) == rep.bundles
    assert all(v > 0 for v in rep.per_link.values())


def test_empty_transfer(tmp_path: Path) -> None:
    rep = push(links(tmp_path), [])
    assert rep.ok and rep.files == rep.bundles == 0 and rep.rate_mb_s == 0.0


def test_interrupt_stops_the_other_workers(tmp_path: Path) -> None:
    files = make_files(tmp_path, n_small=60, big=())
    calls = 0

    def stop(done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        push(links(tmp_path, 2), files, bundle_bytes=5_000, jobs_per_link=1, progress=stop)
    # the others finished their bundle in flight and took no new one
    assert sum(Path(f.remote).exists() for f in files) < len(files) // 2


def test_the_push_stream_is_a_tar_that_tar_reads(tmp_path: Path) -> None:
    """The push stream (headers by tarfile, data by sendfile) is a well-formed archive:
    GNU tar lists it and Python's tarfile gives back every byte; odd names survive."""
    import subprocess
    import tarfile

    from remotebridge.transfer.push import _tarinfo, _TarStream

    names = ["a.fits", "b c'd.txt", "-lead", "x" * 120, "empty"]
    sizes = [70000, 513, 512, 3, 0]
    src = tmp_path / "src"
    src.mkdir()
    archive = tmp_path / "s.tar"
    with open(archive, "wb") as out:
        tar = _TarStream(out.fileno(), None)
        for name, size in zip(names, sizes, strict=True):
            (src / name).write_bytes(os.urandom(size))
            with open(src / name, "rb") as f:
                spec = FileSpec(str(src / name), f"/dest/{name}", size)
                tar.add(_tarinfo(spec, os.fstat(f.fileno())), f.fileno())
        tar.close()
    assert archive.stat().st_size % tarfile.RECORDSIZE == 0
    listed = subprocess.run(["tar", "-tf", str(archive)], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    assert listed == [f"dest/{n}" for n in names]
    with tarfile.open(archive) as tf:
        for name in names:
            member = tf.extractfile(f"dest/{name}")
            assert member is not None and member.read() == (src / name).read_bytes()


def test_a_file_that_shrinks_while_it_is_sent_is_refused(tmp_path: Path) -> None:
    from remotebridge.errors import TransferError
    from remotebridge.transfer.push import _tarinfo, _TarStream

    path = tmp_path / "f"
    path.write_bytes(b"x" * 5000)
    with open(path, "rb") as f, open(tmp_path / "s.tar", "wb") as out:
        st = os.fstat(f.fileno())
        path.write_bytes(b"x" * 100)  # truncated after the header's size was taken
        with pytest.raises(TransferError, match="shrank"):
            _TarStream(out.fileno(), None).add(
                _tarinfo(FileSpec(str(path), "/d/f", 5000), st), f.fileno())
