"""``control-tool``: the key-card holder's command (master connections)."""

from __future__ import annotations

import click

from remotebridge.cli.base import BridgeGroup, global_options, make_context


@click.group(cls=BridgeGroup, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(package_name="remotebridge")
@click.pass_context
def main(ctx: click.Context, db_url: str | None, config_path: str | None, as_json: bool,
         quiet: bool) -> None:
    """Open, check and close the key-card authenticated master connections.

    start / stop / status / switch-user arrive with the link work; this release
    only documents the tool.
    """
    ctx.obj = make_context(db_url, config_path, as_json, quiet)
