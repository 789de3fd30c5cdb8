"""``remotetool site check [--site S] [--json]``: the site's health, one row per check.

Exit codes: 0 when every check passed, 1 when some failed, 75 when no front end
can run a command (the link is down: the key-card holder must log in again).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from remotebridge import config as config_mod
from remotebridge.cli.exitcodes import ExitCode
from remotebridge.sitecheck import CheckRow, check_site, describe


def _want_json(ctx: click.Context, flag: bool) -> bool:
    obj: Any = ctx.obj
    return flag or bool(getattr(obj, "json", False))


def _load_config(ctx: click.Context) -> config_mod.Config:
    obj: Any = ctx.obj
    if obj is not None and hasattr(obj, "config"):
        cfg: config_mod.Config = obj.config
        return cfg
    return config_mod.load(getattr(obj, "config_path", None))


_WORDS = {True: "ok", False: "FAIL", None: "skip"}


def _print_rows(ctx: click.Context, title: str, rows: list[CheckRow]) -> None:
    """A rich table at a terminal, tab-separated lines in a pipe; with --quiet only the
    rows that failed (nothing at all when every check passed)."""
    obj: Any = ctx.obj
    quiet = bool(getattr(obj, "quiet", False))
    if quiet:
        rows = [r for r in rows if r.ok is False]
        if not rows:
            return
    if sys.stdout.isatty():
        _print_table(title, rows)
        return
    for r in rows:
        click.echo("\t".join([r.host, r.check, _WORDS[r.ok], _one_line(r.detail)]))


def _one_line(text: str) -> str:
    """A detail as one tab-free line (a pipe reader splits on tabs and newlines)."""
    return " ".join(text.replace("\t", " ").split())


def _print_table(title: str, rows: list[CheckRow]) -> None:
    table = Table(title=title)
    for column in ("host", "check", "result", "detail"):
        table.add_column(column)
    marks = {True: "[green]ok[/green]", False: "[red]FAIL[/red]", None: "[dim]skip[/dim]"}
    for r in rows:
        # what the site said is data: rich must not read "[...]" in it as a style
        table.add_row(Text(r.host), Text(r.check), marks[r.ok], Text(r.detail))
    Console().print(table)


@click.group("site")
def site() -> None:
    """Inspect the remote sites."""


@site.command("check")
@click.option("--site", "site_name", metavar="NAME", help="Site to check (default site).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON rows.")
@click.pass_context
def check(ctx: click.Context, site_name: str | None, as_json: bool) -> None:
    """Master, command, user, scheduler, scratch and helper on every front end."""
    site_cfg = _load_config(ctx).site(site_name)
    report = check_site(site_cfg)
    if _want_json(ctx, as_json):
        click.echo(json.dumps({"site": site_cfg.name, "ok": report.ok,
                               "link_down": report.link_down,
                               "rows": [r.to_dict() for r in report.rows]}, indent=2))
    else:
        _print_rows(ctx, describe(site_cfg), report.rows)
    if report.link_down:
        click.echo(report.down, err=True)
        ctx.exit(int(ExitCode.TEMPORARY))
    ctx.exit(int(ExitCode.OK if report.ok else ExitCode.FAILURE))
