"""The job folder of a remote run: the one owner of its files (docs/formats.md).

Every file prepare writes into ``remote_<id>/``, and every file the job writes there
on the remote side, is described here once: its name, its format name and version,
and how its first line carries them (:class:`Style`). Everything else reads and
writes job-folder files through this module:

* **names and headers**: the :class:`FileFormat` constants (:data:`PLAN`,
  :data:`INPUTS`, :data:`OUTPUTS`, ...). A TSV file's columns are the fields of its
  row dataclass (:class:`InputLine`, :class:`OutputLine`): a v2 column is one field
  there (and the format's ``version``), written and read by the same code;
* **atomic writes**: :func:`atomic_write` (temporary file + ``rename``) and
  :func:`write_folder` (a whole folder published by one rename);
* **strict reads**: :func:`read_doc`, :func:`read_jsonl`, :func:`read_rows`,
  :func:`read_lines` check the format and version of the first line and the shape of
  every other line, and raise :class:`~remotebridge.errors.JobFolderError` naming the
  file and line otherwise;
* **paths**: :func:`local_folder` and :func:`remote_folder` (``remote_<id>`` is built
  only by :func:`folder_name`).

``remotebridge/remote/rbhelper.py`` runs on the site and must stay standalone, so it
repeats the names and headers it needs as literals; tests/unit/test_jobfolder.py
checks that they equal the constants here.
"""

from __future__ import annotations

import enum
import json
import os
import posixpath
import re
import shutil
import tempfile
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from remotebridge.errors import JobFolderError
from remotebridge.tsvcolumns import bad_cell, schema_of

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

VERSION = 1
"""The version every format of the job folder is at."""

FOLDER_PREFIX = "remote_"


class Style(enum.Enum):
    """How a file carries its format name and version."""

    JSONL = "jsonl"
    """First line ``{"format": "remotebridge.<name>", "version": 1, ...}``, one JSON
    object per further line."""

    JSON = "json"
    """One pretty JSON document whose first line opens with format and version."""

    TSV = "tsv"
    """First line ``# remotebridge.<name> v1``, then ``# col<TAB>col...``, then rows."""

    LINES = "lines"
    """First line ``# remotebridge.<name> v1`` (maybe followed by ``key=value``
    words), then one item per line."""

    SCRIPT = "script"
    """The batch script: the ``# remotebridge.<name> v1 ...`` line follows the shebang."""


@dataclass(frozen=True, kw_only=True)
class FileFormat:
    """One kind of file of the job folder."""

    name: str
    """Path inside the job folder; ``{placeholders}`` are filled by :meth:`path`."""
    format: str
    style: Style
    version: int = VERSION
    oldest: int = 0
    """The oldest version still read (0: only ``version``)."""

    def path(self, **parts: object) -> str:
        """The job-relative path of one file of this kind."""
        return self.name.format(**parts)

    @property
    def comment(self) -> str:
        """The comment header line of a TSV/lines/script file (no newline)."""
        return f"# {self.format} v{self.version}"

    def header(self, **extra: Any) -> str:
        """The JSON header line of a JSON Lines file (no newline)."""
        return json.dumps({"format": self.format, "version": self.version, **extra})

    def check_comment(self, first: str, path: str) -> None:
        """Refuse a comment header of another format or version."""
        m = _COMMENT.match(first.rstrip())
        if not m or m.group(1) != self.format:
            raise JobFolderError(f"not a {self.format} file (first line {first[:80]!r})",
                                 path=path, line=1)
        self._check_version(int(m.group(2)), path)

    def check_header(self, head: Any, path: str) -> None:
        """Refuse a JSON header (or document) of another format or version."""
        if not isinstance(head, dict) or head.get("format") != self.format:
            raise JobFolderError(f"not a {self.format} file (no such format header)",
                                 path=path, line=1)
        version = head.get("version")
        if type(version) is not int:
            raise JobFolderError(f"{self.format} header has no integer version", path=path,
                                 line=1)
        self._check_version(version, path)

    def _check_version(self, version: int, path: str) -> None:
        if not (self.oldest or self.version) <= version <= self.version:
            raise JobFolderError(f"{self.format} version {version} is not supported "
                                 f"(this remotebridge reads version {self.version})",
                                 path=path, line=1)


_COMMENT = re.compile(r"# (\S+) v(\d+)(?: |$)")


