"""Reading what the job wrote on the remote side: fetched in one call, parsed as untrusted.

:func:`fetch_files` brings the job summary and the dbinfo files of a job folder home
in ONE remote command (a small ``sh`` loop that frames each file as ``<size>
<name>\\n<bytes>``, names read from stdin), refusing files above a size bound on the
remote side before a byte of them is sent.

Everything that comes back is **data from an untrusted machine**: decoded as strict
UTF-8, parsed as strict JSON (no ``NaN``/``Infinity``, no duplicate keys, bounded line
length and count), the format/version header checked, every field's type checked.
A problem raises :class:`~remotebridge.poll.faults.PollFault` (fault 32) naming the
file and line; nothing is ever executed.

:func:`check_products` asks the site, in ONE call (``rbtransfer.py sizes``, sent
inline), for the type (lstat: a link is never followed), size and real-path
containment of every product before it is pulled: a link or a path leaving the run's
own folders is fault 37, a socket, fifo, device or folder fault 38.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from remotebridge import jobfolder
from remotebridge.errors import BridgeError, RemoteCommandFailed
from remotebridge.poll.faults import (
    FAULT_JOB_UNREADABLE,
    FAULT_MALFORMED,
    FAULT_PRODUCT_LINK,
    FAULT_PRODUCT_NOT_REGULAR,
    PollFault,
)
from remotebridge.remote import inline_transfer_argv
from remotebridge.ssh.base import Link

VERSION = jobfolder.VERSION
SUMMARY = jobfolder.SUMMARY.name
SUMMARY_FORMAT = jobfolder.SUMMARY.format
DBINFO_FORMAT = jobfolder.DBINFO.format
MAX_FILE_BYTES = 64 << 20
"""Largest file fetched (a 61000-task summary is about 9 MB)."""
MAX_LINE_BYTES = 64 << 10
"""Longest line accepted in a remote JSON Lines file."""
MAX_LINES = 2_000_000

# $1 job folder, $2 size limit, $3 1 = make the summary from status/ if it is missing,
# $4 the site's python.
# Names (job-relative, made by us) on stdin, one per line.
FETCH_SCRIPT = r"""
cd -- "$1" || exit 3
lim=$2
if [ "$3" = 1 ] && [ ! -f job_summary.jsonl ] && [ -f rbhelper.py ] && [ -f plan.jsonl ]; then
  "$4" rbhelper.py summary > /dev/null 2>&1
fi
while IFS= read -r f; do
  if [ ! -f "$f" ]; then printf -- '- %s\n' "$f"; continue; fi
  n=$(wc -c < "$f" | tr -d ' ')
  if [ "$n" -gt "$lim" ]; then printf '! %s\n' "$f"; continue; fi
  printf '%s %s\n' "$n" "$f"
  head -c "$n" -- "$f"
