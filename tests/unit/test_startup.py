"""Start-up: --help and usage errors import no database, migration, table or template code.

Each case runs in a fresh interpreter and lists the heavy modules it ended up importing
(speed itself is measured in bench/bench_startup.py, not here).
"""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

HEAVY = ("sqlalchemy", "alembic", "jinja2", "rich.table", "psycopg2", "sqlite3")
PROBE = """
import json, sys
sys.argv = [{prog!r}, *{args!r}]
from {module} import main
try:
    main()
except SystemExit as exc:
    code = exc.code
heavy = sorted({{m for m in sys.modules for h in {heavy!r} if m == h or m.startswith(h + ".")}})
print(json.dumps({{"code": code, "heavy": heavy}}), file=sys.stderr)
"""


def _probe(module: str, prog: str, args: list[str]) -> dict[str, object]:
    src = PROBE.format(module=module, prog=prog, args=args, heavy=HEAVY)
    proc = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True,
                          timeout=120, check=False)
    return json.loads(proc.stderr.strip().splitlines()[-1])


@pytest.mark.parametrize(("module", "prog", "args", "code"), [
    ("remotebridge.cli.remotetool", "remotetool", ["--help"], 0),
    ("remotebridge.cli.remotetool", "remotetool", ["definebyquery", "--stage", "chip"], 2),
    ("remotebridge.cli.remotetool", "remotetool", ["no-such-command"], 2),
    ("remotebridge.cli.remotetool", "remotetool", ["exec", "--help"], 0),
    ("remotebridge.cli.remotetool", "remotetool", ["poll", "--bogus"], 2),
    ("remotebridge.cli.remotetool", "remotetool", ["--db", "x", "exec", "-n", "0"], 2),
    ("remotebridge.cli.control", "control-tool", ["--help"], 0),
    ("remotebridge.cli.control", "control-tool", ["start", "--bogus"], 2),
])
def test_help_and_usage_errors_import_nothing_heavy(module: str, prog: str, args: list[str],
                                                    code: int) -> None:
    got = _probe(module, prog, args)
    assert got == {"code": code, "heavy": []}


def test_lazy_help_lines_match_the_commands() -> None:
    """--help lists lazy commands from LAZY_HELP; it must say what the command says."""
    from remotebridge.cli.remotetool import LAZY, LAZY_HELP, main

    assert set(LAZY_HELP) == set(LAZY)
    ctx = click.Context(main)
    for name, line in LAZY_HELP.items():
        cmd = main.get_command(ctx, name)
        assert cmd is not None
        assert cmd.get_short_help_str(200) == line, name
