#!/usr/bin/env python3
# ruff: noqa: UP006, UP007, UP031, UP035, UP045
# (pyupgrade targets our own 3.11; this file must stay Python 3.6 code, like rbhelper.py)
"""rbdispatch: the dynamic runner's dispatch policy, pure and driven by the caller's clock.

Python 3.6 standard library only (it ships with the job beside ``rbrunner.py``): no
``from __future__ import annotations``, no walrus, no dataclasses.

Nothing here sleeps or starts a process, and the only file it reads is the plan
(``load_plan``, checked line by line before any task may run). The leader of ``rbrunner.py``
feeds it the real clock and the workers' reports; ``simulate`` (and the benchmark)
feed it a virtual clock. The rules (docs/runner.md):

* **Order:** among the tasks that are ready, the longest expected cost first; a node
  gets the longest ready task that fits its free cores (thread count), then the next.
* **Dependencies, no phase barriers:** a ``pre`` task of component 0 (the job-wide
  ``mkdirs``) comes before every other task; a ``pre`` task of component X before
  X's ``cmd`` and ``post`` tasks; X's ``post`` tasks start once X's own ``cmd``
  tasks have ended (done or failed). If one of X's ``cmd`` tasks was not started,
  its ``post`` tasks are not started either (they would only record missing stats).
* **Walltime guard:** a task is started only if ``now + cost * scale <= end -
  margin``; ``scale`` is what this job has measured so far (sum of elapsed / sum of
  expected, per phase, over successful attempts, once 3 are in). A task that does not
  fit is final: "not started: walltime", no attempt spent.
* **Retries:** a failed attempt (exit code != 0, or killed at its timeout) is queued
  again while ``attempts < max_attempts``. A task whose node was lost is queued again
  without spending an attempt, at most ``max_lost`` times.
"""

import heapq
import json
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

VERSION = 1
PHASES = ("pre", "cmd", "post")

# task states
BLOCKED, READY, ACTIVE, DONE, FAILED, NOT_STARTED = (
    "blocked", "ready", "active", "done", "failed", "not_started")
FINAL = (DONE, FAILED, NOT_STARTED)

# reasons for NOT_STARTED / FAILED
WALLTIME, NO_NODE, LOST = "walltime", "no node", "lost"


class Task:
    """What the policy knows of a plan task."""

    __slots__ = ("task_id", "stage_id", "phase", "threads", "cost")

    def __init__(self, task_id: int, stage_id: int, phase: str, threads: int,
                 cost: float) -> None:
        self.task_id = task_id
        self.stage_id = stage_id
        self.phase = phase
        self.threads = threads
        self.cost = cost


class Assignment:
    """One attempt of one task, given to one node."""

    __slots__ = ("seq", "task_id", "node", "attempt", "threads", "cost", "timeout", "deadline")

    def __init__(self, seq: int, task_id: int, node: str, attempt: int, threads: int,
                 cost: float, timeout: float, deadline: float) -> None:
        self.seq = seq
        self.task_id = task_id
        self.node = node
        self.attempt = attempt
        self.threads = threads
        self.cost = cost          # expected seconds, scaled by what the job measured
        self.timeout = timeout    # the attempt is killed past this many seconds
        self.deadline = deadline  # latest end allowed: the job's end minus the margin

    def to_dict(self) -> dict:
        """The message a worker receives."""
        return {"op": "run", "seq": self.seq, "task_id": self.task_id,
                "attempt": self.attempt, "threads": self.threads,
                "cost": round(self.cost, 3), "timeout": round(self.timeout, 3),
                "deadline": round(self.deadline, 3)}


