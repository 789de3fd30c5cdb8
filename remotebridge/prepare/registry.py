"""Stage plugins, found through the ``remotebridge.stages`` entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points

from remotebridge.errors import UsageError
from remotebridge.prepare.base import StageBase

GROUP = "remotebridge.stages"

_BUILTIN = {
    "chip": "remotebridge.prepare.chip:ChipStage",
    "cam": "remotebridge.prepare.cam:CamStage",
    "warp": "remotebridge.prepare.warp:WarpStage",
    "stack": "remotebridge.prepare.stack:StackStage",
}


def load_stages() -> dict[str, type[StageBase]]:
    """Every registered stage class by name (the built-ins even if not installed)."""
    found: dict[str, type[StageBase]] = {}
    for ep in entry_points(group=GROUP):
        found[ep.name] = ep.load()
    for name, target in _BUILTIN.items():
        if name not in found:
            module, attr = target.split(":")
            found[name] = getattr(__import__(module, fromlist=[attr]), attr)
    return found


def get_stage(name: str) -> StageBase:
    """An instance of the stage plugin called ``name``."""
    stages = load_stages()
    if name not in stages:
        raise UsageError(f"unknown stage '{name}' (known: {', '.join(sorted(stages))})")
    return stages[name]()
