#!/usr/bin/env python3
# ruff: noqa: UP006, UP007, UP017, UP031, UP035, UP045
# (pyupgrade targets our own 3.11; this file must stay Python 3.6 code, like rbhelper.py)
"""rbrunner: the dynamic task runner inside the job (Python 3.6 standard library only).

It ships with the job beside ``rbhelper.py`` and ``rbdispatch.py`` and keeps every
allocated core busy until the plan or the walltime runs out. Like the helper it
needs no network beyond the allocation and runs on Python 3.6: no ``from __future__
import annotations``, no walrus, no dataclasses, no f-string ``=``.

  rbrunner.py lead --workers N [--end EPOCH | --walltime S]   the leader (batch node)
  rbrunner.py work [--rank R] [--cores C]                      one worker per node (srun)
  rbrunner.py run --workers N [--cores C] ...                  leader + N local workers

**Design (docs/runner.md).** One worker per node, started by a single ``srun
--ntasks-per-node=1``; each worker packs tasks by thread count into its node's cores.
One leader, started first by the batch script, owns the dispatch policy
(``rbdispatch.Dispatcher``: longest expected first, dependencies without phase
barriers, walltime guard, retries) and talks to the workers over the shared
filesystem only, through append-only *mailboxes*: ``runner/to.R.jsonl`` (written by
the leader alone) and ``runner/from.R.jsonl`` (written by worker R alone). A message
is one JSON line written by one ``write`` of an ``O_APPEND`` file that is then
closed; a reader re-opens the file (NFS close-to-open consistency revalidates it;
Lustre is coherent), reads past its offset and takes complete lines only. With one
writer per file nothing needs a lock, a rename or a directory listing (NFS caches
those), and the leader makes every mailbox before any worker starts, so no reader
looks up a name that does not exist yet. Why not per-task claim files (``mkdir``/
``link`` races): every worker would need the whole job's state for longest-first,
thread packing, dependencies and the measured-cost guard, and would race through
thousands of claims; why not TCP: a site may firewall ports between compute nodes,
and files leave a readable trail. Workers read the task argv from ``plan.jsonl``
themselves; a message only names a task id.

**Failure modes.** A worker (or its node) dies: it stops writing heartbeats; after
``lease`` seconds of silence (leader's clock, so no clock skew) its tasks go back to
the queue without spending an attempt and it is told to quit. A corrupt or truncated
plan: leader and workers stop at once with one line, before any task runs. The
leader dies: the batch script (and the job) ends with it; workers quit after
``lease`` seconds without a word from it. A task hangs: the worker kills its process
group at its timeout (``timeout_factor`` x expected cost) and the attempt counts as
failed.
"""

import argparse
import importlib
import json
import math
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
rbhelper: Any = importlib.import_module("rbhelper")
rbdispatch: Any = importlib.import_module("rbdispatch")

VERSION = 1
RUNNER_DIR = "runner"
# names and formats repeated as literals (this file ships alone); jobfolder.py owns them
LEADER_FILE = "runner/leader.json"
LEADER_FORMAT = "remotebridge.runner"
RECORDS_FILE = "runner/records.jsonl"
RECORDS_FORMAT = "remotebridge.runner_records"
PROGRESS_FILE = "runner/progress.json"
PROGRESS_FORMAT = "remotebridge.progress"
EXIT_PLAN = 2
EXIT_LEADER = 3


# --- mailboxes ------------------------------------------------------------------------


