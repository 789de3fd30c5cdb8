#!/usr/bin/env python3
# ruff: noqa: UP006, UP007, UP017, UP035, UP045
# (pyupgrade targets our own 3.11; this file must stay Python 3.6 code, see below)
"""rbhelper: remotebridge's helper on the remote side (python3 standard library only).

It must run on the site's ``remote_python``, which on front ends and compute nodes
is often an old system python: the minimum is Python 3.6. So: no ``from __future__
import annotations`` (3.7), no ``datetime.UTC`` (3.11), no ``X | Y`` types (3.10),
no ``match`` (3.10), no walrus (3.8), no ``add_subparsers(required=...)`` (3.7);
tests/unit/test_exec_rbhelper.py checks this.

It runs in the job folder (the current directory) and never needs the network.

  rbhelper.py task CHUNK TASK_ID     run one task of chunks/CHUNK.tasks.jsonl, record
                                     rc/start/end/host in status/TASK_ID.json (atomic)
  rbhelper.py mkdirs LIST            make every directory listed in LIST (one task)
  rbhelper.py dbinfo --home F --out F
                                     build one dbinfo file from a component's home file
                                     and the stats files the commands wrote
  rbhelper.py dbinfo --table T --key-json J --values-json J [--stats F
                     --from-stats a,b] --append F      one record, appended atomically
  rbhelper.py summary                collect status/*.json into job_summary.jsonl, with
                                     the size and sha256 of every permanent product
  rbhelper.py check-inputs MANIFEST  print remote paths missing, of the wrong size or
                                     of another sha256 than the manifest's
  rbhelper.py precheck [--manifest F]
                                     the job's first step: every input present with its
                                     size (and digest, when the manifest has one)? If not,
                                     write job_summary.jsonl with ``inputs_missing`` and
                                     exit 79 (EXIT_INPUTS_MISSING): the job ends early

A task's own exit code is recorded, not returned: the helper exits 0 once the
status is safely written, so one failing science command never disturbs the other
ranks of its srun step. Formats are described in docs/formats.md.
"""

import argparse
import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional, Tuple

VERSION = 1
# The job folder's names and headers, as literals: this file is shipped to the site
# alone. They must equal the constants of remotebridge/jobfolder.py (the one owner of
# the formats); tests/unit/test_jobfolder.py checks that they do.
PLAN_FILE = "plan.jsonl"
PLAN_FORMAT = "remotebridge.plan"
TASKS_FILE = "chunks/{chunk}.tasks.jsonl"
TASKS_FORMAT = "remotebridge.tasks"
HOME_FORMAT = "remotebridge.home"
DBINFO_FORMAT = "remotebridge.dbinfo"
SUMMARY_FILE = "job_summary.jsonl"
SUMMARY_FORMAT = "remotebridge.job_summary"
STATUS_FILE = "status/{task_id}.json"
STARTED_FILE = "job.started"  # written by job.sh first; read by exec (token, job id)
DIRS_HEADER = "# remotebridge.dirs v1"
INPUTS_HEADER = "# remotebridge.inputs v2"
OUTPUTS_FILE = "outputs.manifest"
OUTPUTS_HEADER = "# remotebridge.outputs v1"
SUMMARY_VERSION = 2
INPUTS_HEADER_V1 = "# remotebridge.inputs v1"
FAULT_NO_STATS = 2
FAULT_TASK_FAILED = 3
EXIT_INPUTS_MISSING = 79
"""precheck's exit code (and the job's) when inputs are gone: purged before the start."""
INPUTS_FILE = "inputs.manifest"
VERIFIED_FILE = "inputs.verified"
VERIFIED_FORMAT = "remotebridge.verified"
"""The site's own record of inputs whose sha256 it checked, beside inputs.manifest."""
MISSING_LISTED = 50
"""At most this many missing paths are named in the job summary."""


