"""Shared fixtures: the same tests run on SQLite and on PostgreSQL.

PostgreSQL is the production database and must be reachable (default
``postgresql://postgres@127.0.0.1:5432/test``, override with $RB_TEST_PG_URL): a
suite that cannot reach it FAILS, it does not skip. Each test session creates its
own scratch database on that server and drops it at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine, insert, text
from sqlalchemy.engine import make_url

from remotebridge.db import Base
from remotebridge.db.engine import make_engine
from remotebridge.db.migrate import upgrade
from remotebridge.db.pipeline import ChipRun, RawExp

PG_ADMIN_URL = os.environ.get("RB_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
DB_KINDS = ["sqlite", "postgresql"]


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


def _truncate_pg(url: str) -> None:
    engine = make_engine(url)
    names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


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
    _truncate_pg(url)
    return url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url`` (disposed after the test)."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def add_chipruns(engine: Engine, label: str, count: int, *, start: int = 1,
                 state: str = "new") -> list[int]:
    """Insert ``count`` exposures with one chipRun each; returns the chip_ids."""
    t0 = datetime(2026, 1, 1)
    exps = [{"exp_id": start + i, "exp_name": f"o{start + i:07d}", "dateobs":
             t0 + timedelta(minutes=i), "filter": "r", "exp_time": 30.0, "ra": 10.0,
             "decl": 20.0, "camera": "DEMOCAM", "airmass": 1.0, "obs_mode": "SURVEY"}
            for i in range(count)]
    runs = [{"chip_id": start + i, "exp_id": start + i, "label": label, "state": state,
             "workdir": f"/data/{label}", "data_group": label, "fault": 0,
             "registered": t0, "end_stage": "chip", "tess_id": ""}
            for i in range(count)]
    with engine.begin() as conn:
        if exps:
            conn.execute(insert(RawExp), exps)
            conn.execute(insert(ChipRun), runs)
    return [start + i for i in range(count)]


@pytest.fixture
def isolated_env(tmp_path: os.PathLike[str], monkeypatch: pytest.MonkeyPatch) -> str:
    """XDG dirs and config pointed into tmp_path, so nothing touches the real home."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path) + "/data")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path) + "/config")
    monkeypatch.delenv("REMOTEBRIDGE_CONFIG", raising=False)
    monkeypatch.delenv("REMOTEBRIDGE_DB", raising=False)
    return str(tmp_path)


def _load_site_plugin() -> object:
    """The test-site fixtures (tests/site/fixtures.py), loaded once under one module name
    so that tests/site/conftest.py and this file share the same session fixture."""
    import importlib.util
    import sys
    from pathlib import Path

    name = "rbsite_test_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("site") / "fixtures.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


test_site = _load_site_plugin().test_site  # type: ignore[attr-defined]
