"""``remotetool serve``: the read-only status page (runs, one run, sites, UWS)."""

from __future__ import annotations

import click

from remotebridge.cli.context import AppContext, pass_app


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but loopback needs a token.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535),
              help="TCP port.")
@click.option("--token", metavar="T", help="Every request must carry it "
              "(Authorization: Bearer T, or ?token=T).")
@click.option("--token-file", metavar="F", help="Read the token from the first line of F.")
@pass_app
def serve(app: AppContext, host: str, port: int, token: str | None,
          token_file: str | None) -> None:
    """Serve a read-only status page of the runs (and a UWS 1.1 view under /uws/).

    Pages: /runs (filters label, stage, state), /runs/ID, /sites; it refreshes
    itself. Stop it with Ctrl-C.
    """
    from remotebridge.web import server

    secret = server.read_token(token, token_file)
    server.check_bind(host, secret)
    engine = app.engine
    shown = host if ":" not in host else f"[{host}]"
    app.info(f"serving http://{shown}:{port}/runs (Ctrl-C stops)")
    server.serve(engine, app.config, host=host, port=port, token=secret)
