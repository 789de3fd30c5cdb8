"""``remotetool stages``: which stages this installation knows, with options and defaults."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import click
from rich.table import Table

from remotebridge.cli.context import AppContext, pass_app
from remotebridge.prepare.registry import load_stages


def describe_stages(app: AppContext) -> list[dict[str, Any]]:
    """One record per stage: name, description, options with effective values, dbinfo tables."""
    out = []
    for name, cls in sorted(load_stages().items()):
        cfg = asdict(app.config.stage(name))
        cfg.pop("name", None)
        out.append({
            "name": name,
            "description": cls.description,
            "module": f"{cls.__module__}:{cls.__qualname__}",
            "options": {**cls.defaults, **cfg},
            "dbinfo_tables": sorted(cls.dbinfo_schema),
        })
    return out


@click.command()
@pass_app
def stages(app: AppContext) -> None:
    """List the stages (built in or plugged in) with their options and defaults."""
    rows = describe_stages(app)
    if app.json:
        app.emit(rows)
        return
    if app.interactive:
        table = Table("stage", "description", "options", "dbinfo tables")
        for r in rows:
            opts = ", ".join(f"{k}={v}" for k, v in r["options"].items())
            table.add_row(r["name"], r["description"], opts, ", ".join(r["dbinfo_tables"]))
        app.console.print(table)
        return
    for r in rows:
        opts = " ".join(f"{k}={v}" for k, v in r["options"].items())
        app.line(f"{r['name']}\t{r['description']}\t{opts}")
