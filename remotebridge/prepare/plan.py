"""The shared plan model: what one remote job will do, independent of the stage.

A :class:`Plan` is built by a stage module (chip, cam, warp, stack) and then turned
into the job folder by :mod:`remotebridge.prepare.job` (file formats:
:mod:`remotebridge.jobfolder`). It holds the tasks in
their three phases, the input manifest (files the job needs), the output manifest
(files the job makes) and the per-component values only home knows (database ids,
local URIs) that the post phase folds into dbinfo records.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from remotebridge.jobfolder import Area, InputLine, OutputLine

__all__ = ["Area", "HomeRecord", "InputFile", "OutputFile", "Phase", "Plan", "Task"]


class Phase(enum.StrEnum):
    """When a task runs inside the job."""

    PRE = "pre"
    """Set-up (one ``mkdirs`` task making every output directory)."""

    CMD = "cmd"
    """The science commands."""

    POST = "post"
    """Turn stats files into dbinfo records (one task per component)."""


@dataclass(slots=True)
class Task:
    """One command of the job."""

    task_id: int
    stage_id: int
    phase: Phase
    argv: list[str]
    threads: int = 1
    cost: float = 0.0
    log: str = ""
    """Remote path receiving the task's stdout+stderr ('' = the job's own output)."""

    def record(self) -> dict[str, Any]:
        """The plan.jsonl / chunk task line for this task."""
        return {"task_id": self.task_id, "stage_id": self.stage_id, "phase": self.phase.value,
                "argv": self.argv, "threads": self.threads, "cost": self.cost, "log": self.log}


InputFile = InputLine
"""A file the job needs: exactly a line of inputs.manifest."""

OutputFile = OutputLine
"""A file the job makes: exactly a line of outputs.manifest."""


@dataclass(slots=True)
class HomeRecord:
    """Values only home knows for one dbinfo record, plus the stats file to merge."""

    table: str
    key: dict[str, Any]
    values: dict[str, Any]
    stats: str
    """Remote path of the stats JSON the command writes."""
    from_stats: list[str]
    """Stats keys copied into the record's values."""

    def record(self) -> dict[str, Any]:
        """The line written to the component's home file."""
        return {"table": self.table, "key": self.key, "values": self.values,
                "stats": self.stats, "from_stats": self.from_stats}

    def expected(self, stage_id: int) -> dict[str, Any]:
        """The line of ``expected.jsonl`` for this record: its table and key, and the
        home values that are text (file names: uri, path), which the job must send back
        unchanged; numbers home sets (``fault``) are the job's to change."""
        return {"stage_id": stage_id, "table": self.table, "key": self.key,
                "fixed": {k: v for k, v in self.values.items() if isinstance(v, str)}}


@dataclass
class Plan:
    """Everything one remote job will do; built by a stage, written by the writer."""

    stage: str
    remote_id: int
    job_dir: str
    """The job folder on the remote side."""
    tasks: list[Task] = field(default_factory=list)
    inputs: dict[str, InputFile] = field(default_factory=dict)
    """Keyed by remote path, so a shared input appears once."""
    outputs: list[OutputFile] = field(default_factory=list)
    home: dict[int, list[HomeRecord]] = field(default_factory=dict)
    """Per component: the dbinfo records its post task builds."""
    out_dirs: set[str] = field(default_factory=set)
    """Remote directories the pre phase creates."""
    job_files: dict[str, str] = field(default_factory=dict)
    """Extra files written into the job folder (relative name -> text), e.g. lists."""
    meta: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Number of tasks per phase."""
        out = {p.value: 0 for p in Phase}
        for t in self.tasks:
            out[t.phase.value] += 1
        return out

    def input_bytes(self) -> int:
        """Total size of the inputs."""
        return sum(f.size for f in self.inputs.values())