class Mailbox:
    """An append-only JSON Lines file with one writer and one reader."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0

    def send(self, msgs: List[dict]) -> None:
        """Append ``msgs`` in one write, then close (flushes to the server on NFS)."""
        if not msgs:
            return
        data = "".join(json.dumps(m, separators=(",", ":")) + "\n" for m in msgs).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            while data:
                data = data[os.write(fd, data):]
        finally:
            os.close(fd)

    def receive(self) -> List[dict]:
        """The complete messages appended since the last call."""
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        cut = data.rfind(b"\n") + 1
        self.offset += cut
        out = []
        for line in data[:cut].splitlines():
            try:
                msg = json.loads(line.decode("utf-8"))
            except ValueError:
                continue
            if isinstance(msg, dict):
                out.append(msg)
        return out


def box(rank: int, direction: str) -> str:
    """The mailbox path for ``direction`` "to" (leader -> worker) or "from"."""
    return os.path.join(RUNNER_DIR, "%s.%d.jsonl" % (direction, rank))


def say(text: str) -> None:
    """One line in the job output."""
    sys.stdout.write(f"rbrunner: {rbhelper.now_iso()} {text}\n")
    sys.stdout.flush()


# --- leader ---------------------------------------------------------------------------


class Leader:
    """Owns the policy; reads the workers' mailboxes, writes theirs, records outcomes."""

    def __init__(self, args: argparse.Namespace, plan: List[dict]) -> None:
        self.args = args
        self.disp = rbdispatch.Dispatcher(
            rbdispatch.policy_tasks(plan), args.end, margin=args.margin,
            max_attempts=args.max_attempts, timeout_factor=args.timeout_factor,
            timeout_min=args.timeout_min)
        self.inbox = dict((r, Mailbox(box(r, "from"))) for r in range(args.workers))
        self.outbox = dict((r, Mailbox(box(r, "to"))) for r in range(args.workers))
        self.started = time.monotonic()
        self.wall_start = time.time()  # in progress.json: home estimates the end from it
        self.seen = dict((r, self.started) for r in range(args.workers))
        self.live: set = set()
        self.gone: set = set()
        self.host: Dict[int, str] = {}
        self.last_progress, self.last_hb = 0.0, 0.0
        self.records = RECORDS_FILE

    def setup(self) -> None:
        """Fresh runner/ folder, every mailbox, then leader.json (workers wait for it)."""
        rotate_runner_dir()
        for r in range(self.args.workers):
            for d in ("to", "from"):
                open(box(r, d), "a").close()
        rbhelper.atomic_write(self.records, rbhelper.jsonl_text(RECORDS_FORMAT, []))
        write_leader_json(self.args, "")

    def run(self) -> int:
        """Dispatch until every task is final; returns the exit code."""
        say("leader: %d tasks, %d workers, end %s" % (len(self.disp.tasks), self.args.workers,
                                                      iso(self.args.end)))
        while not self.disp.finished():
            busy = self.read_all()
            self.check_leases()
            busy = self.dispatch() or busy
            self.maybe_close()
            self.progress(False)
            if not busy:
                time.sleep(self.args.poll)
        for r in range(self.args.workers):
            if r not in self.gone:
                self.outbox[r].send([{"op": "stop"}])
        self.write_not_started()
        self.progress(True)
        c = self.disp.counts()
        say("leader: done=%d failed=%d not_started=%d" % (c["done"], c["failed"],
                                                          c["not_started"]))
        return 0

    def read_all(self) -> bool:
        """Take every worker's new messages; True when there were any."""
        recs, busy = [], False
        for r, mb in self.inbox.items():
            if r in self.gone:
                continue
            msgs = mb.receive()
            if msgs:
                busy, self.seen[r] = True, time.monotonic()
            for m in msgs:
                recs += self.handle(r, m)
        append_records(self.records, recs)
        return busy

    def handle(self, rank: int, msg: dict) -> List[dict]:
        """One worker message; the records it makes."""
        op = msg.get("op")
        if op == "hello":
            self.live.add(rank)
            self.host[rank] = str(msg.get("host", ""))
            self.disp.add_node(node(rank), int(msg.get("cores", 1)))
        elif op == "end" and not msg.get("stopped"):
            a = self.disp.finish(int(msg["seq"]), int(msg["rc"]), float(msg["elapsed"]))
            if a is not None:
                return [end_record(a, msg, rank, self.host.get(rank, ""))]
        elif op == "end" and msg.get("stopped"):
            a = self.disp.stop(int(msg["seq"]))
            if a is not None:
                rec = end_record(a, msg, rank, self.host.get(rank, ""))
                rec["outcome"] = "stopped_walltime"
                return [rec]
        elif op == "declined":
            self.disp.decline(int(msg["seq"]))
        elif op == "bye":
            self.lose(rank, "left")
        return []

    def check_leases(self) -> None:
        """A worker silent for ``lease`` seconds (or never heard of) is gone."""
        now = time.monotonic()
        for r in range(self.args.workers):
            lease = self.args.lease if r in self.live else self.args.start_timeout
            if r not in self.gone and now - self.seen[r] > lease:
                self.lose(r, "silent for %.0f s" % (now - self.seen[r]))

    def lose(self, rank: int, why: str) -> None:
        """Forget a worker; its tasks go back to the queue."""
        self.gone.add(rank)
        was_live = rank in self.live
        self.live.discard(rank)
        back = self.disp.lose_node(node(rank))
        self.outbox[rank].send([{"op": "quit"}])
        if was_live and why != "left":
            say("leader: worker %d (%s) lost, %s; %d tasks back in the queue"
                % (rank, self.host.get(rank, "?"), why, len(back)))
            append_records(self.records, [{"task_id": t, "outcome": "lost", "rank": rank}
                                          for t in back])

    def dispatch(self) -> bool:
        """Fill every live worker; True when something was assigned."""
        now, busy = time.time(), False
        extra = self.extra_threads()
        for r in sorted(self.live):
            cores = self.disp.nodes[node(r)]
            got = self.disp.assign(node(r), now, min(extra, int(cores * self.args.prefetch)))
            if got:
                self.outbox[r].send([a.to_dict() for a in got])
                busy = True
        if now - self.last_hb > self.args.heartbeat:
            self.last_hb = now
            for r in self.live:
                self.outbox[r].send([{"op": "hb"}])
        return busy

    def extra_threads(self) -> int:
        """Threads queued ahead on a worker: enough to cover a mailbox round trip."""
        n = sum(m[0] for m in self.disp.measured.values())
        if not n:
            return 0
        mean = sum(m[1] for m in self.disp.measured.values()) / n
        per_core = (2 * self.args.poll + 0.002) / max(mean, 1e-4)
        return int(math.ceil(max(self.disp.nodes.values() or [1]) * per_core))

    def maybe_close(self) -> None:
        """Nothing can run any more (no worker, or no node wide enough): stop."""
        waiting = time.monotonic() - self.started < self.args.start_timeout
        if self.disp.stalled() and not self.disp.finished() and (self.live or not waiting):
            self.disp.close(rbdispatch.NO_NODE)

    def write_not_started(self) -> None:
        """One record per task that was never started, with the reason."""
        recs = [{"task_id": t, "outcome": "not_started", "reason": self.disp.reason.get(t, "")}
                for t, st in sorted(self.disp.state.items()) if st == rbdispatch.NOT_STARTED]
        append_records(self.records, recs)

    def progress(self, force: bool) -> None:
        """Rewrite runner/progress.json atomically, at most every ``progress_every`` s."""
        now = time.time()
        if not force and now - self.last_progress < self.args.progress_every:
            return
        self.last_progress = now
        doc = {"format": PROGRESS_FORMAT, "version": VERSION, "at": iso(now),
               "started": iso(self.wall_start), "end": iso(self.args.end),
               "tasks": len(self.disp.tasks), "workers": len(self.live), "final": force}
        doc.update(self.disp.counts())
        doc["phases"] = self.disp.phase_counts()
        doc["scale"] = dict((p, round(self.disp.scale(p), 3)) for p in rbdispatch.PHASES)
        rbhelper.atomic_write(PROGRESS_FILE,
                              json.dumps(doc, sort_keys=True) + "\n")


