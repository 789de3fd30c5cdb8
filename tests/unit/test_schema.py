"""The migrations, the models and the reviewable DDL in schema/ agree."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from remotebridge.db import Base
from remotebridge.db.migrate import (
    SCHEMA_REVISION,
    current_revision,
    head_revision,
    offline_sql,
)

SCHEMA = Path(__file__).resolve().parents[2] / "schema"


def test_upgraded_database_matches_the_models(engine: Engine) -> None:
    assert head_revision() == SCHEMA_REVISION, "bump SCHEMA_REVISION with a new migration"
    assert current_revision(engine) == head_revision()
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models changed without a migration: {diff}"


@pytest.mark.parametrize(("name", "url"), [("postgresql", "postgresql+psycopg2://"),
                                           ("sqlite", "sqlite://")])
def test_schema_files_are_current(name: str, url: str) -> None:
    text = (SCHEMA / f"{name}.sql").read_text()
    body = text.split("\n", 2)[2]
    assert body == offline_sql(url), f"run ops/dev/regen-schema to refresh schema/{name}.sql"
