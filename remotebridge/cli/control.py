"""``control-tool``: the key-card holder's command (master connections, login user).

    control-tool start [--site S] [--host H]... [--askpass PROG]
    control-tool stop [--site S] [--host H]...
    control-tool status [--site S]
    control-tool switch-user USER [--site S]

Exit codes: 0 ok; 75 when some master could not be opened (start) or none is
alive (status); 3 when switch-user is refused because masters are alive.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from remotebridge.cli.base import BridgeGroup, global_options, make_context
from remotebridge.cli.context import AppContext, pass_app
from remotebridge.cli.exitcodes import ExitCode
from remotebridge.config import site_user

if TYPE_CHECKING:  # the library (ssh, ...) and rich are imported by the commands that run
    from remotebridge.control import MasterState

site_option = click.option("--site", "site_name", metavar="NAME",
                           help="Site (default: the configured default site).")
host_option = click.option("--host", "hosts", multiple=True, metavar="HOST",
                           help="Only this front end (repeatable).")


@click.group(cls=BridgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(package_name="remotebridge")
@click.pass_context
def main(ctx: click.Context, db_url: str | None, config_path: str | None, as_json: bool,
         quiet: bool) -> None:
    """Open, check and close the key-card authenticated master connections.

    Twice a day (the site cuts logins after 12 hours): 'control-tool start', type
    one token per front end, then 'remotetool revertauth' to resume paused runs.
    """
    ctx.obj = make_context(db_url, config_path, as_json, quiet)


def _show(app: AppContext, site: str, states: Sequence[MasterState]) -> None:
    if app.json:
        app.emit({"site": site, "masters": [s.to_dict() for s in states]})
        return
    if app.quiet:
        return
    if not app.interactive:
        for s in states:
            click.echo("\t".join([s.host, "up" if s.alive else "down", s.action, s.user,
                                  s.socket, s.error]))
        return
    from rich.table import Table

    table = Table(title=f"site {site}")
    for col in ("host", "master", "action", "user", "socket", "error"):
        table.add_column(col)
    for s in states:
        table.add_row(s.host, "[green]up[/green]" if s.alive else "[red]down[/red]",
                      s.action, s.user, s.socket, s.error)
    app.console.print(table)


@main.command()
@site_option
@host_option
@click.option("--askpass", metavar="PROG",
              help="SSH_ASKPASS program answering the one-time-password prompt "
                   "(default: $SSH_ASKPASS, else ssh asks at the terminal).")
@pass_app
def start(app: AppContext, site_name: str | None, hosts: tuple[str, ...],
          askpass: str | None) -> None:
    """Open one master per front end (one token each); live ones are left alone."""
    from remotebridge import control

    site = app.config.site(site_name)
    states = control.start(site, hosts or None, askpass=askpass)
    _show(app, site.name, states)
    if control.failed(states):
        raise click.exceptions.Exit(int(ExitCode.TEMPORARY))
    if not app.json:
        app.info("masters are up; resume paused runs with: remotetool revertauth")


@main.command()
@site_option
@host_option
@pass_app
def stop(app: AppContext, site_name: str | None, hosts: tuple[str, ...]) -> None:
    """Close the masters (ssh -O exit); exec and poll then send runs to 'auth'."""
    from remotebridge import control

    site = app.config.site(site_name)
    _show(app, site.name, control.stop(site, hosts or None))


@main.command()
@site_option
@pass_app
def status(app: AppContext, site_name: str | None) -> None:
    """The master of each front end: alive, socket path, login user (exit 75 if none)."""
    from remotebridge import control

    site = app.config.site(site_name)
    states = control.status(site)
    _show(app, site.name, states)
    if states and not any(s.alive for s in states):
        raise click.exceptions.Exit(int(ExitCode.TEMPORARY))


@main.command("switch-user")
@click.argument("user")
@site_option
@pass_app
def switch_user(app: AppContext, user: str, site_name: str | None) -> None:
    """Log in as USER from now on (the key-card holder changed); masters must be closed."""
    from remotebridge import control

    site = app.config.site(site_name)
    previous = control.switch_user(site, user)  # MastersAlive -> exit 3 in BridgeGroup
    app.emit({"site": site.name, "user": site_user(site), "previous": previous},
             f"site {site.name}: login user {previous or '(ssh_config)'} -> {user}; "
             f"now run: control-tool start --site {site.name}")
