"""The runner's records in poll: tasks not started by the walltime guard spend no attempt."""

from __future__ import annotations

import json

from remotebridge import jobfolder as jf
from remotebridge.poll.remote_files import TaskResult
from remotebridge.poll.runner_records import parse_records, per_command, spared


def records(*lines: dict[str, object], fmt: str = jf.RECORDS.format) -> bytes:
    head = {"format": fmt, "version": jf.RECORDS.version}
    return "".join(json.dumps(x) + "\n" for x in (head, *lines)).encode()


def ok(tid: int) -> TaskResult:
    return TaskResult(tid, 1, "cmd", 0)


RECS = records({"task_id": 1, "attempt": 1, "outcome": "ok", "rc": 0, "elapsed": 12.5},
               {"task_id": 2, "attempt": 1, "outcome": "failed", "rc": 3},
               {"task_id": 3, "outcome": "not_started", "reason": "walltime"},
               {"task_id": 4, "outcome": "not_started", "reason": "no node"},
               {"task_id": "5", "outcome": "not_started", "reason": "walltime"},
               [1, 2])


def test_parse_records_keeps_walltime_not_started_and_elapsed() -> None:
    got = parse_records(RECS)
    assert got.not_started == {3} and got.ok == 1 and got.elapsed == {1: 12.5}


def test_only_walltime_not_started_components_are_spared() -> None:
    recs = parse_records(RECS)
    summary = {1: ok(1)}
    assert spared([1, 3], summary, recs)            # done + not started: no attempt spent
    assert not spared([1, 2], summary, recs)        # a real failure spends one
    assert not spared([3, 4], summary, recs)        # "no node" is not the guard
    assert not spared([1], summary, recs)           # nothing left: not a failure at all


def test_no_work_done_or_unreadable_records_spare_nothing() -> None:
    idle = parse_records(records({"task_id": 3, "outcome": "not_started",
                                  "reason": "walltime"}))
    assert not spared([3], {}, idle)  # a task that never fits is not retried for ever
    assert parse_records(records(fmt="remotebridge.plan")).not_started == set()
    assert parse_records(b"\xff").ok == 0
    assert parse_records(None).not_started == set()


def test_per_command_elapsed_counts_every_phase() -> None:
    """A component's measured cost: all its tasks (cmd and post), per command."""
    plan = {0: (0, "pre"), 1: (7, "cmd"), 2: (7, "cmd"), 3: (7, "post"), 4: (8, "cmd")}
    recs = parse_records(records(
        {"task_id": 0, "outcome": "ok", "elapsed": 100.0},
        {"task_id": 1, "outcome": "ok", "elapsed": 10.0},
        {"task_id": 2, "outcome": "ok", "elapsed": 30.0},
        {"task_id": 3, "outcome": "ok", "elapsed": 2.0}))
    assert per_command(plan, [7, 8], recs) == {7: 21.0}  # 8 has no measurement
