"""The soak's faults: a seeded schedule and the injector that plays it on the test site.

:func:`make_schedule` turns (seed, minutes, kinds, per_kind) into a sorted list of
:class:`Fault`; the same arguments always give the same schedule (only ``random.Random``
seeded with the seed is used). :class:`Injector` plays one fault at a time through
``ops/testsite/site`` and records an :class:`Event` for each; it is the only "human" in
the soak, and the only human command it types is ``control-tool start`` with one token
(after a login cut, and after a link cut or a dropped submit answer that took the
masters with it). A ``drop`` is armed at its time and happens at the next submission
on the site (:meth:`Injector.collect_drops` records it).
"""

from __future__ import annotations

import enum
import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Kind(enum.StrEnum):
    """What a fault does on the site."""

    EXPIRE = "expire"        # site expire: every dmz login cut; control-tool start + 1 token
    CUT = "cut"              # site cut HOST, heal after a while
    PURGE = "purge"          # site purge: every scratch file deleted
    KILL = "kill"            # kill -9 of a running exec, poll or prepare
    SLURMCTLD = "slurmctld"  # site stop-slurm, start-slurm after a while
    SLURMD = "slurmd"        # site kill-slurmd NODE, start-slurm after a while
    DROP = "drop"            # the answer of an accepted sbatch never reaches exec


ALL_KINDS = tuple(Kind)
CUT_HOSTS = ("dmz", "fe1", "fe2", "fe3")
NODES = ("cn1", "cn2")
KILL_VERBS = ("exec", "poll", "prepare")
# seconds each fault holds the site (and the injector): short enough that a 6-minute
# soak ends its faults with time left to finish the campaign
CUT_HOLD = (2.0, 6.0)
SLURMCTLD_HOLD = (2.0, 6.0)
SLURMD_HOLD = (2.0, 5.0)
EXPIRE_HOLD = (1.0, 4.0)
KILL_SEARCH = 20.0  # seconds to find a running command (an empty tick lives ~0.2 s)


@dataclass(frozen=True)
class Fault:
    """One scheduled fault: when (seconds after the start), what, on what, how long."""

    at: float
    kind: Kind
    target: str = ""
    hold: float = 0.0

    def describe(self) -> str:
        """One line for the printed schedule."""
        extra = f" {self.target}" if self.target else ""
        hold = f" for {self.hold:.0f}s" if self.hold else ""
        return f"t+{self.at:6.1f}s {self.kind.value}{extra}{hold}"


def make_schedule(seed: int, window: float, kinds: Sequence[Kind], per_kind: int) -> list[Fault]:
    """``per_kind`` faults of each kind at seeded random times in [5 s, ``window``)."""
    rng = random.Random(seed)
    faults: list[Fault] = []
    for kind in kinds:
        for _ in range(per_kind):
            at = round(rng.uniform(5.0, max(6.0, window)), 1)
            faults.append(_fault(rng, at, kind))
    return sorted(faults, key=lambda f: (f.at, f.kind.value))


def _fault(rng: random.Random, at: float, kind: Kind) -> Fault:
    if kind is Kind.CUT:
        return Fault(at, kind, rng.choice(CUT_HOSTS), round(rng.uniform(*CUT_HOLD), 1))
    if kind is Kind.KILL:
        return Fault(at, kind, rng.choice(KILL_VERBS))
    if kind is Kind.SLURMCTLD:
        return Fault(at, kind, "", round(rng.uniform(*SLURMCTLD_HOLD), 1))
    if kind is Kind.SLURMD:
        return Fault(at, kind, rng.choice(NODES), round(rng.uniform(*SLURMD_HOLD), 1))
    if kind is Kind.EXPIRE:
        return Fault(at, kind, "", round(rng.uniform(*EXPIRE_HOLD), 1))  # until the token
    return Fault(at, kind)


@dataclass
class Event:
    """What the injector did: the fault, when it really happened, and what it hit."""

    at: float
    kind: Kind
    target: str
    done: bool
    detail: str = ""


