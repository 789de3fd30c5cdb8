"""Schema migrations (alembic) and the check that the schema matches the code.

Every command checks the schema on first use of the database; that check reads
``alembic_version`` with one plain query against ``SCHEMA_REVISION`` so that a
cron command does not import alembic (a test keeps the constant equal to the
newest migration). alembic itself is imported only to upgrade or emit DDL.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, inspect, text

from remotebridge.db.engine import _translate_errors
from remotebridge.errors import SchemaOutdated

# the newest migration; defined with the cron tick's driver-only check (no SQLAlchemy)
from remotebridge.quickdb import SCHEMA_REVISION

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str = "sqlite://") -> AlembicConfig:
    """An alembic Config pointing at our migrations (no alembic.ini needed)."""
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The newest migration this code knows, as alembic computes it."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with _translate_errors(engine), engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Create or upgrade the schema to head; returns (before, after)."""
    from alembic import command

    before = current_revision(engine)
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with _translate_errors(engine), engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return before, head_revision()


def require_current(engine: Engine) -> None:
    """Raise SchemaOutdated unless the database is exactly at SCHEMA_REVISION."""
    current = current_revision(engine)
    if current != SCHEMA_REVISION:
        raise SchemaOutdated(current, SCHEMA_REVISION)


def offline_sql(dialect_url: str) -> str:
    """The DDL of every migration as plain SQL for one dialect (for schema/)."""
    from alembic import command

    cfg = alembic_config(dialect_url)
    buf = io.StringIO()
    cfg.output_buffer = buf
    command.upgrade(cfg, "head", sql=True)
    return buf.getvalue()
