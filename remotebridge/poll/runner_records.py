"""The dynamic runner's records (``runner/records.jsonl``) as poll uses them.

The runner writes one line per attempt end, per task lost with its worker, and per
task it never started (``outcome: not_started``, ``reason: walltime | no node``). Poll
fetches the file with the job summary (same remote call) and uses it for one thing:
a component whose only unfinished tasks were **not started** by the walltime guard
goes back for another submission **without spending an attempt**, as long as this
submission got some work done (so a task that can never fit is not retried for ever).

The file is untrusted data: strict JSON Lines, header checked, fields type-checked;
lines that do not have the shape poll needs are ignored (records are evidence, the
job summary stays the authority on what succeeded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from remotebridge import jobfolder as jf
from remotebridge.poll.faults import PollFault
from remotebridge.poll.remote_files import TaskResult, parse_jsonl

NOT_STARTED = "not_started"
WALLTIME = "walltime"


@dataclass
class RunnerRecords:
    """What the records say about one submission."""

    not_started: set[int] = field(default_factory=set)
    """Tasks the walltime guard did not start (no attempt spent on them)."""
    ok: int = 0
    """Attempts that ended with rc 0."""
    elapsed: dict[int, float] = field(default_factory=dict)
    """Measured seconds of each task's successful attempt."""


def parse_records(data: bytes | None) -> RunnerRecords:
    """The records of ``runner/records.jsonl`` (empty when the job had no runner)."""
    out = RunnerRecords()
    if data is None:
        return out
    try:
        _head, lines = parse_jsonl(data, jf.RECORDS.name, jf.RECORDS.format,
                                   jf.RECORDS.version)
    except PollFault:
        return out  # unreadable evidence spares nothing: attempts are spent as before
    for rec in lines:
        if not isinstance(rec, dict) or type(rec.get("task_id")) is not int:
            continue
        if rec.get("outcome") == NOT_STARTED and rec.get("reason") == WALLTIME:
            out.not_started.add(rec["task_id"])
        elif rec.get("outcome") == "ok":
            out.ok += 1
            if type(rec.get("elapsed")) in (int, float) and rec["elapsed"] >= 0:
                out.elapsed[rec["task_id"]] = float(rec["elapsed"])
    return out


def spared(tids: list[int], summary: dict[int, TaskResult], recs: RunnerRecords) -> bool:
    """Whether a failed component spends no attempt: every task of it that did not
    succeed was not started by the walltime guard, and the submission did some work."""
    left = [t for t in tids if not (t in summary and summary[t].rc == 0)]
    return recs.ok > 0 and bool(left) and all(t in recs.not_started for t in left)


def per_command(plan: dict[int, tuple[int, str]], full: list[int], recs: RunnerRecords
                ) -> dict[int, float]:
    """``{stage_id: measured seconds per command}`` of the full components whose every
    task (all phases but the job's mkdirs) has a measured successful attempt."""
    tids: dict[int, list[int]] = {sid: [] for sid in full}
    cmds: dict[int, int] = {sid: 0 for sid in full}
    for tid, (sid, phase) in plan.items():
        if sid in tids and phase != "pre":
            tids[sid].append(tid)
            cmds[sid] += phase == "cmd"
    return {sid: round(sum(recs.elapsed[t] for t in ts) / cmds[sid], 3)
            for sid, ts in tids.items()
            if ts and cmds[sid] and all(t in recs.elapsed for t in ts)}
