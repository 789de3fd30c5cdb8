"""The run's own plan of dbinfo records (``expected.jsonl``), checked before any replay.

Prepare writes, per component, every record the job must send back (table and key)
and the values that name files (``uri``, ``path``) it must carry unchanged. Replay
refuses the whole run (fault 40, nothing written) unless the records of every
component it replays are exactly the planned set (none missing, none extra, such as
another chip of the same component) and every file-naming value is the planned one.
Measured figures (times, counts, statistics) stay free; their types are checked by
:func:`remotebridge.poll.replay.check_records`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from remotebridge import jobfolder
from remotebridge.poll.faults import FAULT_NOT_PLANNED, PollFault, local_folder_fault

Ident = tuple[str, tuple[tuple[str, Any], ...]]
"""(table, the key's items in name order); key values are ints and strings (the schema
check ran first), so the tuple is hashable."""
Expected = dict[int, dict[Ident, dict[str, Any]]]
"""``{stage_id: {(table, key): fixed values}}``."""


def _ident(table: str, key: dict[str, Any]) -> Ident:
    return table, tuple(sorted(key.items()))


def read_expected(folder: Path) -> Expected:
    """The planned records of every component (a bad file is fault 35)."""
    with local_folder_fault():
        lines = jobfolder.read_jsonl(folder, jobfolder.EXPECTED)
    out: Expected = {}
    for rec in lines.records:
        out.setdefault(rec["stage_id"], {})[_ident(rec["table"], rec["key"])] = rec["fixed"]
    return out


def check_planned(expected: Expected, stage_ids: Iterable[int],
                  items: Iterable[tuple[int, str, int, dict[str, Any]]]) -> None:
    """Refuse (fault 40) unless the records of ``stage_ids`` (``(stage_id, file, line,
    record)`` items, already checked by ``check_records``) are exactly the planned ones."""
    seen: dict[int, set[Ident]] = {sid: set() for sid in stage_ids}
    for sid, name, line, rec in items:
        ident = _ident(rec["table"], rec["key"])
        fixed = expected.get(sid, {}).get(ident)
        if fixed is None:
            raise PollFault(f"{name} line {line}: {rec['table']} key {rec['key']} was not "
                            f"planned for component {sid}", fault=FAULT_NOT_PLANNED)
        for col, want in fixed.items():
            got = rec["values"].get(col)
            if got != want:
                raise PollFault(f"{name} line {line}: {rec['table']}.{col} is {got!r}, the "
                                f"plan says {want!r}", fault=FAULT_NOT_PLANNED)
        seen.setdefault(sid, set()).add(ident)
    for sid, got in seen.items():
        lack = set(expected.get(sid, {})) - got
        if lack:
            table, key = min(lack)
            raise PollFault(f"{jobfolder.DBINFO.path(stage_id=sid)}: {len(lack)} planned "
                            f"record(s) missing, e.g. {table} key {json.dumps(dict(key))}",
                            fault=FAULT_NOT_PLANNED)