done
exit 0
"""

# job folders as arguments; prints those holding a job summary
SUMMARY_EXISTS_SCRIPT = r"""
for d; do [ -f "$d/job_summary.jsonl" ] && printf '%s\n' "$d"; done
exit 0
"""


@dataclass(frozen=True)
class TaskResult:
    """One line of the job summary that poll uses."""

    task_id: int
    stage_id: int
    phase: str
    rc: int | None


class JobFolderPurged(BridgeError):
    """The job ended and its whole folder is gone from the site (scratch purged while it
    ran or waited): nothing of it can come home, so the run is submitted again."""

    def __init__(self, job_dir: str, host: str) -> None:
        super().__init__(f"the job folder {job_dir} is gone on {host} (scratch purged)")
        self.job_dir = job_dir


def fetch_files(link: Link, job_dir: str, names: Sequence[str], *,
                make_summary: bool = False, python: str = "python3",
                limit: int = MAX_FILE_BYTES, timeout: float = 600.0,
                ) -> dict[str, bytes | None]:
    """``{name: bytes, or None when missing}`` for job-relative ``names``, in one call."""
    stdin = "".join(n + "\n" for n in names).encode()
    argv = ["sh", "-c", FETCH_SCRIPT, "rb-poll-fetch", job_dir, str(limit),
            "1" if make_summary else "0", python]
    try:
        result = link.run(argv, stdin=stdin, timeout=timeout)
    except RemoteCommandFailed as exc:
        if exc.evidence.rc == 3:  # FETCH_SCRIPT's `cd` failed: the folder is gone
            raise JobFolderPurged(job_dir, link.host) from exc
        raise PollFault(f"cannot read the job folder {job_dir} on {link.host} (purged?): "
                        f"{exc.evidence.summary()}", fault=FAULT_JOB_UNREADABLE) from exc
    return parse_frames(result.stdout, set(names))


def parse_frames(data: bytes, wanted: set[str]) -> dict[str, bytes | None]:
    """Split the framed answer of :data:`FETCH_SCRIPT` (checked against ``wanted``)."""
    out: dict[str, bytes | None] = {}
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            raise PollFault("fetch answer ends inside a frame header", fault=FAULT_MALFORMED)
        head = data[pos:end].decode("utf-8", "replace")
        size_text, _, name = head.partition(" ")
        pos = end + 1
        if name not in wanted or name in out:
            raise PollFault(f"fetch answer names an unexpected file {name[:200]!r}",
                            fault=FAULT_MALFORMED)
        if size_text == "-":
            out[name] = None
            continue
        if size_text == "!" or not size_text.isdigit():
            raise PollFault(f"{name}: larger than {MAX_FILE_BYTES} bytes, refused",
                            fault=FAULT_MALFORMED)
        size = int(size_text)
        if pos + size > len(data):
            raise PollFault(f"{name}: truncated in the fetch answer", fault=FAULT_MALFORMED)
        out[name] = data[pos:pos + size]
        pos += size
    return out


def summaries_present(link: Link, job_dirs: Sequence[str]) -> set[str]:
    """Which of ``job_dirs`` hold a job_summary.jsonl (one remote call)."""
    if not job_dirs:
        return set()
    result = link.run(["sh", "-c", SUMMARY_EXISTS_SCRIPT, "rb-poll-exists", *job_dirs],
                      timeout=120)
    return {line for line in result.out.splitlines() if line in set(job_dirs)}


# --- strict JSON Lines -------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def strict_loads(text: str) -> Any:
    """``json.loads`` refusing NaN/Infinity and duplicate keys."""
    return json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)


def parse_jsonl(data: bytes, name: str, fmt: str, version: int = VERSION, oldest: int = 0
                ) -> tuple[dict[str, Any], list[Any]]:
    """Header and records of a versioned JSON Lines file from the remote side (its
    version ``version``, or down to ``oldest`` when given)."""
    if len(data) > MAX_FILE_BYTES:
        raise PollFault(f"{name}: {len(data)} bytes, more than {MAX_FILE_BYTES}",
                        fault=FAULT_MALFORMED)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PollFault(f"{name}: not UTF-8 ({exc.reason} at byte {exc.start})",
                        fault=FAULT_MALFORMED) from exc
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise PollFault(f"{name}: empty (no header line)", fault=FAULT_MALFORMED)
    if len(lines) > MAX_LINES:
        raise PollFault(f"{name}: more than {MAX_LINES} lines", fault=FAULT_MALFORMED)
    parsed = [_line(line, name, i) for i, line in enumerate(lines, start=1)]
    header = parsed[0]
    if not isinstance(header, dict) or header.get("format") != fmt:
        raise PollFault(f"{name} line 1: not a {fmt} header", fault=FAULT_MALFORMED)
    if type(header.get("version")) is not int \
            or not (oldest or version) <= header["version"] <= version:
        raise PollFault(f"{name} line 1: {fmt} version {header.get('version')!r} is not "
                        f"supported (this poll reads version {version})", fault=FAULT_MALFORMED)
    return header, parsed[1:]


def _line(line: str, name: str, number: int) -> Any:
    if len(line) > MAX_LINE_BYTES:
        raise PollFault(f"{name} line {number}: longer than {MAX_LINE_BYTES} bytes",
                        fault=FAULT_MALFORMED)
    try:
        return strict_loads(line)
    except ValueError as exc:
        raise PollFault(f"{name} line {number}: not valid JSON ({exc})",
                        fault=FAULT_MALFORMED) from None


# --- the job summary -------------------------------------------------------------

_OPT_STR = ("start", "end", "host")


def parse_summary(data: bytes, name: str = SUMMARY) -> dict[int, TaskResult]:
    """``{task_id: TaskResult}`` from a job summary, every field type-checked."""
    return parse_summary_products(data, name)[0]


Recorded = dict[str, tuple[int, str]]
"""``{remote product path: (size, sha256)}`` as the job recorded them."""


def parse_summary_products(data: bytes, name: str = SUMMARY
                           ) -> tuple[dict[int, TaskResult], Recorded | None]:
    """The tasks of a job summary and (v2) the size and sha256 the job recorded for
    each permanent product (None for a v1 summary, which records none)."""
    header, records = parse_jsonl(data, name, SUMMARY_FORMAT, jobfolder.SUMMARY.version,
                                  jobfolder.SUMMARY.oldest)
    ntasks = header.get("tasks")
    if type(ntasks) is not int or not 0 <= ntasks <= len(records):
        raise PollFault(f"{name} line 1: header says {ntasks!r} tasks, the file "
                        f"holds {len(records)}", fault=FAULT_MALFORMED)
    products = None if header["version"] < 2 else _products(header, records[ntasks:], name,
                                                            ntasks + 2)
    if products is None and ntasks != len(records):
        raise PollFault(f"{name} line 1: header says {ntasks!r} tasks, the file "
                        f"holds {len(records)}", fault=FAULT_MALFORMED)
    out: dict[int, TaskResult] = {}
    for number, rec in enumerate(records[:ntasks], start=2):
        task = _summary_record(rec, name, number)
        if task.task_id in out:
            raise PollFault(f"{name} line {number}: task {task.task_id} appears twice",
                            fault=FAULT_MALFORMED)
        out[task.task_id] = task
    return out, products


def _products(header: dict[str, Any], records: list[Any], name: str, first: int) -> Recorded:
    if header.get("products") != len(records):
        raise PollFault(f"{name} line 1: header says {header.get('products')!r} products, "
                        f"the file holds {len(records)}", fault=FAULT_MALFORMED)
    out: Recorded = {}
    for number, rec in enumerate(records, start=first):
        ok = isinstance(rec, dict) and set(rec) == {"product", "size", "sha256"} \
            and isinstance(rec["product"], str) and _is_int(rec["size"]) \
            and isinstance(rec["sha256"], str) and len(rec["sha256"]) == 64
        if not ok or rec["product"] in out:
            raise PollFault(f"{name} line {number}: not a product record (product, size, "
                            "sha256) or a product listed twice", fault=FAULT_MALFORMED)
        out[rec["product"]] = (rec["size"], rec["sha256"])
    return out


def _is_int(value: Any) -> bool:
    return type(value) is int


def _summary_record(rec: Any, name: str, number: int) -> TaskResult:
    where = f"{name} line {number}"
    if not isinstance(rec, dict):
        raise PollFault(f"{where}: not a JSON object", fault=FAULT_MALFORMED)
    problems = [k for k in ("task_id", "stage_id") if not _is_int(rec.get(k))]
    if rec.get("phase") not in ("pre", "cmd", "post"):
        problems.append("phase")
    if rec.get("rc") is not None and not _is_int(rec.get("rc")):
        problems.append("rc")
    problems += [k for k in _OPT_STR if rec.get(k) is not None and not isinstance(rec[k], str)]
    if problems:
        raise PollFault(f"{where}: bad or missing field(s) {', '.join(problems)}",
                        fault=FAULT_MALFORMED)
    return TaskResult(rec["task_id"], rec["stage_id"], rec["phase"], rec["rc"])


# --- dbinfo files ------------------------------------------------------------------

_RECORD_KEYS = {"v", "table", "key", "values"}


def parse_dbinfo(data: bytes, name: str) -> list[dict[str, Any]]:
    """The records of one dbinfo file, each shaped ``{v, table, key, values}``."""
    _header, records = parse_jsonl(data, name, DBINFO_FORMAT, jobfolder.DBINFO.version)
    for number, rec in enumerate(records, start=2):
        where = f"{name} line {number}"
        if not isinstance(rec, dict) or set(rec) != _RECORD_KEYS:
            raise PollFault(f"{where}: a record must be an object with exactly "
                            f"{sorted(_RECORD_KEYS)}", fault=FAULT_MALFORMED)
        if rec["v"] != jobfolder.DBINFO.version or not _is_int(rec["v"]):
            raise PollFault(f"{where}: record version {rec['v']!r} is not supported",
                            fault=FAULT_MALFORMED)
        if not isinstance(rec["table"], str) or not isinstance(rec["key"], dict) \
                or not isinstance(rec["values"], dict):
            raise PollFault(f"{where}: table must be a string, key and values objects",
                            fault=FAULT_MALFORMED)
    return records


# --- products on the site: type, size and containment, before a pull -----------------

FILE_TYPES = {"reg": "a regular file", "link": "a symbolic link", "dir": "a folder",
              "fifo": "a fifo", "sock": "a socket", "chr": "a character device",
              "blk": "a block device", "other": "not a regular file",
              "missing": "missing"}
"""The types ``rbtransfer.py sizes`` reports, as the run's note names them."""


