"""The runner ships with the job like rbhelper.py: Python 3.6 code, standard library only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.support.py36 import py36_problems

REMOTE = Path(__file__).resolve().parents[2] / "remotebridge" / "remote"
SHIPPED = ["rbrunner.py", "rbdispatch.py", "rbhelper.py", "rbtransfer.py"]


@pytest.mark.parametrize("name", SHIPPED)
def test_runner_files_are_python36_code(name: str) -> None:
    assert py36_problems((REMOTE / name).read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("name", SHIPPED)
def test_runner_files_state_their_minimum_python(name: str) -> None:
    doc = ast.get_docstring(ast.parse((REMOTE / name).read_text(encoding="utf-8"))) or ""
    assert "3.6" in doc


@pytest.mark.parametrize("name", SHIPPED)
def test_runner_files_import_the_standard_library_only(name: str) -> None:
    tree = ast.parse((REMOTE / name).read_text(encoding="utf-8"))
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import)
            for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom) and n.module}
    assert mods <= set(sys.stdlib_module_names), mods - set(sys.stdlib_module_names)


@pytest.mark.parametrize("snippet", [
    "x = 1\ny = f'{x=}'\n",
    "if (n := 1):\n    pass\n",
    "from __future__ import annotations\n",
])
def test_checker_catches_what_the_runner_must_not_use(snippet: str) -> None:
    assert py36_problems(snippet)


def test_checker_catches_a_walrus_in_the_real_runner() -> None:
    src = (REMOTE / "rbrunner.py").read_text(encoding="utf-8")
    bad = src.replace("msgs = self.inbox.receive()", "if (msgs := self.inbox.receive()):\n"
                      "                pass", 1)
    assert bad != src and py36_problems(bad)