@dataclass(frozen=True, kw_only=True)
class JsonlFormat(FileFormat):
    """A JSON Lines file; every record must carry ``keys`` with these types."""

    style: Style = Style.JSONL
    keys: tuple[tuple[str, type], ...] = ()

    def check_record(self, rec: Any, path: str, line: int) -> None:
        """Refuse a record that is no object or lacks one of ``keys`` (or its type)."""
        if not isinstance(rec, dict):
            raise JobFolderError("not a JSON object", path=path, line=line)
        bad = [k for k, t in self.keys if type(rec.get(k)) is not t]
        if bad:
            raise JobFolderError(f"bad or missing field(s) {', '.join(bad)}", path=path,
                                 line=line)


R = TypeVar("R", bound="DataclassInstance")


@dataclass(frozen=True, kw_only=True)
class TsvFormat(FileFormat, Generic[R]):
    """A tab-separated file whose columns are the fields of ``row`` (in order); trailing
    columns with a default may be absent from a line."""

    style: Style = Style.TSV
    row: type[R]

    @property
    def columns(self) -> tuple[str, ...]:
        """The column names, in file order."""
        return tuple(f.name for f in fields(self.row))

    def text(self, rows: Iterable[R]) -> str:
        """The whole file: header, column line, one line per row."""
        return "".join(self.pieces(rows))

    def pieces(self, rows: Iterable[R]) -> Iterator[str]:
        """:meth:`text` line by line (the same bytes), for a :class:`Streamed` file."""
        return self.line_pieces(map(self.line, rows))

    def line(self, row: R) -> str:
        """The line of one row (no newline)."""
        return "\t".join([c.write(getattr(row, c.name)) for c in schema_of(self.row).columns])

    def line_pieces(self, lines: Iterable[str]) -> Iterator[str]:
        """The file from rows already turned into lines by :meth:`line`."""
        yield self.comment + "\n"
        yield "# " + "\t".join(self.columns) + "\n"
        for line in lines:
            yield line + "\n"

    def text_pieces(self, text: Iterable[str]) -> Iterator[str]:
        """:meth:`line_pieces` from the lines as text blocks (a newline after each)."""
        yield self.comment + "\n"
        yield "# " + "\t".join(self.columns) + "\n"
        yield from text

    def parse(self, line: str, path: str, number: int) -> R:
        """One row from one line; JobFolderError naming the file, line and column."""
        cells = line.split("\t")
        schema = schema_of(self.row)
        if not schema.required <= len(cells) <= len(schema.columns):
            raise JobFolderError(f"{len(cells)} columns, expected {len(schema.columns)} "
                                 f"({', '.join(self.columns)})", path=path, line=number)
        try:
            return self.row(*[c.read(t) for c, t in zip(schema.columns, cells, strict=False)])
        except (ValueError, KeyError):
            raise bad_cell(schema.columns, cells, path, number) from None


# --- the rows of the TSV files (also the plan's inputs and outputs) -------------------


class Area(enum.StrEnum):
    """Where a remote file lives."""

    SCRATCH = "scratch"
    """Purged after a few weeks."""

    PERMANENT = "permanent"
    """Survives purges (programs, long-lived shared inputs)."""


