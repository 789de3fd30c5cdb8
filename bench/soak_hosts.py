"""One soak "host": the operator's cron lines (ops/crontab.example) run in a loop.

Run as its own process (``python bench/soak_hosts.py --name A --config C --label L
--state DIR --stop FILE``) in its own session, so that each host has its own process
tree; its state folder is ``XDG_STATE_HOME``. Every command's outcome is appended to
``DIR/commands.jsonl`` (name, argv, exit code, start, seconds, last stderr line).
The loop ends when the stop file exists.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("chip", "cam", "warp", "stack")


def cron_lines(label: str) -> list[list[str]]:
    """The crontab's remotetool lines (define, prepare, exec, poll) and the pipeline's
    advance, which defines the next stage's pipeline runs."""
    lines = [["definebyquery", "--label", label, "--stage", s, "--limit", "2000"]
             for s in STAGES]
    lines += [["prepare", "--label", label], ["exec", "--label", label],
              ["poll", "--label", label], ["demo", "advance", "--label", label]]
    return [["--quiet", *line] for line in lines]


def run_line(tool: str, args: list[str], log: Path, host: str, timeout: float) -> int:
    """Run one line like cron would; record it."""
    t0 = time.time()
    try:
        r = subprocess.run([tool, *args], capture_output=True, text=True, timeout=timeout,
                           check=False)
        rc, err = r.returncode, (r.stderr.strip().splitlines() or [""])[-1]
    except subprocess.TimeoutExpired:
        rc, err = -999, f"timeout after {timeout:.0f}s"
    row = {"host": host, "argv": args, "rc": rc, "t0": t0,
           "seconds": round(time.time() - t0, 2), "err": err[-300:]}
    with log.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")
    return rc


def main(argv: list[str] | None = None) -> int:
    """The loop of one host."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--name", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--stop", required=True)
    ap.add_argument("--tick", type=float, default=1.0)
    a = ap.parse_args(argv)
    state = Path(a.state)
    state.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_STATE_HOME"] = str(state)
    os.environ["REMOTEBRIDGE_CONFIG"] = a.config
    tool = str(Path(sys.executable).parent / "remotetool")
    log = state / "commands.jsonl"
    while not Path(a.stop).exists():
        for line in cron_lines(a.label):
            if Path(a.stop).exists():
                break
            run_line(tool, line, log, a.name, timeout=300)
        time.sleep(a.tick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