@dataclass
class Injector:
    """Plays faults on the test site; counts the human commands (control-tool start)."""

    site: str
    start_masters: Callable[[], bool]
    host_pids: Callable[[], list[int]]
    t0: float = field(default_factory=time.monotonic)
    events: list[Event] = field(default_factory=list)
    starts: int = 0
    other_manual: int = 0
    drops_seen: int = -1

    def site_cmd(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """One verb of ``ops/testsite/site``."""
        return subprocess.run([self.site, *args], capture_output=True, text=True,
                              timeout=timeout, check=False)

    def play(self, fault: Fault) -> Event:
        """Do ``fault`` now and record it."""
        handler = getattr(self, f"_do_{fault.kind.value}")
        done, detail = handler(fault)
        event = Event(round(time.monotonic() - self.t0, 1), fault.kind, fault.target, done,
                      detail)
        self.events.append(event)
        return event

    def human_start(self) -> bool:
        """The key-card holder: ``control-tool start`` and one token."""
        self.starts += 1
        return self.start_masters()

    def _do_expire(self, fault: Fault) -> tuple[bool, str]:
        self.site_cmd("expire")
        time.sleep(fault.hold)  # the holder reads the cron mail a while later
        return True, f"start {'ok' if self.human_start() else 'FAILED'}"

    def _do_cut(self, fault: Fault) -> tuple[bool, str]:
        self.site_cmd("cut", fault.target)
        time.sleep(fault.hold)
        self.site_cmd("heal", fault.target)
        return True, "healed"

    def _do_purge(self, fault: Fault) -> tuple[bool, str]:
        r = self.site_cmd("purge")
        return r.returncode == 0, (r.stderr or r.stdout).strip()[-80:]

    def _do_slurmctld(self, fault: Fault) -> tuple[bool, str]:
        self.site_cmd("stop-slurm")
        time.sleep(fault.hold)
        r = self.site_cmd("start-slurm")
        return r.returncode == 0, "restarted" if r.returncode == 0 else r.stderr[-80:]

    def _do_slurmd(self, fault: Fault) -> tuple[bool, str]:
        r = self.site_cmd("kill-slurmd", fault.target)
        time.sleep(fault.hold)
        self.site_cmd("start-slurm")
        return r.returncode == 0, (r.stderr or r.stdout).strip()[-80:]

    def _do_kill(self, fault: Fault) -> tuple[bool, str]:
        """kill -9 a running ``remotetool <verb>`` (the scheduled verb first, any of the
        three if none of that verb shows up within half of ``KILL_SEARCH``)."""
        deadline = time.monotonic() + KILL_SEARCH
        while time.monotonic() < deadline:
            late = time.monotonic() > deadline - KILL_SEARCH / 2
            for pid, argv in self._commands():
                wanted = fault.target in argv or (late and any(v in argv for v in KILL_VERBS))
                if wanted and _kill(pid, signal.SIGKILL):
                    return True, f"pid {pid}: {' '.join(argv[-3:])}"
            time.sleep(0.01)
        return False, "no exec, poll or prepare ran"

    def _do_drop(self, fault: Fault) -> tuple[bool, str]:
        """Arm the front ends' sbatch wrapper for one submission more (``site
        drop-submit``): the job is submitted, its connection dies before the answer is
        sent. Not done yet: :meth:`collect_drops` records it when it happens."""
        state = self.drop_state()
        self.site_cmd("drop-submit", str(int(state.get("armed", 0)) + 1))
        return False, f"armed ({state.get('armed', 0)} armed before)"

    def drop_state(self) -> dict[str, Any]:
        """``site dropped --json``: answers dropped so far and submissions still armed."""
        r = self.site_cmd("dropped", "--json")
        try:
            return dict(json.loads(r.stdout))
        except ValueError:
            return {}

    def collect_drops(self) -> int:
        """One done ``drop`` event per answer dropped since the last call; how many."""
        answers = list(self.drop_state().get("answers", []))
        if self.drops_seen < 0:  # the first call: earlier soaks' drops are not ours
            self.drops_seen = len(answers)
            return 0
        new = answers[self.drops_seen:]
        self.drops_seen = len(answers)
        for line in new:
            self.events.append(Event(round(time.monotonic() - self.t0, 1), Kind.DROP, "",
                                     True, str(line)[-120:]))
        return len(new)

    def _commands(self) -> list[tuple[int, list[str]]]:
        """Running ``remotetool`` processes of the hosts' trees: (pid, argv)."""
        return [(p, a) for p, a in self._tree() if a and a[0].endswith("remotetool")
                or len(a) > 1 and a[1].endswith("remotetool")]

    def _tree(self) -> list[tuple[int, list[str]]]:
        roots = set(self.host_pids())
        out = []
        for pid in _all_pids():
            if _session_of(pid) in roots:
                argv = _argv(pid)
                if argv:
                    out.append((pid, argv))
        return out


def _all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _session_of(pid: int) -> int:
    try:
        return os.getsid(pid)
    except OSError:
        return -1


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _kill(pid: int, sig: signal.Signals) -> bool:
    try:
        os.kill(pid, sig)
    except OSError:
        return False
    return True