@dataclass(frozen=True, slots=True)
class InputLine:
    """One line of ``inputs.manifest``: a file the job needs, where it is at home, where
    it must be remotely, its size."""

    local: str
    remote: str
    size: int
    area: Area = Area.SCRATCH
    """As the site's path_rules chose."""
    shared: bool = False
    """True for files used by many components (detrends, programs, the helper)."""
    sha256: str = ""
    """The content digest at prepare (v2; "" in a v1 manifest: sizes alone compared)."""


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One line of ``outputs.manifest``: a file the job makes, and where it goes at home
    if it comes home."""

    remote: str
    local: str
    permanent: bool
    """True: comes home; False: an intermediate left to the scratch purge."""
    stage_id: int


# --- every file of the job folder --------------------------------------------------------

_TASK_KEYS: tuple[tuple[str, type], ...] = (("task_id", int), ("stage_id", int),
                                            ("phase", str))

JOB = FileFormat(name="job.json", format="remotebridge.job", style=Style.JSON)
ALLOCATION = FileFormat(name="allocation.json", format="remotebridge.allocation",
                        style=Style.JSON)
PLAN = JsonlFormat(name="plan.jsonl", format="remotebridge.plan", keys=_TASK_KEYS)
INPUTS = TsvFormat(name="inputs.manifest", format="remotebridge.inputs", row=InputLine,
                   version=2, oldest=1)
OUTPUTS = TsvFormat(name="outputs.manifest", format="remotebridge.outputs", row=OutputLine)
OUTDIRS = FileFormat(name="outdirs.list", format="remotebridge.dirs", style=Style.LINES)
SCRIPT = FileFormat(name="job.sh", format="remotebridge.job", style=Style.SCRIPT)
MULTIPROG = FileFormat(name="chunks/{chunk}.conf", format="remotebridge.multiprog",
                       style=Style.LINES)
TASKS = JsonlFormat(name="chunks/{chunk}.tasks.jsonl", format="remotebridge.tasks",
                    keys=_TASK_KEYS)
HOME = JsonlFormat(name="home/{stage_id}.home.jsonl", format="remotebridge.home")
LIST = FileFormat(name="lists/{stage}.{id}.list", format="remotebridge.list",
                  style=Style.LINES)
SUBSET = FileFormat(name="retry.a{attempt}.tasks", format="remotebridge.subset",
                    style=Style.LINES)
EXPECTED = JsonlFormat(name="expected.jsonl", format="remotebridge.expected",
                       keys=(("stage_id", int), ("table", str), ("key", dict), ("fixed", dict)))
"""What replay accepts: per component, every dbinfo record (table and key) the job must
send back and the values naming files (uri, path) it must carry unchanged."""
# made on the remote side by the job (poll parses them as untrusted data)
DBINFO = JsonlFormat(name="dbinfo/{stage_id}.dbinfo.jsonl", format="remotebridge.dbinfo")
SUMMARY = JsonlFormat(name="job_summary.jsonl", format="remotebridge.job_summary",
                      version=2, oldest=1)
"""v2: the task lines are followed by one ``{product, size, sha256}`` line per
permanent product the job made (header ``products``: their count)."""
STATUS = "status/{task_id}.json"
"""One task's rc/start/end/host, written by the helper (no header)."""
# made by the dynamic runner (rbrunner.py, docs/runner.md) in runner/
RUNNER_DIR = "runner"
LEADER = FileFormat(name="runner/leader.json", format="remotebridge.runner", style=Style.JSON)
RECORDS = JsonlFormat(name="runner/records.jsonl", format="remotebridge.runner_records")
"""One line per attempt end, lost task or task never started."""
PROGRESS = FileFormat(name="runner/progress.json", format="remotebridge.progress",
                      style=Style.JSON)
"""The compact progress (done, failed, running, left, not_started...), one JSON line,
rewritten atomically; poll reads it in its status round trip."""

VERIFIED = JsonlFormat(name="inputs.verified", format="remotebridge.verified")
"""Made on the site by the helper's input check: ``{path, stamp, sha256}`` per input whose
sha256 it checked, ``stamp`` being [size, mtime_ns, ctime_ns, inode]; a later check
trusts an entry while the file's stamp is the same, so unchanged inputs are hashed once
per job folder. Never pushed, never read at home."""

FORMATS: tuple[FileFormat, ...] = (JOB, ALLOCATION, PLAN, INPUTS, OUTPUTS, OUTDIRS, SCRIPT,
                                   MULTIPROG, TASKS, HOME, LIST, SUBSET, EXPECTED, DBINFO,
                                   SUMMARY, LEADER, RECORDS, PROGRESS, VERIFIED)

HELPER = "rbhelper.py"
RUNNER = "rbrunner.py"
DISPATCH = "rbdispatch.py"
"""The runner and its policy module, shipped beside the helper (runner = "dynamic")."""
EXECUTABLE = frozenset({SCRIPT.name, HELPER, RUNNER})
"""Files written with mode 0755."""

REMOTE_MADE_DIRS = frozenset({"status", "dbinfo", RUNNER_DIR})
"""Top-level folders the job writes on the remote side."""
STARTED = "job.started"
"""The start marker: the job script's first action writes ``token=...`` and ``job_id=...``
lines into it, so exec finds a job whose submit answer was lost even after the
scheduler forgot it."""
REMOTE_MADE_FILES = frozenset({SUMMARY.name, STARTED, VERIFIED.name})
SCHEDULER_OUTPUT_PREFIXES = ("job.", "rb_local.")
SCHEDULER_OUTPUT_SUFFIXES = (".out", ".err")
"""The scheduler's output files of job.sh (``job.<jobid>.out``, ``job.moab.out``...)."""


LOGS_DIR = "logs"
"""Logs brought home (failed tasks' logs, the job's output file), capped in size."""
LOGS_MAX_BYTES = 64 << 10
"""Most bytes of one log kept at home (its end: that is where the error is)."""
LOGS_MAX_FILES = 200
"""Most log files kept at home for one run."""