def node(rank: int) -> str:
    """The policy's name for worker ``rank``."""
    return "w%d" % rank


def iso(epoch: float) -> str:
    """An epoch as UTC ISO 8601."""
    import datetime
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(
        timespec="seconds")


def end_record(a: Any, msg: dict, rank: int, host: str) -> dict:
    """The record of one finished attempt."""
    outcome = "ok" if msg.get("rc") == 0 else ("timeout" if msg.get("timeout") else "failed")
    return {"task_id": a.task_id, "attempt": a.attempt, "outcome": outcome, "rc": msg.get("rc"),
            "rank": rank, "node": host, "start": msg.get("start"), "end": msg.get("end"),
            "t0": msg.get("t0"), "t1": msg.get("t1"), "elapsed": msg.get("elapsed")}


def append_records(path: str, recs: List[dict]) -> None:
    """Append records to runner/records.jsonl (the leader is its only writer)."""
    if recs:
        Mailbox(path).send(recs)


def rotate_runner_dir() -> None:
    """Keep an earlier submission's runner/ folder as runner.<n>/ and start afresh."""
    if os.path.isdir(RUNNER_DIR):
        n = 1
        while os.path.exists("%s.%d" % (RUNNER_DIR, n)):
            n += 1
        os.rename(RUNNER_DIR, "%s.%d" % (RUNNER_DIR, n))
    os.makedirs(RUNNER_DIR)


