"""Shared fixtures: the same tests run on SQLite and on PostgreSQL; the test tiers.

PostgreSQL is the production database and must be reachable (default
``postgresql://postgres@127.0.0.1:5432/test``, override with $RB_TEST_PG_URL): a
suite that cannot reach it FAILS, it does not skip. Each test session creates its
own scratch database on that server and drops it at the end.

Tiers (marks, see README "Running the tests"): ``site`` for every test that needs root
and the test site (tests/site, tests/integration, or any test asking for ``test_site``),
``postgres`` for every test on PostgreSQL. ``pytest -m "not site"`` needs neither root
nor the site. Nothing is ever skipped for a missing PostgreSQL or site: such a test fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from remotebridge.db.engine import make_engine
from remotebridge.db.migrate import upgrade
from tests.site.fixtures import site_alone, test_site  # noqa: F401 - fixtures for every folder
from tests.support.db import PG_ADMIN_URL, truncate_pg

DB_KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]

SITE_FOLDERS = ("site", "integration")
"""Every test in these folders of tests/ needs root and the test site."""
SITE_FIXTURES = {"test_site", "site_alone"}
"""A test elsewhere that asks for one of these needs them too."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tiers: ``site`` (needs root and the test site) by folder or by fixture, and
    ``postgres`` on every test that asks for the PostgreSQL database."""
    here = Path(__file__).parent
    for item in items:
        folder = item.path.relative_to(here).parts[0] if item.path.is_relative_to(here) else ""
        if folder in SITE_FOLDERS or SITE_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.site)
        if "pg_url" in item.fixturenames:
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (dropped afterwards)."""
    admin = make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    name = f"rb_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # noqa: BLE001 - any failure here means "no PostgreSQL"
        pytest.fail(
            f"PostgreSQL is required for the test suite and is not reachable at {PG_ADMIN_URL}: "
            f"{exc}. Start it (see README 'Running the tests') or set RB_TEST_PG_URL.",
            pytrace=False,
        )
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"
        ), {"n": name})
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


@pytest.fixture(params=DB_KINDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL with a current, empty schema: SQLite file or PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("db") / "rb.db"
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        return url
    url = request.getfixturevalue("pg_url")
    truncate_pg(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url`` (disposed after the test)."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def isolated_env(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """XDG dirs and config pointed into tmp_path, so nothing touches the real home."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path) + "/data")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path) + "/config")
    monkeypatch.delenv("REMOTEBRIDGE_CONFIG", raising=False)
    monkeypatch.delenv("REMOTEBRIDGE_DB", raising=False)
    return str(tmp_path)
