"""Sizes of many remote files in ONE remote call.

The names go in on stdin, NUL-separated (so newlines, quotes and leading dashes
in names are data), and ``xargs -0 stat -L`` prints ``<size> <name>\\0`` for each
file that exists; a missing file is simply absent from the answer.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from remotebridge.errors import TransferError
from remotebridge.ssh.base import Link

STAT_ARGV = ["xargs", "-0", "-r", "stat", "-L", "--printf=%s %n\\0", "--"]
"""The remote command: reads NUL-separated names on stdin (GNU findutils/coreutils)."""


def _encode_names(paths: Sequence[str]) -> bytes:
    for p in paths:
        if "\0" in p:
            raise TransferError(f"path holds a NUL byte: {p!r}")
    return b"".join(os.fsencode(p) + b"\0" for p in paths)


def parse_stat_output(out: bytes) -> dict[str, int]:
    """``{name: size}`` from the ``<size> <name>\\0`` records of :data:`STAT_ARGV`."""
    sizes: dict[str, int] = {}
    for record in out.split(b"\0"):
        if not record:
            continue
        size, sep, name = record.partition(b" ")
        if not sep or not size.isdigit():
            raise TransferError(f"cannot read a stat record: {record[:200]!r}")
        sizes[os.fsdecode(name)] = int(size)
    return sizes


def remote_sizes(link: Link, paths: Sequence[str], *, timeout: float = 300.0) -> dict[str, int]:
    """Sizes of ``paths`` on ``link``'s host; paths that do not exist are left out.

    One remote command whatever the number of paths. Link faults raise as from
    :meth:`Link.run` (transient ones are retried: the command only reads).
    """
    if not paths:
        return {}
    result = link.run(STAT_ARGV, stdin=_encode_names(paths), timeout=timeout, check=False)
    # xargs exits 123 when some stat failed (a missing file): that is an answer, not a fault
    if result.rc not in (0, 123):
        raise TransferError(
            f"size check on {link.host} failed (exit {result.rc}): {result.err.strip()[:300]}")
    return parse_stat_output(result.stdout)


def size_problems(expected: dict[str, int], found: dict[str, int], host: str) -> dict[str, str]:
    """``{path: reason}`` for every path whose size on ``host`` is not the expected one."""
    problems: dict[str, str] = {}
    for path, size in expected.items():
        got = found.get(path)
        if got is None:
            problems[path] = f"missing on {host} after the transfer"
        elif size >= 0 and got != size:
            problems[path] = f"is {got} bytes on {host}, expected {size}"
    return problems
