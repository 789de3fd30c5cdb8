"""The shared plan model: what one remote job will do, independent of the stage.

A :class:`Plan` is built by a stage module (chip, cam, warp, stack) and then turned
into the job folder by :mod:`remotebridge.prepare.job` (file formats:
:mod:`remotebridge.jobfolder`). It holds the tasks in
their three phases, the input manifest (files the job needs), the output manifest
(files the job makes) and the per-component values only home knows (database ids,
local URIs) that the post phase folds into dbinfo records.

The per-command parts (tasks, inputs, outputs, dbinfo records) are spooled to
temporary files as they are added (:mod:`remotebridge.prepare.spool`): a plan of
600,000 commands keeps its memory flat, and the job folder's big files are streamed
from the spools.
"""

from __future__ import annotations

import enum
import json
import math
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any

from remotebridge.jobfolder import INPUTS, OUTPUTS, Area, InputLine, OutputLine
from remotebridge.prepare.spool import Spool, digest_key, json_line

__all__ = ["Area", "HomeMap", "HomeRecord", "InputFile", "InputMap", "OutputFile",
           "OutputList", "Phase", "Plan", "Task", "TaskList"]


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

    @classmethod
    def of_record(cls, rec: dict[str, Any]) -> Task:
        """The task of a :meth:`record`."""
        return cls(rec["task_id"], rec["stage_id"], Phase(rec["phase"]), rec["argv"],
                   rec["threads"], rec["cost"], rec["log"])


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


class TaskList:
    """The plan's tasks by phase (pre, then cmd, then post), each spooled as its
    plan.jsonl line; iterating gives :class:`Task` objects in that order."""

    def __init__(self) -> None:
        self._spools = {p: Spool[Task](_task_line, _task_of) for p in Phase}
        self._ids = {p: array("q") for p in Phase}

    def append(self, task: Task) -> None:
        """Add one task (at the end of its phase)."""
        self._spools[task.phase].append(task)
        self._ids[task.phase].append(task.task_id)

    def extend(self, tasks: Iterable[Task]) -> None:
        """Add tasks."""
        for t in tasks:
            self.append(t)

    def __iadd__(self, tasks: Iterable[Task]) -> TaskList:
        self.extend(tasks)
        return self

    def __len__(self) -> int:
        return sum(len(s) for s in self._spools.values())

    def __iter__(self) -> Iterator[Task]:
        for spool in self._spools.values():
            yield from spool

    def count(self, phase: Phase) -> int:
        """How many tasks the phase has."""
        return len(self._spools[phase])

    def ids(self, phase: Phase) -> list[int]:
        """The task ids of one phase, in order."""
        return self._ids[phase].tolist()

    def lines(self, phase: Phase | None = None, start: int = 0,
              count: int | None = None) -> Iterator[str]:
        """The tasks' JSON lines: of one phase (``count`` from ``start``), or all."""
        if phase is not None:
            yield from self._spools[phase].encoded(start, count)
            return
        for spool in self._spools.values():
            yield from spool.encoded()

    def text(self, phase: Phase | None = None, start: int = 0,
             count: int | None = None) -> Iterator[str]:
        """:meth:`lines` as text blocks, a newline after every line."""
        if phase is not None:
            yield from self._spools[phase].text(start, count)
            return
        for spool in self._spools.values():
            yield from spool.text()


def _task_line(task: Task) -> str:
    """``json.dumps(task.record())``: written out for the common task (plain ASCII text,
    int and finite float numbers), which then needs no escaping (one per command)."""
    argv, log, cost = task.argv, task.log, task.cost
    if argv and _plain_numbers(task.task_id, task.stage_id, task.threads, cost):
        try:
            text = '", "'.join(argv)
        except TypeError:  # not all str: json.dumps says what
            return json_line(task.record())
        # the only quotes in text are the separators' (2 a separator)
        if type(log) is str and _plain(log, 0) and _plain(text, 2 * len(argv) - 2):
            return (f'{{"task_id": {task.task_id}, "stage_id": {task.stage_id}, "phase": '
                    f'"{task.phase.value}", "argv": ["{text}"], "threads": {task.threads}, '
                    f'"cost": {cost!r}, "log": "{log}"}}')
    return json_line(task.record())


