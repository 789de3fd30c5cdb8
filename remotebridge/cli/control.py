"""``control-tool``: the key-card holder's command (master connections, login user).

    control-tool start [--site S] [--host H]... [--askpass PROG]
    control-tool stop [--site S] [--host H]...
    control-tool status [--site S]
    control-tool switch-user USER [--site S]
    control-tool check [--site S]
    control-tool pause [--site S] [--reason TEXT]
    control-tool resume [--site S]

Exit codes: 0 ok; 75 when some master could not be opened (start), none is alive
(status) or some is down (check); 1 when check finds less than ``warn_before``
left before the site's cut; 3 when switch-user is refused because masters are alive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from remotebridge.cli.base import BridgeGroup, global_options, make_context
from remotebridge.cli.context import AppContext, pass_app
from remotebridge.cli.exitcodes import ExitCode
from remotebridge.config import site_user

if TYPE_CHECKING:  # the library (ssh, ...) and rich are imported by the commands that run
    from remotebridge.control import SiteMasters

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

    Twice a day (the site cuts logins after 12 hours): 'control-tool start' and
    type one token (one per front end when the site has no jump host).
    Maintenance: pause, stop, (switch-user), start, resume.
    """
    ctx.obj = make_context(db_url, config_path, as_json, quiet)


def _show(app: AppContext, site: str, masters: SiteMasters) -> None:
    if app.json:
        app.emit({"site": site, **masters.to_dict()})
        return
    if app.quiet:
        return
    rows = [("jump" if m is masters.jump else "front end", m) for m in masters.all()]
    if not app.interactive:  # the former six columns first, in their order
        for role, s in rows:
            click.echo("\t".join([s.host, "up" if s.alive else "down", s.action, s.user,
                                  s.socket, s.error, s.opened, s.opened_by, role]))
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"site {site}: {masters.mode.value}")
    for col in ("host", "role", "master", "action", "user", "opened", "by", "error"):
        table.add_column(col)
    for role, s in rows:
        table.add_row(Text(s.host), role, "[green]up[/green]" if s.alive else "[red]down[/red]",
                      *map(Text, (s.action, s.user, s.opened, s.opened_by, s.error)))
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
    """Open the masters: one token through the jump host, else one per front end."""
    from remotebridge import control

    site = app.config.site(site_name)
    masters = control.start(site, hosts or None, askpass=askpass)
    _show(app, site.name, masters)
    if control.failed(masters):
        refused = [m for m in masters.all() if not m.alive]
        for m in refused:
            app.err.print(f"{m.host}: {m.error or m.action or 'down'}", markup=False,
                          highlight=False)
        raise click.exceptions.Exit(int(ExitCode.TEMPORARY))
    if not app.json:
        app.info(f"masters are up ({masters.mode.value})")


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
    masters = control.status(site)
    _show(app, site.name, masters)
    if masters.down:
        app.err.print(masters.down, markup=False, highlight=False)
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


@main.command()
@site_option
@pass_app
def check(app: AppContext, site_name: str | None) -> None:
    """Masters alive, time left before the cut, pause, runs in auth (exit 0/1/75)."""
    from remotebridge.cli.control_report import print_check
    from remotebridge.controlcheck import Verdict
    from remotebridge.controlcheck import check as check_site

    names = [site_name] if site_name else sorted(app.config.sites)
    reports = [check_site(app.config.site(n), app.engine,
                          is_default=n == app.config.default_site) for n in names]
    print_check(app, reports)
    verdicts = {r.verdict for r in reports}
    if Verdict.DOWN in verdicts:
        raise click.exceptions.Exit(int(ExitCode.TEMPORARY))
    if Verdict.WARN in verdicts:
        raise click.exceptions.Exit(int(ExitCode.FAILURE))


@main.command()
@site_option
@click.option("--reason", default="", metavar="TEXT", help="Why (shown by list and check).")
@pass_app
def pause(app: AppContext, site_name: str | None, reason: str) -> None:
    """Pause the site: exec and poll finish their current run and take no new one."""
    from remotebridge.db import pause as pausedb
    from remotebridge.db.engine import write_session
    from remotebridge.masterlog import local_user

    site = app.config.site(site_name)
    with write_session(app.engine) as s:
        found, new = pausedb.pause(s, site.name, default_site=site.name == app.config.default_site,
                                   reason=reason, by=local_user())
    what = "paused" if new else "already paused (unchanged)"
    app.emit({"site": site.name, "paused": True, "changed": new, "reason": found.reason,
              "by": found.paused_by, "at": found.paused_at.isoformat(timespec="seconds")},
             f"site {site.name}: {what} since {found.paused_at:%Y-%m-%d %H:%M} UTC by "
             f"{found.paused_by}" + (f": {found.reason}" if found.reason else ""))


@main.command()
@site_option
@pass_app
def resume(app: AppContext, site_name: str | None) -> None:
    """Lift the site's pause: exec and poll take runs again."""
    from remotebridge.db import pause as pausedb
    from remotebridge.db.engine import write_session

    site = app.config.site(site_name)
    with write_session(app.engine) as s:
        lifted = pausedb.resume(s, site.name)
    app.emit({"site": site.name, "paused": False, "changed": lifted is not None},
             f"site {site.name}: " + ("resumed" if lifted else "was not paused (unchanged)"))