@dataclass(frozen=True)
class SiteFile:
    """What the site says of one product: lstat type, size, and whether its real
    path lies inside one of the run's own folders."""

    path: str
    type: str
    size: int
    inside: bool


def check_products(link: Link, paths: Sequence[str], roots: Iterable[str], *,
                   anchors: Iterable[str] = (), python: str = "python3",
                   timeout: float = 600.0) -> dict[str, int]:
    """``{path: size}`` of the ``paths`` present on the site (missing ones left out),
    in ONE call; raise PollFault 37 for a link or a real path outside ``roots`` (the
    job folder and the planned output folders), 38 for a non-regular file.

    ``anchors`` are folders whose path is the site's (the configured scratch and
    permanent roots); the common folder of ``roots`` is always one. A root counts
    only when no link lies between it and its anchor (rbhelper ``real_roots``)."""
    if not paths:
        return {}
    roots = sorted(set(roots))
    tops = {a.rstrip("/") or "/" for a in anchors if a.startswith("/")}
    tops.add(posixpath.commonpath(roots) if roots else "/")
    stdin = b"".join(b"A" + os.fsencode(a) + b"\0" for a in sorted(tops))
    stdin += b"".join(b"R" + os.fsencode(r) + b"\0" for r in roots)
    stdin += b"".join(b"P" + os.fsencode(p) + b"\0" for p in paths)
    try:
        result = link.run(inline_transfer_argv(python, "sizes"), stdin=stdin, timeout=timeout)
    except RemoteCommandFailed as exc:
        raise PollFault(f"cannot check the products on {link.host}: "
                        f"{exc.evidence.summary()}", fault=FAULT_JOB_UNREADABLE) from exc
    files = parse_sizes(result.stdout, set(paths))
    refuse_unsafe(files.values())
    return {f.path: f.size for f in files.values() if f.type == "reg"}