_KEPT = bytes(c for c in range(0x20, 0x7F) if c != 0x5C)
"""The characters JSON (ensure_ascii) writes as they are, and the quote (counted)."""


def _plain(text: str, quotes: int) -> bool:
    """JSON writes ``text`` as it is (no escape) but for its ``quotes`` quotes, which
    are the caller's own. A scan by bytes.translate: a regular expression or
    str.isprintable costs several times more on a long line."""
    return (text.isascii() and text.count('"') == quotes
            and not text.encode("ascii").translate(None, _KEPT))


def _plain_numbers(task_id: object, stage_id: object, threads: object, cost: object) -> bool:
    """ints and a finite float or int (their repr is their JSON; bool is not an int here)."""
    return (type(task_id) is int and type(stage_id) is int and type(threads) is int
            and (type(cost) is int or (type(cost) is float and math.isfinite(cost))))


def _task_of(line: str) -> Task:
    return Task.of_record(json.loads(line))


class InputMap:
    """The input manifest keyed by remote path (a shared input appears once), spooled as
    its inputs.manifest lines; membership is kept as 16-byte digests of the paths."""

    def __init__(self) -> None:
        self._spool = Spool[InputFile](_input_line, _input_of)
        self._keys: set[bytes] = set()
        self.bytes = 0
        self.shared = 0

    def __contains__(self, remote: object) -> bool:
        return isinstance(remote, str) and digest_key(remote) in self._keys

    def __setitem__(self, remote: str, item: InputFile) -> None:
        self.add(digest_key(remote), item)

    @staticmethod
    def key(remote: str) -> bytes:
        """The membership key of a remote path (for :meth:`has_key` and :meth:`add`: a
        builder asks and then adds, hashing the path once)."""
        return digest_key(remote)

    def has_key(self, key: bytes) -> bool:
        """The input of this :meth:`key` is in the map."""
        return key in self._keys

    def add(self, key: bytes, item: InputFile) -> None:
        """Add ``item``, whose remote path has ``key``; ValueError when it is in already."""
        if key in self._keys:
            raise ValueError(f"input {item.remote} is in the plan already")
        self._keys.add(key)
        self.bytes += item.size
        self.shared += item.shared
        self._spool.append_encoded(_input_line(item))

    def __len__(self) -> int:
        return len(self._spool)

    def values(self) -> Iterator[InputFile]:
        """The inputs in the order they were added."""
        return iter(self._spool)

    def lines(self) -> Iterator[str]:
        """Their inputs.manifest lines."""
        return self._spool.encoded()

    def text(self) -> Iterator[str]:
        """:meth:`lines` as text blocks, a newline after every line."""
        return self._spool.text()

    def with_digests(self, digests: Callable[[list[str]], dict[str, str]],
                     batch: int = 2000) -> InputMap:
        """A new map with each input's sha256 from ``digests`` (local paths -> digests),
        asked a batch at a time so that a big run's digests are never all in memory."""
        out = InputMap()
        out._keys, out.bytes, out.shared = self._keys, self.bytes, self.shared
        lines: list[str] = []
        for line in self.lines():
            lines.append(line)
            if len(lines) >= batch:
                _put_digests(out, lines, digests)
                lines = []
        _put_digests(out, lines, digests)
        return out


def _put_digests(target: InputMap, lines: list[str],
                 digests: Callable[[list[str]], dict[str, str]]) -> None:
    if not lines:
        return
    # local is the first column and sha256 the last (written empty until now)
    sums = digests([line.split("\t", 1)[0] for line in lines])
    for line in lines:
        local = line.split("\t", 1)[0]
        target._spool.append_encoded(f"{line[:line.rindex(chr(9))]}\t{sums[local]}")


def _input_line(f: InputFile) -> str:
    """``INPUTS.line(f)``, written out: one call per input of a big run."""
    return (f"{f.local}\t{f.remote}\t{f.size}\t{f.area.value}\t{'1' if f.shared else '0'}"
            f"\t{f.sha256}")