def now_iso() -> str:
    """UTC now as ISO 8601 with milliseconds."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def atomic_write(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_jsonl(path: str, fmt: str) -> list:
    """The records of a versioned JSON Lines file (header checked and dropped)."""
    with open(path, encoding="utf-8") as fh:
        header = json.loads(fh.readline())
        if header.get("format") != fmt or header.get("version") != VERSION:
            raise SystemExit(f"rbhelper: {path}: not a {fmt} v{VERSION} file")
        return [json.loads(line) for line in fh if line.strip()]


def jsonl_text(fmt: str, records: list, version: int = VERSION, **extra: object) -> str:
    """A versioned JSON Lines document."""
    head = {"format": fmt, "version": version}
    head.update(extra)
    lines = [json.dumps(head)] + [json.dumps(r, sort_keys=True) for r in records]
    return "\n".join(lines) + "\n"


# --- node --------------------------------------------------------------------------


def node_cores(environ: Optional[dict] = None) -> int:
    """The cores a job's worker may use on this node.

    Under Slurm, ``$SLURM_CPUS_PER_TASK`` (the step's ``--cpus-per-task``, which the
    job script sets to the node's planned cores) wins: the CPU set a step gets can
    differ from what was allocated (a node that declares more CPUs than it has, a
    site's cgroup or hyper-threading setup), and the plan was packed for the
    allocation. Otherwise this process's CPU affinity set, else the CPU count.
    """
    env = os.environ if environ is None else environ
    value = str(env.get("SLURM_CPUS_PER_TASK", "")).strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- task -------------------------------------------------------------------------


def find_task(chunk: str, task_id: int) -> dict:
    """The task record with ``task_id`` in the chunk's task file."""
    for rec in read_jsonl(TASKS_FILE.format(chunk=chunk), TASKS_FORMAT):
        if rec["task_id"] == task_id:
            return rec
    raise SystemExit(f"rbhelper: task {task_id} is not in chunk {chunk}")


def run_argv(task: dict) -> int:
    """Run the task's argv (no shell), output to its log; returns the exit code."""
    return run_task(task)[0]


def run_task(task: dict, timeout: Optional[float] = None) -> Tuple[int, bool]:
    """Run the task's argv (no shell), output to its log: (exit code, killed at timeout).

    With a ``timeout``, the command runs in its own session so that, past it, its
    whole process group is killed (TERM, then KILL after 5 s).
    """
    proc = start_task(task, timeout is not None)
    if proc is None:
        return 127, False
    try:
        return proc.wait(timeout=timeout), False
    except subprocess.TimeoutExpired:
        return kill_group(proc), True


_ENVS: dict = {}


def task_env(threads: int) -> dict:
    """The environment of a task of ``threads`` threads (built once per thread count:
    copying ``os.environ`` is a good part of a short task's start)."""
    if threads not in _ENVS:
        _ENVS[threads] = dict(os.environ, OMP_NUM_THREADS=str(threads))
    return _ENVS[threads]


def start_task(task: dict, own_session: bool) -> "Optional[subprocess.Popen]":
    """Start the task's argv (no shell), output to its log; None when it cannot start.

    ``own_session``: the command leads its own process group, so that a timeout can
    kill all of it (the dynamic runner waits for it without a thread, see rbrunner)."""
    env = task_env(int(task.get("threads", 1)))
    log = task.get("log") or ""
    out = None
    try:
        if log:
            os.makedirs(os.path.dirname(log) or ".", exist_ok=True)
            out = open(log, "ab")  # noqa: SIM115 (closed below once the child has it)
        return subprocess.Popen(task["argv"], stdout=out,
                                stderr=subprocess.STDOUT if out else None, env=env,
                                start_new_session=own_session)
    except OSError as exc:
        sys.stderr.write(f"rbhelper: task {task['task_id']}: {exc}\n")
        return None
    finally:
        if out is not None:
            out.close()


def kill_group(proc: "subprocess.Popen") -> int:
    """Kill a timed-out command's process group; its exit code."""
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def write_status(task: dict, chunk: str, rc: int, start: str, elapsed: float,
                 extra: Optional[dict] = None) -> None:
    """Record one task's outcome in status/<task_id>.json (temp + rename)."""
    status = {"task_id": task["task_id"], "stage_id": task["stage_id"], "phase": task["phase"],
              "chunk": chunk, "rc": rc, "start": start, "end": now_iso(),
              "elapsed": round(elapsed, 3), "host": socket.gethostname()}
    status.update(extra or {})
    path = STATUS_FILE.format(task_id=task["task_id"])
    try:
        atomic_write(path, json.dumps(status) + "\n")
    except FileNotFoundError:  # the job script makes status/; only a bare folder lacks it
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, json.dumps(status) + "\n")


def cmd_task(args: argparse.Namespace) -> int:
    """Run one task and record its status."""
    task = find_task(args.chunk, args.task_id)
    start, t0 = now_iso(), time.time()
    rc = run_argv(task)
    write_status(task, args.chunk, rc, start, time.time() - t0)
    return 0


# --- mkdirs -----------------------------------------------------------------------


def cmd_mkdirs(args: argparse.Namespace) -> int:
    """Make every directory of a directory list (``DIRS_HEADER``)."""
    with open(args.list, encoding="utf-8") as fh:
        first = fh.readline().strip()
        if first != DIRS_HEADER:
            raise SystemExit(f"rbhelper: {args.list}: not a {DIRS_HEADER[2:]} file")
        for line in fh:
            path = line.rstrip("\n")
            if path:
                os.makedirs(path, exist_ok=True)
    return 0


# --- dbinfo -----------------------------------------------------------------------


def load_stats(path: str) -> Optional[dict]:
    """The stats JSON object, or None when missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def build_record(table: str, key: dict, values: dict, stats_path: str, from_stats: list) -> dict:
    """One dbinfo record: home-known values plus the listed stats values."""
    merged = dict(values)
    stats = load_stats(stats_path) if stats_path else {}
    if stats is None:
        merged["fault"] = FAULT_NO_STATS
    else:
        merged.update({k: stats[k] for k in from_stats if k in stats})
    return {"v": VERSION, "table": table, "key": key, "values": merged}


def cmd_dbinfo(args: argparse.Namespace) -> int:
    """Build a component's dbinfo file, or append one record."""
    if args.home:
        homes = read_jsonl(args.home, HOME_FORMAT)
        recs = [build_record(h["table"], h["key"], h["values"], h["stats"], h["from_stats"])
                for h in homes]
        atomic_write(args.out, jsonl_text(DBINFO_FORMAT, recs))
        return 0
    rec = build_record(args.table, json.loads(args.key_json), json.loads(args.values_json),
                       args.stats or "", [s for s in args.from_stats.split(",") if s])
    append_line(args.append, json.dumps(rec, sort_keys=True) + "\n")
    return 0


def append_line(path: str, line: str) -> None:
    """Append one line under an exclusive lock, in a single write."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.fstat(fd).st_size == 0:
            os.write(fd, (jsonl_text(DBINFO_FORMAT, [])).encode())
        os.write(fd, line.encode())
    finally:
        os.close(fd)


# --- summary ----------------------------------------------------------------------


def cmd_summary(args: argparse.Namespace) -> int:
    """Write job_summary.jsonl: every task of plan.jsonl with its recorded status."""
    tasks = read_jsonl(PLAN_FILE, PLAN_FORMAT)
    recs, counts = [], {"ok": 0, "failed": 0, "missing": 0}
    for t in tasks:
        st = load_stats(STATUS_FILE.format(task_id=t["task_id"]))
        rec = {"task_id": t["task_id"], "phase": t["phase"], "stage_id": t["stage_id"],
               "rc": None, "start": None, "end": None, "host": None}
        if st is None:
            counts["missing"] += 1
        else:
            rec.update({k: st.get(k) for k in ("rc", "start", "end", "host")})
            counts["ok" if st.get("rc") == 0 else "failed"] += 1
        recs.append(rec)
    products = product_records()
    atomic_write(args.out, jsonl_text(SUMMARY_FORMAT, recs + products, SUMMARY_VERSION,
                                      tasks=len(recs), products=len(products), **counts))
    sys.stdout.write(json.dumps(counts) + "\n")
    return 0


def product_records() -> list:
    """``{product, size, sha256}`` of every permanent product of outputs.manifest that
    exists (poll checks what comes home against them)."""
    out = []
    with open(OUTPUTS_FILE, encoding="utf-8") as fh:
        if fh.readline().strip() != OUTPUTS_HEADER:
            raise SystemExit(f"rbhelper: {OUTPUTS_FILE}: not a {OUTPUTS_HEADER[2:-3]} file")
        for line in fh:
            cells = line.rstrip("\n").split("\t")
            if line.startswith("#") or len(cells) < 3 or cells[2] != "1":
                continue
            try:
                size = os.stat(cells[0]).st_size
                out.append({"product": cells[0], "size": size,
                            "sha256": file_sha256(cells[0])})
            except OSError:
                continue  # missing: poll finds it missing too
    return out


# --- check-inputs -----------------------------------------------------------------


def cmd_check_inputs(args: argparse.Namespace) -> int:
    """Print the remote path of every input that is missing, has another size, or
    (manifest v2) whose content has another sha256."""
    for remote in failing_inputs(args.manifest):
        sys.stdout.write(remote + "\n")
    return 0


def failing_inputs(manifest: str) -> list:
    """The remote paths of the manifest's inputs that are not as listed. A file whose
    sha256 this job folder already checked, and that has not changed since (same size,
    mtime, ctime and inode), is not read again: a repeated exec, and the job's precheck
    after exec, hash nothing that exec already verified."""
    path = os.path.join(os.path.dirname(manifest), VERIFIED_FILE)
    known = load_verified(path)
    seen = dict(known)
    gone = [r for r, size, digest in manifest_inputs(manifest)
            if not input_ok(r, size, digest, seen)]
    if seen != known:
        # a record we cannot keep costs a re-hash next time, nothing else
        with contextlib.suppress(OSError):
            atomic_write(path, jsonl_text(VERIFIED_FORMAT, [
                {"path": r, "stamp": list(stamp), "sha256": d}
                for r, (stamp, d) in sorted(seen.items())]))
    return gone


def load_verified(path: str) -> dict:
    """``{remote path: (stamp, digest)}`` from inputs.verified; an absent, foreign or
    damaged file is an empty record (everything is hashed again)."""
    try:
        records = read_jsonl(path, VERIFIED_FORMAT)
        return {r["path"]: (tuple(r["stamp"]), r["sha256"]) for r in records}
    except (OSError, ValueError, SystemExit, KeyError, TypeError, AttributeError):
        return {}


def file_stamp(st: os.stat_result) -> tuple:
    """What changes when a file's content may have: size, mtime, ctime (a push renames
    a new file into place, which a preserved mtime does not hide) and inode."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


