"""Multi-prog chunking: bytes, line length, argument count and slots, property-tested."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remotebridge.errors import PrepareError
from remotebridge.prepare.chunking import Limits, check_command, make_chunks


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 5000), max_bytes=st.integers(300, 60000), slots=st.integers(1, 3000),
       first=st.integers(0, 10**7))
def test_chunks_respect_every_limit(n: int, max_bytes: int, slots: int, first: int) -> None:
    ids = list(range(first, first + n))
    limits = Limits(max_bytes=max_bytes, max_line=16384, max_args=128, slots=slots)
    chunks = make_chunks("cmd", ids, limits)
    assert [t for c in chunks for t in c.task_ids] == ids  # every task once, in order
    for c in chunks:
        text = c.text()
        assert len(text.encode()) <= max_bytes
        assert len(c.task_ids) <= slots
        body = [ln for ln in text.splitlines() if not ln.startswith("#")]
        assert [int(ln.split()[0]) for ln in body] == list(range(len(body)))  # ranks 0..k-1
        for ln in body:
            assert len(ln) + 1 <= 16384 and len(ln.split()) <= 128
            assert "%" not in ln
            assert ln.split()[4] == c.name


def test_seed_size_file_is_split() -> None:
    """The seed's 69854-byte file would be refused: ours never exceed 60000."""
    chunks = make_chunks("cmd", list(range(3000)), Limits(slots=10**6))
    assert len(chunks) >= 2
    assert all(len(c.text()) <= 60000 for c in chunks)


def test_limit_smaller_than_a_line() -> None:
    with pytest.raises(PrepareError):
        make_chunks("cmd", [1], Limits(max_bytes=20, slots=4))


def test_command_too_long_is_refused() -> None:
    limits = Limits()
    check_command(["python3", "x.py", "--a", "b"], limits)
    with pytest.raises(PrepareError, match="multi-prog line allows") as exc:
        check_command(["python3", "x.py", "/" + "a" * 20000], limits, component=7)
    assert exc.value.component == 7
    with pytest.raises(PrepareError, match="arguments"):
        check_command(["x"] * 200, limits)