def planned_roots(job_dir: str, planned: Iterable[str]) -> set[str]:
    """The run's own remote folders: the job folder and every planned product's folder."""
    return {job_dir, *(posixpath.dirname(p) for p in planned)} - {"", "/"}


def parse_sizes(data: bytes, wanted: set[str]) -> dict[str, SiteFile]:
    """The ``<type> <size> <i|o|-> <path>\\0`` records of ``rbtransfer.py sizes``, checked:
    a known type, a number, a flag, a path asked for, once; every path answered."""
    out: dict[str, SiteFile] = {}
    for record in data.split(b"\0"):
        if not record:
            continue
        parts = record.split(b" ", 3)
        if len(parts) != 4:
            raise PollFault(f"product check: cannot read {record[:200]!r}", fault=FAULT_MALFORMED)
        kind, size, flag, path = (parts[0].decode("ascii", "replace"),
                                  parts[1].decode("ascii", "replace"),
                                  parts[2], os.fsdecode(parts[3]))
        if kind not in FILE_TYPES or flag not in (b"i", b"o", b"-") \
                or not (size.isdigit() or size == "-1") or path not in wanted or path in out:
            raise PollFault(f"product check: unexpected record {record[:200]!r}",
                            fault=FAULT_MALFORMED)
        out[path] = SiteFile(path, kind, int(size), flag == b"i")
    if set(out) != wanted:
        raise PollFault(f"product check: no answer for {len(wanted - set(out))} products",
                        fault=FAULT_MALFORMED)
    return out


def refuse_unsafe(files: Iterable[SiteFile]) -> None:
    """PollFault 37 for links and paths leaving the run's folders, else 38 for other
    non-regular files; the message names the first and counts them all."""
    present = [f for f in files if f.type != "missing"]
    escaping = [f for f in present if f.type == "link" or not f.inside]
    if escaping:
        first = escaping[0]
        why = (FILE_TYPES["link"] if first.type == "link"
               else "outside the run's own folders (a folder on its path is a link)")
        raise PollFault(f"{len(escaping)} products refused, only the run's own folders are "
                        f"read: {first.path} is {why}", fault=FAULT_PRODUCT_LINK,
                        hint="look at the product on the site; 'remotetool revert ID' "
                             "polls again once it is a plain file")
    special = [f for f in present if f.type != "reg"]
    if special:
        raise PollFault(f"{len(special)} products are not regular files: {special[0].path} "
                        f"is {FILE_TYPES[special[0].type]}", fault=FAULT_PRODUCT_NOT_REGULAR,
                        hint="look at the product on the site; 'remotetool revert ID' "
                             "polls again once it is a plain file")