# --- precheck --------------------------------------------------------------------


def digest_matches(path: str, spec: str) -> bool:
    """``spec`` (``algo:hex``, or bare hex taken as sha256) holds for ``path``. A spec
    this helper cannot read (unknown algorithm, not hex of the right length) is not
    checked: True, the size alone decides."""
    algo, _, want = spec.lower().rpartition(":")
    try:
        h = hashlib.new(algo or "sha256")
    except ValueError:
        return True
    if len(want) != 2 * h.digest_size or any(c not in "0123456789abcdef" for c in want):
        return True
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest() == want


def manifest_inputs(path: str) -> list:
    """(remote, size, digest) of every input of a v1 or v2 inputs.manifest; the digest
    (v2's sixth column, sha256 hex) is '' in a v1 manifest."""
    out = []
    with open(path, encoding="utf-8") as fh:
        if fh.readline().strip() not in (INPUTS_HEADER, INPUTS_HEADER_V1):
            raise SystemExit(f"rbhelper: {path}: not a {INPUTS_HEADER[2:-3]} file")
        for line in fh:
            if not line.strip() or line.startswith("#"):
                continue
            cells = line.rstrip("\n").split("\t")
            out.append((cells[1], int(cells[2]), cells[5] if len(cells) > 5 else ""))
    return out


