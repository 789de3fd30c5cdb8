"""rbhelper.py runs on the site's own (often old) python: it must stay Python 3.6 code.

No Python 3.6 interpreter is at hand, so the check is static (best effort): the
source must parse with the 3.6 grammar and use none of the newer features listed
in :data:`NEWER` that the grammar check cannot see.
"""

from __future__ import annotations

import ast

import pytest

from remotebridge.remote import helper_path
from tests.support.py36 import py36_problems


def test_rbhelper_is_python36_code() -> None:
    assert py36_problems(helper_path().read_text(encoding="utf-8")) == []


def test_rbhelper_states_its_minimum_python() -> None:
    doc = ast.get_docstring(ast.parse(helper_path().read_text(encoding="utf-8"))) or ""
    assert "3.6" in doc


@pytest.mark.parametrize(("snippet", "why"), [
    ("import datetime\nx = datetime.datetime.now(datetime.UTC)\n", "UTC"),
    ("from datetime import UTC\n", "UTC"),
    ("from __future__ import annotations\n", "annotations"),
    ("def f(a: int | None) -> None:\n    pass\n", "X | Y"),
    ("def f(a: list[int]) -> None:\n    pass\n", "generic"),
    ("if (n := 1):\n    pass\n", "3.6 syntax"),
    ("match x:\n    case 1:\n        pass\n", "3.6 syntax"),
    ("p.add_subparsers(dest='cmd', required=True)\n", "required"),
])
def test_checker_catches_newer_constructs(snippet: str, why: str) -> None:
    problems = py36_problems(snippet)
    assert any(why in p for p in problems), problems


def test_checker_catches_utc_in_the_real_helper() -> None:
    src = helper_path().read_text(encoding="utf-8")
    bad = src.replace("datetime.timezone.utc", "datetime.UTC")
    assert bad != src
    assert any("UTC" in p for p in py36_problems(bad))


def test_rbhelper_still_runs() -> None:
    import runpy

    mod = runpy.run_path(str(helper_path()), run_name="rbhelper_test")
    assert mod["now_iso"]().endswith("+00:00")
    with pytest.raises(SystemExit):
        mod["parser"]().parse_args([])  # a sub-command is still required


class _RunLocally:
    """A link that runs every command here (site check's helper row)."""

    host = "fe-test"

    def __init__(self) -> None:
        self.argvs: list[list[str]] = []

    def check(self) -> bool:
        return True

    def run(self, argv: list[str], **_kw: object) -> object:
        import subprocess

        from remotebridge.ssh import Result

        self.argvs.append(list(argv))
        r = subprocess.run(argv, capture_output=True, timeout=30)
        return Result(r.returncode, r.stdout, r.stderr)


def test_site_check_helper_runs_remote_python(tmp_path: object) -> None:
    import sys
    from typing import Any, cast

    from remotebridge.config import SchedulerKind, SiteConfig
    from remotebridge.sitecheck import check_frontend

    link = _RunLocally()
    site = SiteConfig(scheduler=SchedulerKind.LOCAL, remote_root=str(tmp_path),
                      remote_python=sys.executable)
    rows = {r.check: r for r in check_frontend(cast(Any, link), site)}
    assert rows["helper"].ok and rows["helper"].detail.startswith("Python 3.")
    assert any(sys.executable in argv for argv in link.argvs)
    assert not any("python3 --version" in " ".join(a) for a in link.argvs)
