"""One soak "host": the shipped crontab (ops/crontab.example) run by the campaign
driver (tests/support/campaign.py), one simulated minute after another, in real time
(the lines of a minute one after another, then ``--tick`` seconds of sleep).

Run as its own process (``python bench/soak_hosts.py --name A --config C --label L
--state DIR --stop FILE``) in its own session, so that each host has its own process
tree; its state folder is ``XDG_STATE_HOME`` (and its data and config homes are beside
it). Each line runs as cron runs it (``bash -c``, cron's small environment, no askpass).
Every command's outcome is appended to ``DIR/commands.jsonl`` (host, command, exit
code, start, seconds, last stderr line). The loop ends when the stop file exists.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from _common import setup_path

setup_path()

from tests.support.campaign import (  # noqa: E402
    CRONTAB,
    Campaign,
    CronLine,
    Crontab,
    Kind,
    Runner,
    cron_env,
    parse_minutes,
    shell_runner,
)

CRONTAB_LIMIT = 2000
"""The crontab's ``definebyquery --limit`` (replaced by ``--limit`` when given)."""


def advance_line(label: str) -> CronLine:
    """The pipeline's own periodic advance (it defines the next stage's runs)."""
    return CronLine(parse_minutes("4-59/5"),
                    f"$RB/remotetool --quiet demo advance --label {label}", Kind.PIPELINE)


def logging_runner(log: Path, host: str, timeout: float) -> Runner:
    """The driver's shell runner, each command appended to ``log`` as it ends."""
    inner = shell_runner(timeout)

    def run(command: str, env: Mapping[str, str]) -> tuple[int, str, str, tuple[str, ...]]:
        t0 = time.time()
        try:
            rc, out, err, trace = inner(command, env)
        except Exception as exc:  # a timeout: recorded, the loop goes on like cron
            rc, out, err, trace = -999, "", f"{type(exc).__name__}: {exc}", ()
        row = {"host": host, "command": command, "rc": rc, "t0": t0,
               "seconds": round(time.time() - t0, 2),
               "err": (err.strip().splitlines() or [""])[-1][-300:]}
        with log.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        return rc, out, err, trace

    return run


def main(argv: list[str] | None = None) -> int:
    """The loop of one host."""
    ap = argparse.ArgumentParser(description=__doc__)
    for name in ("--name", "--config", "--label", "--state", "--stop"):
        ap.add_argument(name, required=True)
    ap.add_argument("--tick", type=float, default=0.5, help="real seconds between minutes")
    ap.add_argument("--limit", type=int, default=0,
                    help="components per run for definebyquery (0: the crontab's own)")
    a = ap.parse_args(argv)
    state = Path(a.state)
    state.mkdir(parents=True, exist_ok=True)
    replace = {"PV3": a.label}
    if a.limit:
        replace[f"--limit {CRONTAB_LIMIT}"] = f"--limit {a.limit}"
    text = CRONTAB.read_text()
    if a.limit and f"--limit {CRONTAB_LIMIT}" not in text:
        raise SystemExit(f"soak host: no 'definebyquery --limit {CRONTAB_LIMIT}' in {CRONTAB}")
    tab = Crontab.parse(text, replace=replace)
    tab = tab.with_line(advance_line(a.label))
    env = cron_env(tab, {"RB": str(Path(sys.executable).parent),
                         "REMOTEBRIDGE_CONFIG": a.config,
                         "XDG_STATE_HOME": str(state / "state"),
                         "XDG_DATA_HOME": str(state / "data"),
                         "XDG_CONFIG_HOME": str(state / "config")})
    cron = Campaign(tab, env, runner=logging_runner(state / "commands.jsonl", a.name, 300))
    while not Path(a.stop).exists():
        cron.tick()
        time.sleep(a.tick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
