"""A cron simulator for campaign tests: the crontab's own lines, run as cron would.

``Crontab.parse`` reads ``ops/crontab.example`` (its variable lines and its schedule
lines; only the minute field may be other than ``*``). ``Campaign`` then walks a
simulated clock minute by minute and, at each minute, first fires the scenario's next
``Step`` if its time has come (a login cut, a purge, an operator's command), then runs
every line due that minute as a subprocess (``bash -c``), as cron would, with cron's
small environment: no askpass, so nothing run from cron can ever ask for a token.

Everything is recorded: each line run (``Ran``: the simulated minute, who ran it, the
exit code, the output) and, through bash's xtrace, every command a line ran once its
variables were expanded. The test then asserts on the record: what a person typed
(``Kind.OPERATOR``) is only what the scenario meant them to type, and no line or
person ever ran ``revertauth`` or ``revert``.
"""

from __future__ import annotations

import enum
import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CRONTAB = Path(__file__).resolve().parents[2] / "ops" / "crontab.example"
MINUTES = range(60)


class Kind(enum.Enum):
    """Who ran a command."""

    CRON = "cron"
    """A line of the crontab."""
    PIPELINE = "pipeline"
    """The pipeline's own periodic work (its advance to the next stage), not ours."""
    OPERATOR = "operator"
    """A person typed it."""


def parse_minutes(spec: str) -> frozenset[int]:
    """The minutes of a cron minute field: ``*``, ``N``, ``A-B``, ``/STEP`` and commas."""
    out: set[int] = set()
    for part in spec.split(","):
        rng, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if rng == "*":
            lo, hi = 0, 59
        elif "-" in rng:
            lo, hi = (int(x) for x in rng.split("-", 1))
        else:
            lo = int(rng)
            hi = 59 if step_text else lo
        if not (0 <= lo <= hi <= 59) or step < 1:
            raise ValueError(f"minute field {spec!r}: {part!r} is out of range")
        out.update(range(lo, hi + 1, step))
    return frozenset(out)


@dataclass(frozen=True)
class CronLine:
    """One schedule line: the minutes it runs at and its command text."""

    minutes: frozenset[int]
    command: str
    kind: Kind = Kind.CRON

    def due(self, minute: int) -> bool:
        """Whether cron starts this line at the simulated ``minute``."""
        return minute % 60 in self.minutes


@dataclass(frozen=True)
class Crontab:
    """The variable assignments and the schedule lines of a crontab, in file order."""

    env: Mapping[str, str]
    lines: tuple[CronLine, ...]

    @classmethod
    def parse(cls, text: str, replace: Mapping[str, str] | None = None) -> Crontab:
        """Parse ``text``; each key of ``replace`` found in a command is replaced (the
        crontab's example label by the test's). Refuses hour/day fields other than ``*``:
        the simulation walks minutes only."""
        env: dict[str, str] = {}
        lines: list[CronLine] = []
        for n, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            head = line.split(None, 1)[0]
            if "=" in head and not head[0].isdigit() and head[0] != "*":
                name, _, value = line.partition("=")
                env[name.strip()] = value.strip()
                continue
            fields = line.split(None, 5)
            if len(fields) < 6 or any(f != "*" for f in fields[1:5]):
                raise ValueError(f"crontab line {n}: only the minute field may be set: {raw}")
            command = fields[5]
            for old, new in (replace or {}).items():
                command = command.replace(old, new)
            lines.append(CronLine(parse_minutes(fields[0]), command))
        return cls(env, tuple(lines))

    def with_line(self, line: CronLine) -> Crontab:
        """The same crontab and one more line (e.g. the pipeline's own)."""
        return Crontab(self.env, (*self.lines, line))

    def due(self, minute: int) -> list[CronLine]:
        """The lines cron starts at ``minute``, in file order."""
        return [c for c in self.lines if c.due(minute)]


@dataclass(frozen=True)
class Ran:
    """One command run: when (simulated minute), who, the text, and what came of it."""

    minute: int
    kind: Kind
    command: str
    rc: int
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    trace: tuple[str, ...] = ()
    """Every command bash ran for it, variables expanded (xtrace lines without the +)."""


Runner = Callable[[str, Mapping[str, str]], tuple[int, str, str, tuple[str, ...]]]
"""Runs one command text with an environment: exit code, stdout, stderr, trace."""