def _output_line(o: OutputLine) -> str:
    """``OUTPUTS.line(o)``, written out: three calls per command of a big run."""
    return f"{o.remote}\t{o.local}\t{'1' if o.permanent else '0'}\t{o.stage_id}"


def _input_of(line: str) -> InputFile:
    return INPUTS.parse(line, "(plan)", 0)


SEEN_BITS = 1 << 27
"""Slots of the outputs' seen-bitmap (a power of two)."""


class OutputList(Spool[OutputLine]):
    """The output manifest, spooled as its outputs.manifest lines; counts the permanent
    outputs."""

    def __init__(self) -> None:
        super().__init__(_output_line, lambda line: OUTPUTS.parse(line, "(plan)", 0))
        self.permanent = 0
        self._seen = bytearray(SEEN_BITS // 8)
        """One bit per ``hash()`` slot of the remote paths so far: the memory stays
        16 MB however many outputs (a set of 1.8 million hashes takes 150 MB)."""
        self._again: set[int] = set()
        """Hashes whose slot was taken already: a path listed twice, or another path in
        the same slot (about 1% of the outputs at 1.8 million: sorted out as text)."""

    def append(self, item: OutputLine) -> None:
        """Add one output."""
        self._note(item.remote)
        super().append(item)
        self.permanent += item.permanent

    def add(self, remote: str, local: str, permanent: bool, stage_id: int) -> None:
        """``append(OutputLine(remote, local, permanent, stage_id))`` without making the
        row (three per command of a big run)."""
        self._note(remote)
        self.append_encoded(f"{remote}\t{local}\t{'1' if permanent else '0'}\t{stage_id}")
        self.permanent += permanent

    def _note(self, remote: str) -> None:
        key = hash(remote)
        slot = key & (SEEN_BITS - 1)
        byte, bit = slot >> 3, 1 << (slot & 7)
        if self._seen[byte] & bit:
            self._again.add(key)
        else:
            self._seen[byte] |= bit

    def listed_twice(self) -> dict[str, list[int]]:
        """``{remote path: the components that list it}`` for every output listed more
        than once (two components making one product: the job would overwrite one with
        the other and its summary would name the product twice). Exact: the lines whose
        hash came twice are compared as text."""
        if not self._again:
            return {}
        found: dict[str, list[int]] = {}
        for line in self.encoded():
            remote = line.partition("\t")[0]
            if hash(remote) in self._again:
                found.setdefault(remote, []).append(int(line.rpartition("\t")[2]))
        return {r: ids for r, ids in found.items() if len(ids) > 1}


class HomeMap:
    """Per component, the dbinfo records its post task builds: each spooled as its home
    file line, the components (and where their records are) kept in order of arrival."""

    def __init__(self) -> None:
        self._spool = Spool[HomeRecord](lambda r: json_line(r.record()),
                                        lambda line: HomeRecord(**json.loads(line)))
        self._expected = Spool[dict[str, Any]](json_line, json.loads)
        self._where: dict[int, array[int]] = {}
        self._in_order = True
        """Components arrived in increasing order: the expected lines are in file order."""
        self._newest = 0
        """The component that came first most recently."""

    def add(self, stage_id: int, record: HomeRecord) -> None:
        """One more record of ``stage_id`` (one per command of a big run)."""
        where = self._where.get(stage_id)
        if where is None:
            if self._where and stage_id < self._newest:
                self._in_order = False
            where = self._where[stage_id] = array("q")
            self._newest = stage_id
        elif stage_id < self._newest:  # an earlier component again, after a later one
            self._in_order = False
        where.append(len(self._spool))
        line, expected = _home_lines(stage_id, record)
        self._spool.append_encoded(line)
        self._expected.append_encoded(expected)

    def expected_lines(self) -> Iterator[str]:
        """The lines of expected.jsonl: every record by component (in id order)."""
        if self._in_order:
            yield from self._expected.encoded()
            return
        for sid in sorted(self._where):
            for i in self._where[sid]:
                yield from self._expected.encoded(i, 1)

    def expected_text(self) -> Iterator[str]:
        """:meth:`expected_lines` as text blocks, a newline after every line."""
        if self._in_order:
            return self._expected.text()
        return (line + "\n" for line in self.expected_lines())

    def setdefault(self, stage_id: int, _default: Any = None) -> _Adder:
        """``home.setdefault(sid, []).append(record)`` as with the dict it replaces."""
        return _Adder(self, stage_id)

    def __setitem__(self, stage_id: int, records: Iterable[HomeRecord]) -> None:
        if stage_id in self._where:
            raise ValueError(f"component {stage_id} has its records already")
        for r in records:
            self.add(stage_id, r)

    def __iter__(self) -> Iterator[int]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, stage_id: object) -> bool:
        return stage_id in self._where

    def __getitem__(self, stage_id: int) -> list[HomeRecord]:
        return [HomeRecord(**json.loads(line)) for line in self.lines(stage_id)]

    def items(self) -> Iterator[tuple[int, list[HomeRecord]]]:
        """(stage_id, records) per component."""
        return ((sid, self[sid]) for sid in self._where)

    def lines(self, stage_id: int) -> Iterator[str]:
        """The home file lines of one component."""
        where = self._where[stage_id]
        if where[-1] - where[0] + 1 == len(where):  # added together: one read
            yield from self._spool.encoded(where[0], len(where))
            return
        for i in where:
            yield from self._spool.encoded(i, 1)

    def text(self, stage_id: int) -> Iterator[str]:
        """:meth:`lines` of one component as text blocks, a newline after every line."""
        where = self._where[stage_id]
        if where[-1] - where[0] + 1 == len(where):
            return self._spool.text(where[0], len(where))
        return (line + "\n" for line in self.lines(stage_id))