def write_leader_json(args: argparse.Namespace, error: str) -> None:
    """What the workers need to know; ``error`` set when the job must stop."""
    os.makedirs(RUNNER_DIR, exist_ok=True)
    doc = {"format": LEADER_FORMAT, "version": VERSION, "workers": args.workers,
           "end": args.end, "poll": args.poll, "heartbeat": args.heartbeat,
           "lease": args.lease, "margin": args.margin, "host": socket.gethostname(),
           "pid": os.getpid(), "job": this_job(), "error": error}
    rbhelper.atomic_write(LEADER_FILE, json.dumps(doc) + "\n")


# --- worker ---------------------------------------------------------------------------


class Worker:
    """Runs what the leader assigns on this node's cores; reports every outcome."""

    def __init__(self, rank: int, cores: int, info: dict, plan: List[dict]) -> None:
        self.rank, self.cores, self.info = rank, cores, info
        self.tasks = dict((t["task_id"], t) for t in plan)
        self.inbox, self.outbox = Mailbox(box(rank, "to")), Mailbox(box(rank, "from"))
        self.queued: List[dict] = []
        self.running: Dict[int, dict] = {}
        self.results: queue.Queue = queue.Queue()
        self.host = socket.gethostname()
        self.stopping = False
        self.hard_stop = float(info["end"]) - float(info.get("margin", 0.0)) / 2.0

    def run(self) -> int:
        """Work until told to stop (or quit), or until the leader falls silent."""
        self.outbox.send([{"op": "hello", "host": self.host, "cores": self.cores,
                           "pid": os.getpid()}])
        heard = last_hb = time.monotonic()
        poll, lease = float(self.info["poll"]), float(self.info["lease"])
        while True:
            msgs = self.inbox.receive()
            if msgs:
                heard = time.monotonic()
            if any(m.get("op") == "quit" for m in msgs):
                return 0
            self.take(msgs)
            out = self.start_queued()
            if self.stopping and not self.running and not self.queued:
                self.outbox.send(out + [{"op": "bye"}])
                return 0
            if not self.running and time.monotonic() - heard > lease:
                say("worker %d: no word from the leader for %.0f s, quitting" % (self.rank, lease))
                return EXIT_LEADER
            out += self.collect(poll)
            if time.monotonic() - last_hb > float(self.info["heartbeat"]):
                last_hb = time.monotonic()
                out.append({"op": "hb"})
            self.outbox.send(out)

    def take(self, msgs: List[dict]) -> None:
        """Queue the assignments; note a stop."""
        for m in msgs:
            if m.get("op") == "run" and m.get("task_id") in self.tasks:
                self.queued.append(m)
            elif m.get("op") == "stop":
                self.stopping = True

    def start_queued(self) -> List[dict]:
        """Start queued attempts, in order, while their threads fit; declines past the guard."""
        out = []
        while self.queued:
            a = self.queued[0]
            used = sum(r["threads"] for r in self.running.values())
            if used and used + a["threads"] > self.cores:
                break
            self.queued.pop(0)
            if time.time() + float(a["cost"]) > float(a["deadline"]):
                out.append({"op": "declined", "seq": a["seq"], "task_id": a["task_id"]})
                continue
            self.running[a["seq"]] = a
            t = threading.Thread(target=self.execute, args=(a,))
            t.daemon = True
            t.start()
        return out

    def execute(self, a: dict) -> None:
        """One attempt, through the helper's own code path (status/<id>.json as today)."""
        task = self.tasks[a["task_id"]]
        start, t0 = rbhelper.now_iso(), time.time()
        left = self.hard_stop - t0
        rc, killed = rbhelper.run_task(task, max(0.1, min(float(a["timeout"]), left)))
        t1 = time.time()
        stopped = killed and left < float(a["timeout"]) and t1 >= self.hard_stop - 1.0
        if not stopped:  # a stopped attempt is "not started", as if never run
            try:
                rbhelper.write_status(task, "runner", rc, start, t1 - t0,
                                      {"attempt": a["attempt"], "timeout": killed})
            except OSError as exc:
                say("worker %d: task %d: no status: %s" % (self.rank, a["task_id"], exc))
        self.results.put({"op": "end", "seq": a["seq"], "task_id": a["task_id"], "rc": rc,
                          "timeout": killed and not stopped, "stopped": stopped,
                          "start": start, "end": rbhelper.now_iso(),
                          "t0": round(t0, 4), "t1": round(t1, 4),
                          "elapsed": round(t1 - t0, 4)})

    def collect(self, poll: float) -> List[dict]:
        """Finished attempts: wait up to ``poll`` for the first, then take all there are."""
        out = []
        try:
            out.append(self.results.get(timeout=poll))
            while True:
                out.append(self.results.get_nowait())
        except queue.Empty:
            pass
        for m in out:
            self.running.pop(m["seq"], None)
        return out


