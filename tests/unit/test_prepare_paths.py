"""Path translation: rules, mirror default, resolvers, refusal of unsafe names."""

from __future__ import annotations

import pytest

from remotebridge.config import PathRule, SiteConfig
from remotebridge.errors import PrepareError
from remotebridge.prepare.paths import (
    NebResolver,
    PathTranslator,
    check_name,
    register_resolver,
    resolve_uri,
)
from remotebridge.prepare.plan import Area


def translator() -> PathTranslator:
    site = SiteConfig(path_rules=[
        PathRule("/data/detrends", "/projects/ps1/detrends", "permanent"),
        PathRule("/data", "/scratch/u/data", "scratch"),
    ])
    return PathTranslator(site, "/scratch/u/rb")


def test_first_matching_rule_wins() -> None:
    t = translator()
    assert t.to_remote("/data/detrends/bias/b.fits") == ("/projects/ps1/detrends/bias/b.fits",
                                                         Area.PERMANENT)
    assert t.to_remote("/data/raw/x.fits") == ("/scratch/u/data/raw/x.fits", Area.SCRATCH)
    # a prefix must end at a path boundary
    assert t.to_remote("/database/x") == ("/scratch/u/rb/home/database/x", Area.SCRATCH)


def test_mirror_default_and_back() -> None:
    t = translator()
    remote, area = t.to_remote("/home/ipp/prog.py")
    assert remote == "/scratch/u/rb/home/home/ipp/prog.py" and area is Area.SCRATCH
    for local in ["/home/ipp/prog.py", "/data/detrends/b.fits", "/data/raw/a b.fits"]:
        assert t.to_local(t.to_remote(local)[0]) == local
    with pytest.raises(PrepareError):
        t.to_local("/elsewhere/x")


def test_resolvers() -> None:
    assert resolve_uri("/a/b") == "/a/b"
    assert resolve_uri("file:///a/b%20c") == "/a/b c"
    register_resolver("neb", NebResolver("/neb/root"))
    assert resolve_uri("neb://ipp020.0/czw/x.fits") == "/neb/root/czw/x.fits"
    with pytest.raises(PrepareError, match="no resolver"):
        resolve_uri("s3://bucket/x")


def test_unsafe_names_refused() -> None:
    check_name("/a/we ird;$(rm -rf)`x`'\"-n.fits")
    with pytest.raises(PrepareError, match="not an absolute path"):
        check_name("relative/x.fits")
    for bad in ["/a/b\tc", "/a/b\nc", "/a/\x00"]:
        with pytest.raises(PrepareError, match="tab, newline or NUL") as exc:
            check_name(bad, component=3)
        assert exc.value.component == 3


@pytest.mark.parametrize("bad", ["/data//x.fits", "/data/./x.fits", "/data/../etc/x",
                                 "/data/x/..", "/data/x/.", "//data/x.fits"])
def test_names_not_normalised_refused(bad: str) -> None:
    with pytest.raises(PrepareError, match="not normalised") as exc:
        check_name(bad, component=4)
    assert (exc.value.component, exc.value.fault) == (4, 15)


@pytest.mark.parametrize("good", ["/data/x.fits", "/data/.hidden", "/data/..x/a..b", "/"])
def test_normalised_names_pass(good: str) -> None:
    assert check_name(good) == good


def test_every_short_name_is_judged_by_its_segments() -> None:
    """The quick check agrees with the rule on every name of up to 6 characters drawn
    from '/', '.', 'a' and a newline (absolute, no bad character, no empty, '.' or '..'
    segment but the last may be empty)."""
    import itertools

    def refused(name: str) -> bool:
        parts = name.split("/")[1:]
        return (not name.startswith("/") or "\n" in name
                or any(p in ("", ".", "..") for p in parts[:-1]) or parts[-1] in (".", ".."))

    for n in range(1, 7):
        for letters in itertools.product("/.a\n", repeat=n):
            name = "".join(letters)
            try:
                check_name(name)
                ok = True
            except PrepareError:
                ok = False
            assert ok is not refused(name), repr(name)