def shell_runner(timeout: float = 600.0) -> Runner:
    """Run a command text with ``bash -c`` (cron's SHELL) and collect bash's xtrace of
    it through a private file descriptor, apart from the command's own stderr."""

    def run(command: str, env: Mapping[str, str]) -> tuple[int, str, str, tuple[str, ...]]:
        with tempfile.NamedTemporaryFile("r", prefix="rbcron", suffix=".trace") as tr:
            script = f"exec 9>{_quote(tr.name)}; BASH_XTRACEFD=9; set -x\n{command}"
            p = subprocess.run(["bash", "-c", script], env=dict(env), capture_output=True,
                               text=True, timeout=timeout)
            trace = tuple(_xtrace(tr.read()))
        return p.returncode, p.stdout, p.stderr, trace

    return run


def _quote(path: str) -> str:
    return "'" + path.replace("'", "'\\''") + "'"


def _xtrace(text: str) -> Iterable[str]:
    for line in text.splitlines():
        stripped = line.lstrip("+")
        if stripped != line and stripped.strip():
            yield stripped.strip()


def cron_env(crontab: Crontab, overrides: Mapping[str, str],
             base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Cron's environment for the lines: HOME, LOGNAME, a short PATH, the crontab's
    variables, then ``overrides`` (where the venv and the config are in this test). No
    SSH_ASKPASS and no DISPLAY: a line that needed a token could not get one."""
    src = os.environ if base is None else base
    env = {k: src[k] for k in ("HOME", "LOGNAME", "USER", "LANG", "TZ") if k in src}
    env["PATH"] = "/usr/bin:/bin"
    env.update(crontab.env)
    env.update(overrides)
    for k in ("SSH_ASKPASS", "SSH_ASKPASS_REQUIRE", "DISPLAY", "SSH_AUTH_SOCK"):
        env.pop(k, None)
    return env


@dataclass
class Step:
    """A scenario event: runs once, at the first minute ``when`` is true, before that
    minute's lines (the steps of a scenario fire in their order, one after another)."""

    name: str
    when: Callable[[Campaign], bool]
    do: Callable[[Campaign], object]


@dataclass
class Campaign:
    """Cron, minute by simulated minute, with a scenario (see the module doc)."""

    crontab: Crontab
    env: Mapping[str, str]
    runner: Runner = field(default_factory=shell_runner)
    steps: Sequence[Step] = ()
    minute: int = 0
    ran: list[Ran] = field(default_factory=list)
    fired: dict[str, int] = field(default_factory=dict)
    """Step name -> the simulated minute it fired at."""

    def run_command(self, command: str, kind: Kind,
                    env: Mapping[str, str] | None = None) -> Ran:
        """Run one command now and record it."""
        t0 = time.monotonic()
        rc, out, err, trace = self.runner(command, self.env if env is None else env)
        ran = Ran(self.minute, kind, command, rc, out, err, time.monotonic() - t0, trace)
        self.ran.append(ran)
        return ran

    def operator(self, command: str, env: Mapping[str, str] | None = None) -> Ran:
        """A person types ``command`` (at the simulated minute now)."""
        return self.run_command(command, Kind.OPERATOR, env)

    def tick(self) -> None:
        """One simulated minute: the next step if its time has come, then the due lines."""
        pending = [s for s in self.steps if s.name not in self.fired]
        if pending and pending[0].when(self):
            self.fired[pending[0].name] = self.minute
            pending[0].do(self)
        for line in self.crontab.due(self.minute):
            self.run_command(line.command, line.kind)
        self.minute += 1

    def run(self, done: Callable[[Campaign], bool], max_minutes: int) -> bool:
        """Tick until every step fired and ``done`` holds (True), or ``max_minutes`` of
        simulated time have passed (False)."""
        end = self.minute + max_minutes
        while self.minute < end:
            if len(self.fired) == len(self.steps) and done(self):
                return True
            self.tick()
        return False

    def since(self, step: str) -> int:
        """Simulated minutes since ``step`` fired (-1 when it has not)."""
        return self.minute - self.fired[step] if step in self.fired else -1

    def of(self, kind: Kind) -> list[Ran]:
        """The commands ``kind`` ran, in order."""
        return [r for r in self.ran if r.kind is kind]

    def commands_run(self) -> list[str]:
        """Every command any line or person ran (expanded), in order."""
        return [t for r in self.ran for t in (r.trace or (r.command,))]
