"""How the tab-separated job-folder files turn cells into values and back: one column
per field of a row dataclass (int, bool as 0/1, an enum by value, text). The formats
themselves (names, headers, rows) are owned by :mod:`remotebridge.jobfolder`."""

from __future__ import annotations

import enum
import functools
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import TYPE_CHECKING, Any

from remotebridge.errors import JobFolderError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance


@dataclass(frozen=True)
class Column:
    """One column: its name, how a cell is read and written, what a good cell holds."""

    name: str
    read: Callable[[str], Any]
    """Text -> value; ValueError or KeyError for a bad cell."""
    write: Callable[[Any], str]
    expected: str
    """What a good cell holds, for the error message."""


@dataclass(frozen=True)
class Schema:
    """The columns of a row type, and how many a line must have."""

    columns: tuple[Column, ...]
    required: int


_BOOLS = {"0": False, "1": True}


def _read_int(text: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(text)
    return int(text)


def _column(name: str, kind: Any) -> Column:
    if kind is bool:
        return Column(name, _BOOLS.__getitem__, lambda v: "1" if v else "0", "0 or 1")
    if kind is int:
        return Column(name, _read_int, str, "a whole number")
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return Column(name, kind, lambda v: str(v.value),
                       "one of " + ", ".join(str(m.value) for m in kind))
    return Column(name, str, str, "text")


@functools.cache
def schema_of(row: type[DataclassInstance]) -> Schema:
    """The columns of a row dataclass (its fields, in order) and how many are required."""
    specs = fields(row)
    types = typing.get_type_hints(row)
    required = sum(1 for f in specs if f.default is MISSING and f.default_factory is MISSING)
    return Schema(tuple(_column(f.name, types[f.name]) for f in specs), required)


def bad_cell(columns: Sequence[Column], cells: list[str], path: str,
              number: int) -> JobFolderError:
    """The error for the first cell of a line that its column refuses."""
    for col, text in zip(columns, cells, strict=False):
        try:
            col.read(text)
        except (ValueError, KeyError):
            return JobFolderError(f"column {col.name}: {text[:40]!r} is not {col.expected}",
                                  path=path, line=number)
    return JobFolderError("bad line", path=path, line=number)
