"""Bundle planning and remote-path rules (no I/O)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remotebridge.errors import TransferError
from remotebridge.transfer import FileSpec, member_name, plan_bundles
from remotebridge.transfer.bundles import TAR_HEADER_BYTES, check_unique


def specs(sizes: list[int]) -> list[FileSpec]:
    return [FileSpec(f"/home/f{i}", f"/site/f{i}", s) for i, s in enumerate(sizes)]


def cost(spec: FileSpec) -> int:
    return max(spec.size, 0) + TAR_HEADER_BYTES


@settings(max_examples=300, deadline=None)
@given(sizes=st.lists(st.one_of(st.integers(0, 5000), st.just(-1)), max_size=200),
       bundle_bytes=st.integers(1, 20000), max_files=st.integers(1, 50))
def test_every_file_in_exactly_one_bundle_and_bounded(sizes: list[int], bundle_bytes: int,
                                                      max_files: int) -> None:
    files = specs(sizes)
    bundles = plan_bundles(files, bundle_bytes, max_files=max_files)
    assert [f for b in bundles for f in b.files] == files  # each once, order kept
    assert [b.index for b in bundles] == list(range(len(bundles)))
    for i, b in enumerate(bundles):
        assert 1 <= len(b) <= max_files
        used = sum(cost(f) for f in b.files)
        assert used <= bundle_bytes or len(b) == 1  # only a lone big file goes over
        if i + 1 < len(bundles):  # greedy: the next file did not fit
            nxt = bundles[i + 1].files[0]
            assert used + cost(nxt) > bundle_bytes or len(b) == max_files


@given(sizes=st.lists(st.integers(0, 10**9), max_size=50))
def test_planning_is_deterministic(sizes: list[int]) -> None:
    assert plan_bundles(specs(sizes), 10**8) == plan_bundles(specs(sizes), 10**8)


def test_big_file_travels_alone() -> None:
    bundles = plan_bundles(specs([10, 500_000, 10, 10]), 100_000)
    assert [len(b) for b in bundles] == [1, 1, 2]
    assert bundles[1].bytes == 500_000


def test_default_bundle_is_about_100_mb() -> None:
    bundles = plan_bundles(specs([1_000_000] * 250))
    assert [len(b) for b in bundles] == [99, 99, 52]


def test_empty_plan() -> None:
    assert plan_bundles([], 100) == []


@pytest.mark.parametrize("remote", ["relative/x", "/a/../b", "/a/./b", "/a//b", "/a/b/",
                                    "/", "", "/a\0b", "/.."])
def test_unsafe_remote_paths_are_refused(remote: str) -> None:
    with pytest.raises(TransferError):
        member_name(remote)
    with pytest.raises(TransferError):
        plan_bundles([FileSpec("/l", remote, 1)], 100)


def test_member_names_keep_hostile_characters() -> None:
    for name in ["a b", "it's", "$(x)", "`id`", "new\nline", "-rf", "ünï", "..x", "x.."]:
        assert member_name(f"/s/{name}") == f"s/{name}"


def test_duplicate_destinations_are_refused() -> None:
    with pytest.raises(TransferError):
        check_unique([FileSpec("/a", "/r", 1), FileSpec("/b", "/r", 1)], "remote")
    check_unique([FileSpec("/a", "/r", 1), FileSpec("/b", "/s", 1)], "remote")
