"""A hostile site: crafted tar streams must never put anything outside the plan."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from remotebridge.errors import UnsafeArchive
from remotebridge.ssh import LocalLink
from remotebridge.transfer import FileSpec, plan_bundles, pull, pull_bundle

Member = tuple[tarfile.TarInfo, bytes]


class EvilLink(LocalLink):
    """Answers every ``tar -c`` with a prepared archive (the names asked are ignored)."""

    archive = ""

    def _local_argv(self, argv: Sequence[str]) -> list[str]:
        if list(argv[:2]) == ["tar", "-c"]:
            return ["cat", self.archive]
        return super()._local_argv(argv)


def reg(name: str, data: bytes) -> Member:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def special(name: str, kind: bytes, linkname: str = "") -> Member:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, b""


def build(path: Path, members: list[Member]) -> None:
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[EvilLink, list[FileSpec], Path]:
    site = tmp_path / "site"
    specs = [FileSpec(str(tmp_path / "home" / n), str(site / n), 5) for n in ("a", "b")]
    link = EvilLink(tmp_path / "cwd")
    link.archive = str(tmp_path / "evil.tar")
    return link, specs, tmp_path


def m(spec: FileSpec) -> str:
    return spec.member


CASES: dict[str, Callable[[list[FileSpec], Path], list[Member]]] = {
    "absolute": lambda s, t: [reg(m(s[0]), b"aaaaa"), reg(str(t / "home" / "b"), b"xxxxx")],
    "dotdot": lambda s, t: [reg(m(s[0]), b"aaaaa"), reg(m(s[1]) + "/../../../home/b", b"xxxxx")],
    "dotdot-plain": lambda s, t: [reg("../../escape", b"xxxxx")],
    "symlink-out": lambda s, t: [reg(m(s[0]), b"aaaaa"), special(m(s[1]), tarfile.SYMTYPE,
                                                                 "/etc/passwd")],
    "symlink-in": lambda s, t: [special(m(s[1]), tarfile.SYMTYPE, "a"), reg(m(s[0]), b"aaaaa")],
    "hardlink": lambda s, t: [reg(m(s[0]), b"aaaaa"), special(m(s[1]), tarfile.LNKTYPE, m(s[0]))],
    "fifo": lambda s, t: [reg(m(s[0]), b"aaaaa"), special(m(s[1]), tarfile.FIFOTYPE)],
    "chardev": lambda s, t: [reg(m(s[0]), b"aaaaa"), special(m(s[1]), tarfile.CHRTYPE)],
    "blockdev": lambda s, t: [special(m(s[1]), tarfile.BLKTYPE)],
    "directory": lambda s, t: [special(m(s[1]), tarfile.DIRTYPE)],
    "unrequested": lambda s, t: [reg(m(s[0]), b"aaaaa"), reg(m(s[1]), b"bbbbb"),
                                 reg(m(s[1]) + ".extra", b"zz")],
    "twice": lambda s, t: [reg(m(s[0]), b"aaaaa"), reg(m(s[0]), b"AAAAA")],
    "too-big": lambda s, t: [reg(m(s[0]), b"aaaaa"), reg(m(s[1]), b"b" * 50_000)],
}


def nothing_installed(tmp: Path) -> bool:
    home = tmp / "home"
    return not home.exists() or not any(home.rglob("*"))


@pytest.mark.parametrize("case", sorted(CASES))
def test_unsafe_member_refused_and_nothing_installed(
        setup: tuple[EvilLink, list[FileSpec], Path], case: str) -> None:
    link, specs, tmp = setup
    members = CASES[case](specs, tmp)
    build(Path(link.archive), members)
    (bundle,) = plan_bundles(specs)
    with pytest.raises(UnsafeArchive) as err:
        pull_bundle(link, bundle)
    bad = members[-1][0].name if case not in ("symlink-in",) else members[0][0].name
    assert repr(bad) in str(err.value)
    assert nothing_installed(tmp)
    assert not (tmp / "escape").exists() and not (tmp.parent / "escape").exists()
    # through the fan-out it is a reported failure, never a partial install
    rep = pull([link], specs)
    assert set(rep.failed) == set(specs) and rep.files == 0
    assert "archive member" in rep.errors[0]
    assert nothing_installed(tmp)


def test_compressed_stream_is_refused(setup: tuple[EvilLink, list[FileSpec], Path]) -> None:
    link, specs, tmp = setup
    with tarfile.open(link.archive, "w:gz") as tf:
        info, data = reg(m(specs[0]), b"aaaaa")
        tf.addfile(info, io.BytesIO(data))
    rep = pull([link], specs)
    assert rep.files == 0 and nothing_installed(tmp)


def test_honest_crafted_archive_installs(setup: tuple[EvilLink, list[FileSpec], Path]) -> None:
    link, specs, tmp = setup
    build(Path(link.archive), [reg(m(specs[1]), b"bbbbb"), reg(m(specs[0]), b"aaaaa")])
    rep = pull([link], specs)
    assert rep.ok, rep.errors
    assert Path(specs[0].local).read_bytes() == b"aaaaa"
    assert sorted(p.name for p in (tmp / "home").iterdir()) == ["a", "b"]
