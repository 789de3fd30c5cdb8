"""The in-memory detrend catalogue: loaded ONCE per prepare, then looked up per chip.

The seed's prepare spent hours asking the database for each chip's detrends one
query at a time; here every ``detrendFile`` row is read in one query and indexed by
(type, chip). A lookup picks, among the detrends of that type and chip whose filter
is empty (any) or the exposure's, and whose validity range [begin, end) contains the
exposure's dateobs, the newest registered one (ties: highest det_id).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import select
from sqlalchemy.orm import Session

from remotebridge.db.pipeline import DetrendFile


class Detrend(NamedTuple):
    """One catalogue entry."""

    det_id: int
    det_type: str
    class_id: str
    filter: str
    time_begin: datetime
    time_end: datetime
    uri: str
    registered: datetime


class DetrendCatalogue:
    """All detrends, indexed by (type, chip), newest registered first."""

    def __init__(self, rows: list[Detrend]) -> None:
        index: dict[tuple[str, str], list[Detrend]] = defaultdict(list)
        for row in rows:
            index[(row.det_type, row.class_id)].append(row)
        for entries in index.values():
            entries.sort(key=lambda d: (d.registered, d.det_id), reverse=True)
        self._index = dict(index)
        self.size = len(rows)

    @classmethod
    def load(cls, session: Session, types: list[str] | None = None) -> DetrendCatalogue:
        """Read the catalogue with one query."""
        cols = [DetrendFile.det_id, DetrendFile.det_type, DetrendFile.class_id,
                DetrendFile.filter, DetrendFile.time_begin, DetrendFile.time_end,
                DetrendFile.uri, DetrendFile.registered]
        query = select(*cols)
        if types:
            query = query.where(DetrendFile.det_type.in_(types))
        return cls([Detrend._make(row) for row in session.execute(query).all()])

    def find(self, det_type: str, class_id: str, filt: str, dateobs: datetime) -> Detrend | None:
        """The detrend to use, or None when nothing matches."""
        for d in self._index.get((det_type, class_id), ()):
            if (not d.filter or d.filter == filt) and d.time_begin <= dateobs < d.time_end:
                return d
        return None
