"""The local link: argv round trip, streams, files, errors; and links_for()."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from remotebridge.config import SiteConfig, SiteKind
from remotebridge.errors import RemoteCommandFailed, TransientLinkError
from remotebridge.ssh import LocalLink, links_for

HOSTILE = [
    "plain", "with space", "it's", 'double"quote', "semi;colon", "$(touch pwned)",
    "`touch pwned2`", "new\nline", "-n", "--", "*", "", "tab\there", "back\\slash",
    "dollar$HOME", "ünïcødé", "> redirect", "| pipe",
]

ECHO_ARGV = [sys.executable, "-c", "import sys,json;print(json.dumps(sys.argv[1:]))"]


@pytest.fixture()
def link(tmp_path: Path) -> LocalLink:
    return LocalLink(tmp_path / "site", host="demo")


def test_hostile_argv_reaches_command_exactly(link: LocalLink) -> None:
    result = link.run([*ECHO_ARGV, *HOSTILE])
    assert json.loads(result.out) == HOSTILE
    assert not (link.root / "pwned").exists() and not (link.root / "pwned2").exists()


def test_hostile_argv_through_printf_nul(link: LocalLink) -> None:
    result = link.run(["printf", "%s\\0", *HOSTILE])
    assert result.stdout.split(b"\0")[:-1] == [a.encode() for a in HOSTILE]


def test_runs_in_local_root(link: LocalLink) -> None:
    assert link.run(["pwd"]).out.strip() == str(link.root)


def test_failure_raises_with_evidence(link: LocalLink) -> None:
    with pytest.raises(RemoteCommandFailed) as info:
        link.run(["sh", "-c", "echo oops >&2; exit 3"])
    assert info.value.evidence.rc == 3
    assert "oops" in info.value.evidence.stderr
    assert info.value.evidence.argv[0] == "sh"


def test_failure_without_check_returns_result(link: LocalLink) -> None:
    result = link.run(["sh", "-c", "exit 4"], check=False)
    assert result.rc == 4 and not result.ok


def test_missing_command_is_127(link: LocalLink) -> None:
    result = link.run(["no-such-command-rb"], check=False)
    assert result.rc == 127
    with pytest.raises(RemoteCommandFailed):
        link.run(["no-such-command-rb"])


def test_stdin_bytes(link: LocalLink) -> None:
    assert link.run(["cat"], stdin=b"\x00\x01abc").stdout == b"\x00\x01abc"


def test_timeout_is_transient_and_not_endless(link: LocalLink) -> None:
    link.retry = link.retry.__class__(attempts=2, wait_initial=0.01, wait_max=0.01)
    with pytest.raises(TransientLinkError):
        link.run(["sleep", "5"], timeout=0.3)


def test_streams_and_files(link: LocalLink, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 5000
    link.run_stream_in(["sh", "-c", "cat > blob"], io.BytesIO(payload))
    assert (link.root / "blob").read_bytes() == payload
    sink = io.BytesIO()
    link.run_stream_out(["cat", "blob"], sink)
    assert sink.getvalue() == payload

    src = tmp_path / "local file"
    src.write_bytes(payload)
    link.put(src, "sub dir/it's here")
    assert (link.root / "sub dir" / "it's here").read_bytes() == payload
    back = tmp_path / "back" / "copy"
    link.get("sub dir/it's here", back)
    assert back.read_bytes() == payload


def test_get_missing_file_fails_and_leaves_nothing(link: LocalLink, tmp_path: Path) -> None:
    target = tmp_path / "out" / "x"
    with pytest.raises(RemoteCommandFailed):
        link.get("nope", target)
    assert not target.exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_stream_failure_raises(link: LocalLink) -> None:
    with pytest.raises(RemoteCommandFailed):
        link.run_stream_out(["sh", "-c", "echo part; exit 2"], io.BytesIO())


def test_check(link: LocalLink) -> None:
    assert link.check()


def test_links_for_local_site(tmp_path: Path) -> None:
    site = SiteConfig(name="demo", kind=SiteKind.LOCAL, local_root=str(tmp_path / "r"))
    links = links_for(site)
    assert len(links) == 1 and isinstance(links[0], LocalLink)
    assert links[0].run(["pwd"]).out.strip() == str(tmp_path / "r")
