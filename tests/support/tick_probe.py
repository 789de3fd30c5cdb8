"""Run one ``remotetool`` command in a fresh interpreter and report what it imported.

Cron's empty ticks must not pay for heavy imports (SQLAlchemy, alembic, Jinja2, rich...):
the probe runs ``remotetool`` through its ``main`` in a child Python, then prints on
stderr its exit code and which of the named modules ended up in ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
from remotebridge.cli.remotetool import main
try:
    main(sys.argv[1:], prog_name="remotetool")
except SystemExit as exc:
    code = exc.code
heavy = sorted({{m for m in sys.modules for h in {heavy!r} if m == h or m.startswith(h + ".")}})
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def probe(db_url: str, tmp: Path, args: list[str], heavy: tuple[str, ...],
          site_extra: str = "") -> tuple[dict[str, Any], Any]:
    """``({"code": exit code, "heavy": heavy modules imported}, JSON stdout or None)``
    of ``remotetool --db DB --config C --json ARGS`` with a local site ``demo`` (its
    table gets ``site_extra`` lines)."""
    cfg = tmp / "rb.toml"
    cfg.write_text('[site.demo]\nkind = "local"\nscheduler = "local"\n'
                   f'local_root = "{tmp}/remote"\n{site_extra}')
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CONFIG_HOME": str(tmp / "xc"),
           "XDG_DATA_HOME": str(tmp / "xd")}
    proc = subprocess.run([sys.executable, "-c", PROBE.format(heavy=heavy), "--db", db_url,
                           "--config", str(cfg), "--json", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    return (json.loads(proc.stderr.strip().splitlines()[-1]),
            json.loads(proc.stdout) if proc.stdout.strip() else None)
