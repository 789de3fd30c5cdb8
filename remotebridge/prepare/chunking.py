"""Split a phase's tasks into ``srun --multi-prog`` files that the site accepts.

Each multi-prog line is ``<rank> <python> rbhelper.py task <chunk> <task_id>`` (the
site's ``remote_python``, shell-quoted): a
short, literal (no ``%t``) line naming the task, whose real argv the helper reads
from the chunk's task file. Chunks are cut so that every file stays under the
site's byte limit, every line under the line and argument limits, and no chunk
holds more tasks than the allocation has slots. Ranks run 0..k-1 in each chunk.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field

from remotebridge.errors import PrepareError
from remotebridge.jobfolder import MULTIPROG

FAULT_TOO_LONG = 14
HEADER = MULTIPROG.comment + " chunk={name} tasks={count}\n"


@dataclass(frozen=True)
class Limits:
    """The site's multi-prog limits and the allocation's slots."""

    max_bytes: int = 60000
    max_line: int = 16382
    """Longest line with its newline: srun's buffer is 16 KiB and it refuses a line
    of 16383 bytes or more (src/srun/multi_prog.c)."""
    max_args: int = 128
    slots: int = 1


@dataclass
class Chunk:
    """One multi-prog file: its name, task ids and text."""

    name: str
    task_ids: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    size: int = 0

    def text(self) -> str:
        """The whole file, header comment first."""
        return HEADER.format(name=self.name, count=len(self.task_ids)) + "".join(self.lines)


def task_line(rank: int, chunk: str, task_id: int, helper: str = "rbhelper.py",
              python: str = "python3") -> str:
    """The multi-prog line that runs one task through the helper with ``python``."""
    return f"{rank} {shlex.quote(python)} {shlex.quote(helper)} task {chunk} {task_id}\n"


def check_command(argv: list[str], limits: Limits, component: int | None = None) -> None:
    """Refuse a command that could not be written as one multi-prog line directly."""
    if len(argv) + 1 > limits.max_args:
        raise PrepareError(f"command has {len(argv)} arguments; a multi-prog line allows "
                           f"{limits.max_args - 1}", component=component, path=argv[0],
                           fault=FAULT_TOO_LONG)
    length = len(" ".join(argv)) + 8
    if length > limits.max_line:
        raise PrepareError(f"command is about {length} bytes; a multi-prog line allows "
                           f"{limits.max_line}", component=component, path=argv[0],
                           fault=FAULT_TOO_LONG)


def make_chunks(prefix: str, task_ids: list[int], limits: Limits, *,
                python: str = "python3") -> list[Chunk]:
    """Cut ``task_ids`` into chunks named ``<prefix>.NNNN`` that respect ``limits``.

    ``python`` runs the helper on the compute nodes (the site's ``remote_python``).
    """
    if limits.slots < 1:
        raise PrepareError("allocation has no slots", fault=FAULT_TOO_LONG)
    head = f"{shlex.quote(python)} {shlex.quote('rbhelper.py')} task"  # task_line's middle
    room = len(HEADER.format(name="x" * 12, count=10**6))
    chunks: list[Chunk] = []
    cur = _new_chunk(prefix, 0)
    header = _header_base(cur)
    for tid in task_ids:
        count = len(cur.task_ids)
        line = f"{count} {head} {cur.name} {tid}\n"
        if count and (count >= limits.slots
                      or header + len(str(count + 1)) + cur.size + len(line) > limits.max_bytes):
            chunks.append(cur)
            cur = _new_chunk(prefix, len(chunks))
            header = _header_base(cur)
            line = f"0 {head} {cur.name} {tid}\n"
        _check_line(line, limits, tid, room)
        cur.task_ids.append(tid)
        cur.lines.append(line)
        cur.size += len(line)
    if cur.task_ids:
        chunks.append(cur)
    return chunks


def _header_base(chunk: Chunk) -> int:
    """Bytes of the chunk's header but its task count's digits (the count grows)."""
    return len(HEADER.format(name=chunk.name, count=0)) - 1


def _new_chunk(prefix: str, index: int) -> Chunk:
    return Chunk(name=f"{prefix}.{index:04d}")


def _check_line(line: str, limits: Limits, task_id: int, room: int) -> None:
    """``room``: the bytes of the biggest header a chunk file can have."""
    size = len(line) if line.isascii() else len(line.encode("utf-8"))
    if size > limits.max_line or len(line.split()) > limits.max_args:
        raise PrepareError(f"multi-prog line for task {task_id} exceeds the site limits",
                           fault=FAULT_TOO_LONG)
    if room + len(line) > limits.max_bytes:
        raise PrepareError("multi-prog byte limit is smaller than one line", fault=FAULT_TOO_LONG)