_FROM_STATS: dict[tuple[str, ...], str] = {}
"""The JSON of each ``from_stats`` list met (a stage passes the same list every time)."""


def _home_lines(stage_id: int, record: HomeRecord) -> tuple[str, str]:
    """``json_line(record.record())`` and ``json_line(record.expected(stage_id))``, the
    same texts, with the parts they share (table, key) and the stage's ``from_stats``
    list encoded once (one call per command of a big run)."""
    table, stats, from_stats = record.table, record.stats, record.from_stats
    if type(table) is not str or type(stats) is not str or type(from_stats) is not list \
            or type(stage_id) is not int:
        return json_line(record.record()), json_line(record.expected(stage_id))
    try:
        names = tuple(from_stats)
        listed = _FROM_STATS.get(names)
    except TypeError:  # not all hashable: not plain names either
        return json_line(record.record()), json_line(record.expected(stage_id))
    if listed is None:
        listed = _FROM_STATS[names] = json_line(from_stats)
    name, key, values = _json_str(table), json_line(record.key), record.values
    fixed = json_line({k: v for k, v in values.items() if isinstance(v, str)})
    return (f'{{"table": {name}, "key": {key}, "values": {json_line(values)}, '
            f'"stats": {_json_str(stats)}, "from_stats": {listed}}}',
            f'{{"stage_id": {stage_id}, "table": {name}, "key": {key}, "fixed": {fixed}}}')


@dataclass(frozen=True)
class _Adder:
    home: HomeMap
    stage_id: int

    def append(self, record: HomeRecord) -> None:
        self.home.add(self.stage_id, record)


@dataclass
class Plan:
    """Everything one remote job will do; built by a stage, written by the writer."""

    stage: str
    remote_id: int
    job_dir: str
    """The job folder on the remote side."""
    tasks: TaskList = field(default_factory=TaskList)
    inputs: InputMap = field(default_factory=InputMap)
    """Keyed by remote path, so a shared input appears once."""
    outputs: OutputList = field(default_factory=OutputList)
    home: HomeMap = field(default_factory=HomeMap)
    """Per component: the dbinfo records its post task builds."""
    out_dirs: set[str] = field(default_factory=set)
    """Remote directories the pre phase creates."""
    job_files: dict[str, str] = field(default_factory=dict)
    """Extra files written into the job folder (relative name -> text), e.g. lists."""
    meta: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        """Number of tasks per phase."""
        return {p.value: self.tasks.count(p) for p in Phase}

    def input_bytes(self) -> int:
        """Total size of the inputs."""
        return self.inputs.bytes