def task_log_name(task_id: int) -> str:
    """Where a task's log is kept at home, relative to the job folder."""
    return f"{LOGS_DIR}/task-{int(task_id)}.log"


def job_output_name(remote_name: str) -> str:
    """Where the scheduler's output file ``remote_name`` of job.sh is kept at home
    (``None``-safe: only the base name's safe characters are used)."""
    base = "".join(ch if ch.isalnum() or ch in "._-" else "_"
                   for ch in remote_name.rsplit("/", 1)[-1])[:100].lstrip(".")
    return f"{LOGS_DIR}/{base or 'job.out'}"


# --- paths ---------------------------------------------------------------------------------


def folder_name(remote_id: int) -> str:
    """The name of a run's job folder, at home and on the site."""
    return f"{FOLDER_PREFIX}{remote_id}"


def local_folder(path_base: str, remote_id: int) -> Path:
    """The run's job folder at home, under its ``path_base`` (a path or a URI)."""
    # imported here: remotebridge.prepare imports this module
    from remotebridge.prepare.paths import resolve_uri

    return Path(resolve_uri(path_base)) / folder_name(remote_id)


def remote_folder(remote_root: str, remote_id: int) -> str:
    """The run's job folder on the site, under the site's ``remote_root``."""
    return posixpath.join(remote_root, folder_name(remote_id))


# --- writing ------------------------------------------------------------------------------


def json_doc(fmt: FileFormat, body: Mapping[str, Any]) -> str:
    """Pretty JSON whose first line carries the format and version."""
    rest = json.dumps(body, indent=2, default=str)[1:].lstrip("\n")
    head = json.dumps({"format": fmt.format, "version": fmt.version})[:-1]
    return head + ("," if body else "") + "\n" + (rest if body else "}") + "\n"


def jsonl_text(fmt: FileFormat, lines: Iterable[str], **extra: Any) -> str:
    """A JSON Lines file: the header (with ``extra``), then ``lines`` (JSON texts)."""
    return fmt.header(**extra) + "\n" + "".join(line + "\n" for line in lines)


def jsonl_pieces(fmt: FileFormat, lines: Iterable[str], **extra: Any) -> Iterator[str]:
    """:func:`jsonl_text` piece by piece (the same bytes), for :class:`Streamed` files."""
    yield fmt.header(**extra) + "\n"
    for line in lines:
        yield line + "\n"


def jsonl_text_pieces(fmt: FileFormat, text: Iterable[str], **extra: Any) -> Iterator[str]:
    """:func:`jsonl_pieces` from the lines as text blocks (a newline after each line)."""
    yield fmt.header(**extra) + "\n"
    yield from text


@dataclass(frozen=True)
class Streamed:
    """A file whose text is produced piece by piece while it is written, so that a big
    plan, task file or manifest of a run is never held in memory whole."""

    pieces: Callable[[], Iterable[str]]
    """Called once per write; the concatenated pieces are the file's text."""

    def text(self) -> str:
        """The whole text (for review and tests; small files only)."""
        return "".join(self.pieces())


FileText = str | Streamed
"""What a job folder file holds before it is written: its text, or a :class:`Streamed`."""


def text_of(value: FileText) -> str:
    """The whole text of a file value."""
    return value if isinstance(value, str) else value.text()


def lines_text(fmt: FileFormat, items: Iterable[str]) -> str:
    """A lines file: the comment header, then one item per line."""
    return fmt.comment + "\n" + "".join(item + "\n" for item in items)


def atomic_write(path: Path, text: FileText, mode: int = 0o644) -> None:
    """Write ``text`` (or a :class:`Streamed` file's pieces) to ``path`` through a
    temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", buffering=1 << 20) as fh:
            if isinstance(text, str):
                fh.write(text)
            else:
                for piece in text.pieces():
                    fh.write(piece)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_files(folder: Path, files: Mapping[str, FileText]) -> None:
    """Write ``files`` (relative name -> text) into ``folder``, each atomically, in order."""
    made: set[Path] = set()
    for name, text in files.items():
        path = folder / name
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        atomic_write(path, text, 0o755 if name in EXECUTABLE else 0o644)


def _write_staged(folder: Path, files: Mapping[str, FileText]) -> None:
    """:func:`write_files` into the new staging folder of :func:`write_folder`.

    Each file is created and written in place: the staging folder is published by one
    rename and removed on any failure, so a temporary file and a rename per file
    (thousands of home and chunk files in a big run) would add nothing but their cost."""
    made: set[str] = set()
    for name, text in files.items():
        path = os.path.join(folder, name)
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        _write_new(path, text, 0o755 if name in EXECUTABLE else 0o644)


def _write_new(path: str, text: FileText, mode: int) -> None:
    """Create ``path`` (it must not exist) with exactly ``mode`` and write ``text``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", buffering=1 << 20) as fh:
        os.fchmod(fd, mode)  # as atomic_write: the mode whatever the umask
        if isinstance(text, str):
            fh.write(text)
        else:
            for piece in text.pieces():
                fh.write(piece)


