"""The test tiers: which tests need the site or PostgreSQL, and that test modules share
helpers only through tests/support."""

from __future__ import annotations

import re
from pathlib import Path

from tests import conftest

TESTS = Path(conftest.__file__).parent


class FakeItem:
    """Just what the marking hook reads and writes."""

    def __init__(self, path: Path, fixturenames: list[str]) -> None:
        self.path = path
        self.fixturenames = fixturenames
        self.marks: list[str] = []

    def add_marker(self, mark: object) -> None:
        self.marks.append(mark.name)  # type: ignore[attr-defined]


def marks_of(relpath: str, *fixtures: str) -> list[str]:
    item = FakeItem(TESTS / relpath, list(fixtures))
    conftest.pytest_collection_modifyitems(None, [item])  # type: ignore[arg-type, list-item]
    return item.marks


def test_site_mark_by_folder_and_by_fixture() -> None:
    assert marks_of("site/test_site.py") == ["site"]
    assert marks_of("integration/test_exec_site.py", "engine") == ["site"]
    assert marks_of("unit/test_x.py", "tmp_path", "test_site") == ["site"]
    assert marks_of("unit/test_x.py", "site_alone") == ["site"]
    assert marks_of("unit/test_x.py", "engine", "tmp_path") == []


def test_postgres_mark_on_the_postgresql_param_and_pg_url() -> None:
    sqlite, pg = conftest.DB_KINDS
    assert sqlite == "sqlite"
    assert pg.values == ("postgresql",) and [m.name for m in pg.marks] == ["postgres"]
    assert marks_of("unit/test_x.py", "pg_url") == ["postgres"]


def test_test_modules_import_helpers_only_from_support() -> None:
    pattern = re.compile(r"^\s*(from|import) tests\.(unit|integration|site\.test_|conftest)",
                         re.M)
    offenders = [str(p.relative_to(TESTS)) for p in TESTS.rglob("*.py")
                 if p.name != "test_tiers.py" and pattern.search(p.read_text())]
    assert offenders == []
