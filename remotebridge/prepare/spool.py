"""Line spools: the plan's per-command parts kept on disk while it is built.

A run of 600,000 commands has 600,000 tasks, inputs and dbinfo records and 1.8 million
outputs; held as Python objects they took gigabytes. The plan keeps each of them as one
text line in a temporary file instead (the very line, or the JSON, that goes into the
job folder), plus the few numbers assembling needs (counts, line offsets). Memory then
stays flat as the command count grows; the job folder's big files are streamed from
the spools while they are written.

The collections behave like the list and dicts they replace (append, iterate, ``len``,
membership) so that stages and tests build plans as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from json import encoder as _json_encoder
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class LineSpool:
    """Text lines (JSON: ASCII, no newline inside) appended to an anonymous temporary
    file; read back in order from any line on, by ``pread`` (readers never disturb the
    writer or each other)."""

    BLOCK = 1 << 20
    FLUSH = 4096
    """Lines kept before they are written (one write call per this many)."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile("w+b")  # noqa: SIM115
        self._pos = 0
        self._buffer: list[str] = []
        self.offsets = array("q")

    def add(self, line: str) -> None:
        """Append one line."""
        self.offsets.append(self._pos)
        size = len(line) if line.isascii() else len(line.encode("utf-8", "surrogatepass"))
        self._pos += size + 1
        self._buffer.append(line)
        if len(self._buffer) >= self.FLUSH:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            self._buffer.append("")
            self._file.write("\n".join(self._buffer).encode("utf-8", "surrogatepass"))
            self._buffer = []
        self._file.flush()

    def __len__(self) -> int:
        return len(self.offsets)

    def lines(self, start: int = 0, count: int | None = None) -> Iterator[str]:
        """``count`` lines (all the rest when None) from line ``start``, without newline."""
        self._flush()
        end = len(self.offsets) if count is None else min(start + count, len(self.offsets))
        if start >= end:
            return
        pos, stop = self.offsets[start], self._end(end)
        rest = b""
        while pos < stop:
            block = os.pread(self._file.fileno(), min(self.BLOCK, stop - pos), pos)
            if not block:
                raise OSError(f"plan spool {self._file.name} ended early")
            pos += len(block)
            *whole, rest = (rest + block).split(b"\n")
            for raw in whole:
                yield raw.decode("utf-8", "surrogatepass")

    def text(self, start: int = 0, count: int | None = None) -> Iterator[str]:
        """:meth:`lines` as text blocks of whole lines, each line with its newline: what
        a job folder file is made of, without a split, a decode and a write per line."""
        self._flush()
        end = len(self.offsets) if count is None else min(start + count, len(self.offsets))
        if start >= end:
            return
        pos, stop = self.offsets[start], self._end(end)
        rest = b""
        while pos < stop:
            block = os.pread(self._file.fileno(), min(self.BLOCK, stop - pos), pos)
            if not block:
                raise OSError(f"plan spool {self._file.name} ended early")
            pos += len(block)
            data = rest + block if rest else block
            cut = len(data) if pos >= stop else data.rfind(b"\n") + 1  # stop ends a line
            rest = data[cut:]
            if cut:
                yield data[:cut].decode("utf-8", "surrogatepass")

    def _end(self, index: int) -> int:
        return self.offsets[index] if index < len(self.offsets) else self._pos


class Spool(Generic[T]):
    """A list of ``T`` kept as lines (``encode``/``decode`` convert)."""

    def __init__(self, encode: Callable[[T], str], decode: Callable[[str], T]) -> None:
        self._encode, self._decode = encode, decode
        self._lines = LineSpool()

    def append(self, item: T) -> None:
        """Add one item at the end."""
        self._lines.add(self._encode(item))

    def append_encoded(self, line: str) -> None:
        """Add one item given as its line."""
        self._lines.add(line)

    def extend(self, items: Iterable[T]) -> None:
        """Add items at the end."""
        for item in items:
            self.append(item)

    def __iadd__(self, items: Iterable[T]) -> Spool[T]:
        self.extend(items)
        return self

    def __len__(self) -> int:
        return len(self._lines)

    def __iter__(self) -> Iterator[T]:
        return map(self._decode, self._lines.lines())

    def encoded(self, start: int = 0, count: int | None = None) -> Iterator[str]:
        """The items' lines (no newline), ``count`` from ``start``."""
        return self._lines.lines(start, count)

    def text(self, start: int = 0, count: int | None = None) -> Iterator[str]:
        """:meth:`encoded` as text blocks, a newline after every line."""
        return self._lines.text(start, count)


def digest_key(text: str) -> bytes:
    """A 16-byte key standing for ``text`` in a membership set (a set of 600,000 paths
    would itself be a hundred megabytes)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _not_serializable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_C_ENCODER = getattr(_json_encoder, "c_make_encoder", None)
_ENCODE = None if _C_ENCODER is None else _C_ENCODER(
    None, _not_serializable, _json_encoder.encode_basestring_ascii, None, ": ", ", ",
    False, False, True)
"""``json.dumps``'s own C encoder with its default settings, made once: ``json.dumps``
builds one per call, which cost more than encoding a plan's short line. No circular
reference check: the plan's records are trees of plain values."""


def json_line(value: Any) -> str:
    """``json.dumps(value)`` with the default settings, the same text, faster."""
    if _ENCODE is None:  # pragma: no cover - Python without the C accelerator
        return json.dumps(value)
    return "".join(_ENCODE(value, 0))
