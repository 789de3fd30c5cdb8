"""What every remotetool/control-tool command receives as ``ctx.obj``.

Commands stay thin: they parse options, call the library, and print through
``AppContext.emit`` so that ``--json`` and ``--quiet`` behave the same everywhere.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

import click

from remotebridge import config as config_mod

if TYPE_CHECKING:  # imported when used: --help and usage errors stay fast
    from rich.console import Console
    from sqlalchemy import Engine


@dataclass
class AppContext:
    """Global options and lazily built shared objects."""

    config_path: str | None = None
    db_url: str | None = None
    json: bool = False
    quiet: bool = False

    @cached_property
    def console(self) -> Console:
        """Rich console on stdout (imported on first use)."""
        from rich.console import Console

        return Console(stderr=False)

    @cached_property
    def err(self) -> Console:
        """Rich console on stderr (imported on first use)."""
        from rich.console import Console

        return Console(stderr=True)

    @cached_property
    def config(self) -> config_mod.Config:
        """The effective configuration (--config, $REMOTEBRIDGE_CONFIG, XDG)."""
        return config_mod.load(self.config_path, db_override=self.db_url, warn=_warn)

    @cached_property
    def db_source(self) -> str:
        """Where the database URL comes from, for messages that ask to fix it."""
        if self.db_url:
            return "--db"
        if os.environ.get("REMOTEBRIDGE_DB"):
            return "$REMOTEBRIDGE_DB"
        if self.config.database.url:
            return f"[database] url in {self.config.path}"
        return "the default location"

    @cached_property
    def engine(self) -> Engine:
        """The database engine; the schema is checked to be current on first use."""

        from remotebridge.db.engine import make_engine, sqlite_file
        from remotebridge.db.migrate import SCHEMA_REVISION, require_current
        from remotebridge.db.statemachine import set_lease
        from remotebridge.db.url import parse_url
        from remotebridge.errors import SchemaOutdated

        text = self.config.database.effective_url()
        database = sqlite_file(parse_url(text, self.db_source))
        if database is not None and not database.exists() \
                and (not self.config.database.url or database.parent.is_dir()):
            # connecting would create an empty file: a failing command changes nothing
            raise SchemaOutdated(None, SCHEMA_REVISION)
        engine = make_engine(text, echo=self.config.database.echo, source=self.db_source)
        require_current(engine)
        set_lease(timedelta(seconds=self.config.database.lease_seconds))
        return engine

    def raw_engine(self) -> Engine:
        """An engine without the schema check (for ``db upgrade``); only the default
        SQLite location has its folder created."""
        from remotebridge.db.engine import make_engine

        return make_engine(self.config.database.effective_url(), echo=self.config.database.echo,
                           create_folder=not self.config.database.url, source=self.db_source)

    @property
    def interactive(self) -> bool:
        """True at a terminal (rich tables, progress bars); False in cron and pipes."""
        return sys.stdout.isatty() and not self.json

    def emit(self, data: Any, human: str | None = None, *, markup: bool = False) -> None:
        """Print ``data`` as JSON with --json, else ``human`` (unless --quiet).

        ``human`` is plain text unless ``markup`` says the caller escaped every data part:
        a remote note holding ``[...]`` must print as it is, not vanish as a style tag."""
        if self.json:
            click.echo(json.dumps(data, indent=2, default=str, sort_keys=False))
        elif human and not self.quiet:
            self.console.print(human, highlight=False, soft_wrap=True, markup=markup)

    def info(self, text: str, *, markup: bool = False) -> None:
        """A human-only line (suppressed by --quiet and --json); plain text unless
        ``markup`` (see :meth:`emit`)."""
        if not self.quiet and not self.json:
            self.console.print(text, highlight=False, soft_wrap=True, markup=markup)

    def line(self, text: str) -> None:
        """A plain line for pipes, tabs kept (rich would expand them into spaces);
        suppressed by --quiet and --json."""
        if not self.quiet and not self.json:
            click.echo(text)


def _warn(message: str) -> None:
    """One warning line on stderr, in the format of the error lines."""
    ctx = click.get_current_context(silent=True)
    prog = (ctx.find_root().info_name if ctx else None) or "remotetool"
    click.echo(f"{prog}: warning: {message}", err=True)


pass_app = click.make_pass_decorator(AppContext)