class Dispatcher:
    """The dispatch policy: which task goes to which node, when, and what became of it."""

    def __init__(self, tasks: List[Task], end: float, margin: float = 120.0,
                 max_attempts: int = 2, timeout_factor: float = 10.0,
                 timeout_min: float = 60.0, max_lost: int = 2) -> None:
        self.tasks = dict((t.task_id, t) for t in tasks)
        self.end, self.margin = end, margin
        self.max_attempts, self.max_lost = max(1, max_attempts), max_lost
        self.timeout_factor, self.timeout_min = timeout_factor, timeout_min
        self.state: Dict[int, str] = dict((t.task_id, BLOCKED) for t in tasks)
        self.attempts: Dict[int, int] = dict((t.task_id, 0) for t in tasks)
        self.lost: Dict[int, int] = dict((t.task_id, 0) for t in tasks)
        self.reason: Dict[int, str] = {}
        self.active: Dict[int, Assignment] = {}
        self.nodes: Dict[str, int] = {}
        self.committed: Dict[str, int] = {}
        self.measured = dict((p, [0, 0.0, 0.0]) for p in PHASES)  # n, elapsed, cost
        self._ready: Dict[int, List[Tuple[float, int]]] = {}
        self._seq = 0
        self.n_final = 0
        self._build_dependencies(tasks)

    # --- dependencies -------------------------------------------------------------

    def _build_dependencies(self, tasks: List[Task]) -> None:
        self.waiting = dict((t.task_id, 0) for t in tasks)  # prerequisites not yet final
        self.after: Dict[int, List[int]] = {}
        self.tainted: set = set()
        pre0 = [t.task_id for t in tasks if t.phase == "pre" and t.stage_id == 0]
        pre_of: Dict[int, List[int]] = {}
        cmd_of: Dict[int, List[int]] = {}
        for t in tasks:
            if t.phase == "pre" and t.stage_id != 0:
                pre_of.setdefault(t.stage_id, []).append(t.task_id)
            elif t.phase == "cmd":
                cmd_of.setdefault(t.stage_id, []).append(t.task_id)
        for t in tasks:
            if t.phase == "pre" and t.stage_id == 0:
                continue
            needs = list(pre0)
            if t.phase != "pre":
                needs += pre_of.get(t.stage_id, [])
            if t.phase == "post":
                needs += cmd_of.get(t.stage_id, [])
            for n in needs:
                self.after.setdefault(n, []).append(t.task_id)
            self.waiting[t.task_id] = len(needs)
        for tid, n in self.waiting.items():
            if n == 0:
                self._make_ready(tid)

    def _make_ready(self, tid: int) -> None:
        task = self.tasks[tid]
        if tid in self.tainted:
            self._final(tid, NOT_STARTED, WALLTIME)
            return
        self.state[tid] = READY
        heapq.heappush(self._ready.setdefault(task.threads, []), (-task.cost, tid))

    def _final(self, tid: int, state: str, reason: str = "") -> None:
        if self.state[tid] in FINAL:
            return  # counted once: n_final must reach len(state) exactly
        self.state[tid] = state
        self.n_final += 1
        if reason:
            self.reason[tid] = reason
        for dep in self.after.get(tid, ()):
            if state == NOT_STARTED and self.tasks[tid].phase == "cmd":
                self.tainted.add(dep)
            self.waiting[dep] -= 1
            if self.waiting[dep] == 0 and self.state[dep] == BLOCKED:
                self._make_ready(dep)

    # --- nodes ----------------------------------------------------------------------

    def add_node(self, node: str, cores: int) -> None:
        """A worker registered with ``cores`` cores."""
        self.nodes[node] = max(1, cores)
        self.committed.setdefault(node, 0)

    def lose_node(self, node: str) -> List[int]:
        """A worker is gone: its tasks go back to the queue (no attempt spent)."""
        self.nodes.pop(node, None)
        self.committed.pop(node, None)
        back = [a for a in self.active.values() if a.node == node]
        for a in back:
            del self.active[a.seq]
            self.attempts[a.task_id] -= 1
            self.lost[a.task_id] += 1
            if self.lost[a.task_id] > self.max_lost:
                self._final(a.task_id, FAILED, LOST)
            else:
                self._make_ready(a.task_id)
        return [a.task_id for a in back]

    # --- dispatch -------------------------------------------------------------------

    def scale(self, phase: str) -> float:
        """Measured elapsed / expected cost for ``phase`` (1.0 until 3 successes)."""
        n, elapsed, cost = self.measured[phase]
        if n < 3 or cost <= 0:
            return 1.0
        return elapsed / cost

    def expected(self, task: Task) -> float:
        """The task's expected seconds in this job."""
        return task.cost * self.scale(task.phase)

    def assign(self, node: str, now: float, extra_threads: int = 0) -> List[Assignment]:
        """Fill ``node``'s free cores (plus ``extra_threads`` queued ahead), longest first."""
        cores = self.nodes.get(node)
        out: List[Assignment] = []
        if cores is None:
            return out
        while True:
            free = cores + extra_threads - self.committed[node]
            tid = self._pop_longest(min(free, cores))
            if tid is None:
                return out
            task = self.tasks[tid]
            cost = self.expected(task)
            if now + cost > self.end - self.margin:
                self._final(tid, NOT_STARTED, WALLTIME)
                continue
            out.append(self._start(task, node, cost))

    def _pop_longest(self, fit: int) -> Optional[int]:
        best: Optional[Tuple[float, int]] = None
        best_heap: Optional[List[Tuple[float, int]]] = None
        for threads, heap in self._ready.items():
            if heap and threads <= fit and (best is None or heap[0] < best):
                best, best_heap = heap[0], heap
        if best_heap is None:
            return None
        return heapq.heappop(best_heap)[1]

    def _start(self, task: Task, node: str, cost: float) -> Assignment:
        self._seq += 1
        self.attempts[task.task_id] += 1
        self.state[task.task_id] = ACTIVE
        self.committed[node] += task.threads
        timeout = max(self.timeout_min, self.timeout_factor * cost)
        a = Assignment(self._seq, task.task_id, node, self.attempts[task.task_id],
                       task.threads, cost, timeout, self.end - self.margin)
        self.active[a.seq] = a
        return a

    # --- outcomes -------------------------------------------------------------------

    def finish(self, seq: int, rc: int, elapsed: float) -> Optional[Assignment]:
        """An attempt ended with exit code ``rc``; None when it was no longer ours."""
        a = self.active.pop(seq, None)
        if a is None:
            return None
        self._release(a)
        task = self.tasks[a.task_id]
        if rc == 0:
            m = self.measured[task.phase]
            m[0], m[1], m[2] = m[0] + 1, m[1] + elapsed, m[2] + task.cost
            self._final(a.task_id, DONE)
        elif self.attempts[a.task_id] < self.max_attempts:
            self._make_ready(a.task_id)
        else:
            self._final(a.task_id, FAILED)
        return a

    def stop(self, seq: int) -> Optional[Assignment]:
        """The worker stopped the attempt at the hard stop (end - margin / 2): not started.

        The runner stops what still runs then, so that its records and the job's
        summary are written before the scheduler kills the job; no attempt is spent.
        """
        a = self.active.get(seq)
        if a is not None:
            self.decline(seq)
        return a

    def hard_stop(self) -> float:
        """When workers stop what still runs."""
        return self.end - self.margin / 2.0

    def decline(self, seq: int) -> Optional[Assignment]:
        """The worker would have started the attempt past the deadline: not started."""
        a = self.active.pop(seq, None)
        if a is None:
            return None
        self._release(a)
        self.attempts[a.task_id] -= 1
        self._final(a.task_id, NOT_STARTED, WALLTIME)
        return a

    def _release(self, a: Assignment) -> None:
        if a.node in self.committed:
            self.committed[a.node] -= a.threads

    def has_ready(self) -> bool:
        """Some task waits for a node."""
        return any(self._ready.values())

    def stalled(self) -> bool:
        """Nothing runs and nothing left can run on the nodes there are."""
        if self.active:
            return False
        biggest = max(self.nodes.values()) if self.nodes else 0
        return not any(heap and th <= biggest for th, heap in self._ready.items())

    def close(self, reason: str = NO_NODE) -> None:
        """Give every task that is not final the outcome "not started: ``reason``".

        Dependents go before their prerequisites (post, cmd, a component's pre, then
        component 0's pre): a prerequisite made final then wakes no one, so no task is
        made ready (and final) a second time, which counted it twice and kept
        ``finished()`` false for ever."""
        rank = {"post": 0, "cmd": 1, "pre": 2}
        order = sorted(self.state, key=lambda t: (rank[self.tasks[t].phase],
                                                  self.tasks[t].stage_id == 0, t))
        for tid in order:
            if self.state[tid] in (READY, BLOCKED):
                self._final(tid, NOT_STARTED, reason)
        for heap in self._ready.values():
            del heap[:]

    def finished(self) -> bool:
        """Every task is final."""
        return not self.active and self.n_final == len(self.state)

    def phase_counts(self) -> Dict[str, dict]:
        """Per phase: tasks, done, and the summed elapsed seconds of the done ones."""
        out = dict((p, {"tasks": 0, "done": 0, "elapsed": round(self.measured[p][1], 1)})
                   for p in PHASES)
        for tid, st in self.state.items():
            c = out[self.tasks[tid].phase]
            c["tasks"] += 1
            c["done"] += st == DONE
        return out

    def counts(self) -> Dict[str, int]:
        """Progress: done / failed / running / left / not_started."""
        c = {"done": 0, "failed": 0, "running": len(self.active), "left": 0, "not_started": 0}
        for st in self.state.values():
            if st in (DONE, FAILED, NOT_STARTED):
                c[st] += 1
            elif st != ACTIVE:
                c["left"] += 1
        return c


