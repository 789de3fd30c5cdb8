"""The click group class shared by remotetool and control-tool.

It is the one place where library errors become a message on stderr and an exit
code: ``remotetool: error: <what failed>`` then ``  hint: <what to do next>``.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from remotebridge.cli.context import AppContext
from remotebridge.cli.exitcodes import ExitCode, exit_code_for
from remotebridge.errors import BridgeError


class BridgeGroup(click.Group):
    """A click group that turns BridgeError into a one-line message and exit code.

    ``lazy`` maps command names to ``"module:attribute"``: such commands are
    imported only when they run (or when --help lists them), so ``remotetool list``
    from cron does not pay for importing exec, poll, transfer and prepare.
    """

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None,
                 lazy_help: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})
        self.lazy_help = dict(lazy_help or {})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of --help; a lazy command with a ``lazy_help`` line is listed
        without importing its module."""
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy_help and name not in self.commands:
                rows.append((name, self.lazy_help[name]))
                continue
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(formatter.width - 6 - len(name))))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, attr = self.lazy[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BridgeError as exc:
            _report(ctx, exc)
            ctx.exit(int(exit_code_for(exc)))
        except OSError as exc:
            # A file or folder we were told to use is not usable (permissions, a
            # regular file where a folder should be, a full disk): say which, no traceback.
            where = f": {exc.filename!r}" if exc.filename else ""
            _report(ctx, BridgeError(f"{exc.strerror or exc}{where}",
                                     hint="check that the path exists and is writable"))
            ctx.exit(int(ExitCode.FAILURE))
        except KeyboardInterrupt:
            click.echo(f"{ctx.find_root().info_name}: interrupted", err=True)
            ctx.exit(130)


def _report(ctx: click.Context, exc: BridgeError) -> None:
    prog = ctx.find_root().info_name or "remotetool"
    click.echo(f"{prog}: error: {exc.message}", err=True)
    if exc.hint:
        click.echo(f"  hint: {exc.hint}", err=True)


def global_options(func: Any) -> Any:
    """--db, --config, --json, --quiet: the options every tool takes before its command."""
    func = click.option("--quiet", "-q", is_flag=True, help="Print nothing but errors.")(func)
    func = click.option("--json", "as_json", is_flag=True,
                        help="Print machine-readable JSON on stdout.")(func)
    func = click.option("--config", "config_path", metavar="FILE",
                        help="Configuration file (default: $REMOTEBRIDGE_CONFIG, "
                             "else ~/.config/remotebridge/config.toml).")(func)
    func = click.option("--db", "db_url", metavar="URL",
                        help="Database URL, e.g. postgresql://user@host/db "
                             "(default: [database] url, else embedded SQLite).")(func)
    return func


def make_context(db_url: str | None, config_path: str | None, as_json: bool,
                 quiet: bool) -> AppContext:
    """The AppContext for the global options."""
    return AppContext(config_path=config_path, db_url=db_url, json=as_json, quiet=quiet)
