"""Helpers and fixtures shared by several test modules (first written in
tests/unit/test_poll_hostile.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from remotebridge.poll import poll_runs
from tests.support.demo_runs import demo_env as _env  # noqa: F401 - autouse: venv's python3
from tests.support.poll_runs import (
    chip_states,
    components,
    config,
    get,
    results,
)

Record = dict[str, Any]


def edit_first_record(job_dir: Path, change: Callable[[Record], None]) -> None:
    path = job_dir / "dbinfo" / "1.dbinfo.jsonl"
    lines = path.read_text().splitlines()
    rec = json.loads(lines[1])
    change(rec)
    lines[1] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")


def assert_refused(engine: Engine, tmp: Path, rid: int, fault: int, *words: str) -> None:
    out = poll_runs(engine, config(tmp), force=True)
    assert [(o.action, o.state, o.fault) for o in out] == [("error", "error", fault)], out
    run = get(engine, rid)
    assert (run.state, run.fault, run.prev_state, run.owner) == ("error", fault, "run", None)
    for word in words:
        assert word in run.note, run.note
    assert results(engine) == []
    assert chip_states(engine) == {1: ("new", 0)}
    assert components(engine, rid) == {1: ("new", 0, 0)}
    assert not list((tmp / "survey").rglob("*.ch.fits")), "no product may be installed"


def _set(path: str, value: Any) -> Callable[[Record], None]:
    def change(rec: Record) -> None:
        part, _, key = path.partition(".")
        if key:
            rec[part][key] = value
        else:
            rec[part] = value
    return change


FAKE_TAR = r"""#!{python}
import io, sys, tarfile
sys.stdin.buffer.read()
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w") as tf:
    data = b"owned\n"
    info = tarfile.TarInfo("../../evil.txt")
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))
sys.stdout.buffer.write(buf.getvalue())
"""
