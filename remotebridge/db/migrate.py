"""Schema migrations (alembic) and the check that the schema matches the code."""

from __future__ import annotations

import io
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from remotebridge.db.engine import _translate_errors
from remotebridge.errors import SchemaOutdated

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str = "sqlite://") -> AlembicConfig:
    """An alembic Config pointing at our migrations (no alembic.ini needed)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest migration this code knows."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with _translate_errors(engine), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema to head; returns (before, after)."""
    before = current_revision(engine)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with _translate_errors(engine), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before, head_revision()


def require_current(engine: Engine) -> None:
    """Raise SchemaOutdated unless the database is exactly at head."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutdated(current, head)


def offline_sql(dialect_url: str) -> str:
    """The DDL of every migration as plain SQL for one dialect (for schema/)."""
    cfg = alembic_config(dialect_url)
    buf = io.StringIO()
    cfg.output_buffer = buf
    command.upgrade(cfg, "head", sql=True)
    return buf.getvalue()
