"""Commands defined in their own modules, attached to remotetool's main group."""

from __future__ import annotations

import importlib

import click

# (module, attribute) of each command that lives outside remotetool.py.
EXTRA = [
    ("remotebridge.cli.demo_cmd", "demo"),
    ("remotebridge.cli.exec_cmd", "exec_cmd"),
    ("remotebridge.cli.prepare_cmd", "prepare"),
    ("remotebridge.cli.prepare_cmd", "review"),
    ("remotebridge.cli.poll_cmd", "poll"),
    ("remotebridge.cli.site_cmd", "site"),
    ("remotebridge.cli.stages_cmd", "stages"),
]


def commands() -> list[click.Command]:
    """The extra commands whose modules are present."""
    found = []
    for module, attr in EXTRA:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        found.append(getattr(mod, attr))
    return found