def this_job() -> str:
    """This job's id, as the job script's start marker names it (same variables, order)."""
    for name in ("SLURM_JOB_ID", "MOAB_JOBID", "RB_JOB_ID"):
        if os.environ.get(name):
            return os.environ[name]
    return "local"


def wait_leader(timeout: float) -> dict:
    """runner/leader.json once this job's leader wrote it: a resubmitted job's worker may
    start before its leader moved the earlier job's runner/ folder aside, and must not
    take that job's end, worker count or error for its own."""
    path, until, doc = LEADER_FILE, time.monotonic() + timeout, None
    while True:
        try:
            with open(path, encoding="utf-8") as fh:
                doc = json.load(fh)
            if doc.get("job", "local") == this_job():
                return doc
        except (OSError, ValueError, AttributeError):
            pass
        if time.monotonic() > until:
            what = "no runner/leader.json" if doc is None else \
                "runner/leader.json still of job %s" % doc.get("job")
            raise SystemExit(f"rbrunner: {what} after {timeout:.0f} s (job {this_job()})")
        time.sleep(0.2)


def node_cores() -> int:
    """Cores this process may use (the Slurm step's CPU set)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# --- command line ---------------------------------------------------------------------


def job_end(args: argparse.Namespace) -> float:
    """The job's end (epoch): --end, else $SLURM_JOB_END_TIME, else now + --walltime."""
    if args.end:
        return float(args.end)
    env = os.environ.get("SLURM_JOB_END_TIME", "")
    if env.isdigit():
        return float(env)
    return time.time() + float(args.walltime)


def start_leader(args: argparse.Namespace) -> Optional[Leader]:
    """Check the plan, then make the runner folder; None (and one line) when the plan is bad."""
    args.end = job_end(args)
    try:
        plan = rbdispatch.load_plan(rbhelper.PLAN_FILE, rbhelper.PLAN_FORMAT)
        if args.subset:
            plan = only_subset(plan, args.subset)
    except rbdispatch.PlanError as exc:
        line = f"stopping, no task started: {exc}"
        say(line)
        sys.stderr.write(f"rbrunner: {line}\n")
        write_leader_json(args, str(exc))
        return None
    leader = Leader(args, plan)
    leader.setup()
    return leader