def cmd_precheck(args: argparse.Namespace) -> int:
    """Exit 79 with a job summary naming the missing inputs; 0 when all are there."""
    gone = failing_inputs(args.manifest)
    if not gone:
        return 0
    atomic_write(args.out, jsonl_text(SUMMARY_FORMAT, [], tasks=0, ok=0, failed=0,
                                      missing=0, inputs_missing=len(gone),
                                      inputs_missing_paths=gone[:MISSING_LISTED]))
    sys.stderr.write(f"rbhelper: {len(gone)} inputs missing before the start, "
                     f"first {gone[0]}\n")
    return EXIT_INPUTS_MISSING


def input_ok(remote: str, size: int, digest: str, verified: dict) -> bool:
    """The site's file has the manifest's size and (when given) digest; a digest that
    matched is recorded in ``verified`` with the file's stamp, and trusted while the
    stamp holds."""
    try:
        st = os.stat(remote)
        if st.st_size != size:
            return False
        if not digest:
            return True
        stamp = file_stamp(st)
        if verified.get(remote) == (stamp, digest):
            return True
        if not digest_matches(remote, digest):
            return False
    except OSError:
        return False
    verified[remote] = (stamp, digest)
    return True


def file_sha256(path: str) -> str:
    """The sha256 of a file's content, hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(prog="rbhelper.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    sub.required = True  # the keyword needs 3.7
    t = sub.add_parser("task")
    t.add_argument("chunk")
    t.add_argument("task_id", type=int)
    sub.add_parser("mkdirs").add_argument("list")
    d = sub.add_parser("dbinfo")
    for name in ("--home", "--out", "--table", "--stats", "--append"):
        d.add_argument(name)
    d.add_argument("--key-json", default="{}")
    d.add_argument("--values-json", default="{}")
    d.add_argument("--from-stats", default="")
    sub.add_parser("summary").add_argument("--out", default=SUMMARY_FILE)
    sub.add_parser("check-inputs").add_argument("manifest")
    pc = sub.add_parser("precheck")
    pc.add_argument("--manifest", default=INPUTS_FILE)
    pc.add_argument("--out", default=SUMMARY_FILE)
    return p


COMMANDS = {"task": cmd_task, "mkdirs": cmd_mkdirs, "dbinfo": cmd_dbinfo,
            "summary": cmd_summary, "check-inputs": cmd_check_inputs, "precheck": cmd_precheck}


def main(argv: Optional[list] = None) -> int:
    """Entry point."""
    args = parser().parse_args(argv)
    if args.cmd == "dbinfo" and not (args.home and args.out) and not (args.table and args.append):
        parser().error("dbinfo needs --home and --out, or --table and --append")
    return COMMANDS[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