def write_folder(target: Path, files: Mapping[str, FileText]) -> Path:
    """Write ``files`` as the folder ``target``, published by one rename: they go to
    ``.<name>.staging-<pid>/`` first; a folder already at ``target`` is moved aside and
    removed, so a reader never sees a half-written job folder."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.staging-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write_staged(staging, files)
        _publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _publish(staging: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# --- strict reading -----------------------------------------------------------------------


@dataclass(frozen=True)
class JsonLines:
    """A JSON Lines file read: its header, its records, and their lines as written."""

    header: dict[str, Any]
    records: list[dict[str, Any]]
    lines: list[str]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise JobFolderError(f"cannot be read: {exc}", path=str(path)) from exc


def _json_line(line: str, path: str, number: int) -> Any:
    try:
        return json.loads(line)
    except ValueError as exc:
        raise JobFolderError(f"not valid JSON ({exc})", path=path, line=number) from None


def read_doc(folder: Path, fmt: FileFormat) -> dict[str, Any]:
    """A JSON document (job.json, allocation.json), its format and version checked."""
    path = folder / fmt.name
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise JobFolderError(f"not valid JSON ({exc.msg})", path=str(path),
                             line=exc.lineno) from None
    fmt.check_header(data, str(path))
    return typing.cast(dict[str, Any], data)


def read_jsonl(folder: Path, fmt: JsonlFormat, **parts: object) -> JsonLines:
    """A JSON Lines file: header checked, every record checked (blank lines skipped)."""
    path = folder / fmt.path(**parts)
    where = str(path)
    lines = _read_text(path).splitlines()
    header = _json_line(lines[0] if lines else "", where, 1)
    fmt.check_header(header, where)
    records, raw = [], []
    for number, line in enumerate(lines[1:], start=2):
        if line.strip():
            rec = _json_line(line, where, number)
            fmt.check_record(rec, where, number)
            records.append(rec)
            raw.append(line)
    return JsonLines(header, records, raw)


def read_rows(folder: Path, fmt: TsvFormat[R]) -> list[R]:
    """The rows of a TSV file (header checked; ``#`` and blank lines skipped)."""
    path = folder / fmt.name
    lines = _read_text(path).splitlines()
    fmt.check_comment(lines[0] if lines else "", str(path))
    return [fmt.parse(line, str(path), n) for n, line in enumerate(lines[1:], start=2)
            if line and not line.startswith("#")]


def read_lines(folder: Path, fmt: FileFormat, **parts: object) -> list[str]:
    """The items of a lines file (header checked; blank lines skipped)."""
    path = folder / fmt.path(**parts)
    lines = _read_text(path).splitlines()
    fmt.check_comment(lines[0] if lines else "", str(path))
    return [line for line in lines[1:] if line]


def read_inputs(folder: Path) -> list[InputLine]:
    """The lines of ``inputs.manifest``."""
    return read_rows(folder, INPUTS)


def read_outputs(folder: Path) -> list[OutputLine]:
    """The lines of ``outputs.manifest``."""
    return read_rows(folder, OUTPUTS)


def remote_job_dir(folder: Path) -> str:
    """The remote job folder named by ``job.json`` (an absolute path, normalised)."""
    job_dir = read_doc(folder, JOB).get("job_dir")
    if not isinstance(job_dir, str) or not job_dir.startswith("/"):
        raise JobFolderError("names no absolute job_dir", path=str(folder / JOB.name))
    return posixpath.normpath(job_dir)


def walltime_seconds(folder: Path) -> int | None:
    """The job's walltime from allocation.json (else job.json); None when neither says."""
    try:
        wall = read_doc(folder, ALLOCATION).get("walltime_seconds")
        if type(wall) is int:
            return wall
    except JobFolderError:
        pass
    try:
        text = read_doc(folder, JOB)["allocation"]["walltime"]
        h, m, sec = (int(x) for x in text.split(":"))
        return h * 3600 + m * 60 + sec
    except (JobFolderError, ValueError, KeyError, TypeError, AttributeError):
        return None