# --- the plan ---------------------------------------------------------------------


class PlanError(Exception):
    """plan.jsonl cannot be trusted: the job must not start any task."""


# --- plan -----------------------------------------------------------------------------


def _check_task(rec: Any, seen: set) -> str:
    """What is wrong with one plan record ("" when nothing)."""
    if not isinstance(rec, dict):
        return "not a JSON object"
    for key, kind in (("task_id", int), ("stage_id", int), ("threads", int)):
        if not isinstance(rec.get(key), kind) or isinstance(rec.get(key), bool):
            return f"{key} is not an integer"
    if rec["task_id"] in seen:
        return "task_id %d appears twice" % rec["task_id"]
    if rec.get("phase") not in PHASES:
        return "phase is not pre, cmd or post"
    cost = rec.get("cost")
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not cost >= 0 \
            or math.isinf(cost):
        return "cost is not a number >= 0"
    if rec["threads"] < 1:
        return "threads < 1"
    argv = rec.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        return "argv is not a list of strings"
    if not isinstance(rec.get("log", ""), str):
        return "log is not a string"
    return ""


def load_plan(path: str, plan_format: str) -> List[dict]:
    """Every task of the plan, checked; raises PlanError naming the line.

    ``plan_format`` is the header's format name: rbhelper.py holds the literal (the
    job-folder module at home owns it), so this policy module names no file format."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().split("\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{path}: cannot be read: {exc}") from None
    if lines and lines[-1] == "":
        lines.pop()
    else:
        raise PlanError(f"{path}: truncated (no newline at the end)")
    try:
        head = json.loads(lines[0]) if lines else None
    except ValueError:
        head = None
    if not isinstance(head, dict) or head.get("format") != plan_format \
            or head.get("version") != VERSION:
        raise PlanError(f"{path}: line 1: not a {plan_format} v{VERSION} header")
    tasks: List[dict] = []
    seen: set = set()
    for n, line in enumerate(lines[1:], start=2):
        try:
            rec = json.loads(line)
        except ValueError:
            raise PlanError("%s: line %d: not JSON" % (path, n)) from None
        why = _check_task(rec, seen)
        if why:
            raise PlanError("%s: line %d: %s" % (path, n, why))
        seen.add(rec["task_id"])
        tasks.append(rec)
    if head.get("tasks") != len(tasks):
        raise PlanError("%s: header says %r tasks, the file holds %d (truncated?)"
                        % (path, head.get("tasks"), len(tasks)))
    return tasks


def policy_tasks(plan: List[dict]) -> List[Task]:
    """The plan as the policy sees it."""
    return [Task(t["task_id"], t["stage_id"], t["phase"], t["threads"],
                            float(t["cost"])) for t in plan]


# --- virtual time -----------------------------------------------------------------


def simulate(disp: Dispatcher, nodes: Dict[str, int], run: Callable[[Assignment, float], Tuple],
             start: float = 0.0) -> float:
    """Drive ``disp`` in virtual time; returns the time the last attempt ended.

    ``run(assignment, now)`` answers ``(rc, elapsed)``; an attempt longer than its
    timeout ends at the timeout with rc -9, as the real worker kills it then; one
    still running at the hard stop is stopped there (``Dispatcher.stop``).
    """
    for node, cores in sorted(nodes.items()):
        disp.add_node(node, cores)
    events: List[Tuple[float, int, int, float]] = []
    now = start

    hungry: set = set()  # nodes left with free cores at their last fill

    def fill(node: str) -> None:
        for a in disp.assign(node, now):
            rc, elapsed = run(a, now)
            if elapsed > a.timeout:
                rc, elapsed = -9, a.timeout
            if now + elapsed > disp.hard_stop():
                rc, elapsed = None, max(0.0, disp.hard_stop() - now)
            heapq.heappush(events, (now + elapsed, a.seq, rc, elapsed))
        if disp.committed[node] < nodes[node]:
            hungry.add(node)
        else:
            hungry.discard(node)

    for node in sorted(nodes):
        fill(node)
    while events:
        now, seq, rc, elapsed = heapq.heappop(events)
        a = disp.stop(seq) if rc is None else disp.finish(seq, rc, elapsed)
        if a is not None:
            fill(a.node)
        for node in sorted(hungry) if disp.has_ready() else ():
            fill(node)
    if disp.stalled():
        disp.close()
    return now


def lognormal_sigma(cv: float) -> float:
    """The sigma of a lognormal distribution whose coefficient of variation is ``cv``."""
    return math.sqrt(math.log(1.0 + cv * cv))