def only_subset(plan: List[dict], path: str) -> List[dict]:
    """The plan's tasks named in a retry subset file (``retry.aN.tasks``: a ``#`` header
    line, then one task id per line); PlanError when it is unreadable or names others."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise rbdispatch.PlanError(f"{path}: cannot be read: {exc}") from None
    if not lines or not lines[0].startswith("#") or lines[-1] != "":
        raise rbdispatch.PlanError(f"{path}: no header line or truncated")
    wanted = set()
    for n, line in enumerate(lines[1:-1], start=2):
        if not line.isdigit():
            raise rbdispatch.PlanError("%s: line %d: not a task id" % (path, n))
        wanted.add(int(line))
    unknown = wanted - set(t["task_id"] for t in plan)
    if unknown:
        raise rbdispatch.PlanError("%s: task ids not in the plan: %s" % (path, sorted(unknown)[:5]))
    return [t for t in plan if t["task_id"] in wanted]


def cmd_lead(args: argparse.Namespace) -> int:
    """The leader alone (the job script starts the workers with srun)."""
    leader = start_leader(args)
    return EXIT_PLAN if leader is None else leader.run()


def cmd_work(args: argparse.Namespace) -> int:
    """One worker."""
    info = wait_leader(args.start_timeout)
    if info.get("error"):
        say("worker: the leader stopped the job: {}".format(info["error"]))
        return EXIT_PLAN
    try:
        plan = rbdispatch.load_plan(rbhelper.PLAN_FILE, rbhelper.PLAN_FORMAT)
    except rbdispatch.PlanError as exc:
        say(f"worker: stopping, no task started: {exc}")
        return EXIT_PLAN
    rank = args.rank if args.rank is not None else int(os.environ.get("SLURM_PROCID", "0"))
    if rank >= int(info["workers"]):
        say("worker %d: the leader expects %s workers, quitting" % (rank, info["workers"]))
        return 0
    return Worker(rank, args.cores or node_cores(), info, plan).run()


def cmd_run(args: argparse.Namespace) -> int:
    """Leader plus ``--workers`` local worker processes (local scheduler, tests, bench)."""
    leader = start_leader(args)
    if leader is None:
        return EXIT_PLAN
    me = os.path.abspath(__file__)
    procs = []
    for r in range(args.workers):
        argv = [sys.executable, me, "work", "--rank", str(r)]
        if args.cores:
            argv += ["--cores", str(args.cores)]
        procs.append(subprocess.Popen(argv))
    try:
        return leader.run()
    finally:
        for p in procs:
            p.wait()


def parser() -> argparse.ArgumentParser:
    """The command-line parser."""
    p = argparse.ArgumentParser(prog="rbrunner.py", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd")
    sub.required = True  # the keyword needs 3.7
    lead, run = sub.add_parser("lead"), sub.add_parser("run")
    work = sub.add_parser("work")
    work.add_argument("--rank", type=int)
    work.add_argument("--start-timeout", type=float, default=600.0)
    for sp in (work, run):
        sp.add_argument("--cores", type=int, default=0, help="default: this process's CPU set")
    for sp in (lead, run):
        workers = int(os.environ.get("SLURM_JOB_NUM_NODES", "1") or 1)
        sp.add_argument("--workers", type=int, default=workers)
        sp.add_argument("--end", type=float, default=0.0, help="job end, epoch seconds")
        sp.add_argument("--walltime", type=float, default=3600.0)
        sp.add_argument("--subset", default="", help="run only the task ids of this file")
        sp.add_argument("--margin", type=float, default=120.0)
        sp.add_argument("--max-attempts", type=int, default=2)
        sp.add_argument("--timeout-factor", type=float, default=10.0)
        sp.add_argument("--timeout-min", type=float, default=60.0)
        sp.add_argument("--poll", type=float, default=0.25)
        sp.add_argument("--heartbeat", type=float, default=15.0)
        sp.add_argument("--lease", type=float, default=120.0)
        sp.add_argument("--start-timeout", type=float, default=600.0)
        sp.add_argument("--progress-every", type=float, default=10.0)
        sp.add_argument("--prefetch", type=float, default=4.0,
                        help="at most this many x cores queued ahead on a worker")
    return p


COMMANDS = {"lead": cmd_lead, "work": cmd_work, "run": cmd_run}


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point (runs in the job folder)."""
    args = parser().parse_args(argv)
    return COMMANDS[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
