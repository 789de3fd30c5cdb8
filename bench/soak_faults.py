"""The soak's faults: a seeded schedule and the injector that plays it on the test site.

:func:`make_schedule` turns (seed, minutes, kinds, per_kind) into a sorted list of
:class:`Fault`; the same arguments always give the same schedule (only ``random.Random``
seeded with the seed is used). :class:`Injector` plays one fault at a time through
``ops/testsite/site`` and records an :class:`Event` for each; it is the only "human" in
the soak, and the only human command it types is ``control-tool start`` with one token
(after a login cut, and after a link cut that took the masters with it).
"""

from __future__ import annotations

import enum
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path


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
        return Fault(at, kind, rng.choice(CUT_HOSTS), round(rng.uniform(3, 12), 1))
    if kind is Kind.KILL:
        return Fault(at, kind, rng.choice(KILL_VERBS))
    if kind is Kind.SLURMCTLD:
        return Fault(at, kind, "", round(rng.uniform(5, 15), 1))
    if kind is Kind.SLURMD:
        return Fault(at, kind, rng.choice(NODES), round(rng.uniform(3, 10), 1))
    if kind is Kind.EXPIRE:
        return Fault(at, kind, "", round(rng.uniform(2, 10), 1))  # until the token is typed
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
        three if none of that verb shows up within 20 s)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            late = time.monotonic() > deadline - 10
            for pid, argv in self._commands():
                wanted = fault.target in argv or (late and any(v in argv for v in KILL_VERBS))
                if wanted and _kill(pid, signal.SIGKILL):
                    return True, f"pid {pid}: {' '.join(argv[-3:])}"
            time.sleep(0.05)
        return False, "no exec, poll or prepare ran"

    def _do_drop(self, fault: Fault) -> tuple[bool, str]:
        """Freeze the ssh that carries an ``sbatch``, let the scheduler take the job, then
        kill -9 that ssh: the job exists, exec never hears its id."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for pid, argv in self._ssh_children():
                text = " ".join(argv)
                if "sbatch" in text and "--parsable" in text and _kill(pid, signal.SIGSTOP):
                    time.sleep(3.0)  # sbatch answers in well under a second on the site
                    _kill(pid, signal.SIGKILL)
                    token = next((a.split("--comment=rb:")[-1] for a in text.split()
                                  if a.startswith("--comment=rb:")), "?")
                    return True, f"token {token}"
            time.sleep(0.02)
        return False, "no sbatch ran"

    def _commands(self) -> list[tuple[int, list[str]]]:
        """Running ``remotetool`` processes of the hosts' trees: (pid, argv)."""
        return [(p, a) for p, a in self._tree() if a and a[0].endswith("remotetool")
                or len(a) > 1 and a[1].endswith("remotetool")]

    def _ssh_children(self) -> list[tuple[int, list[str]]]:
        return [(p, a) for p, a in self._tree() if a and os.path.basename(a[0]) == "ssh"]

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
