"""When each master was opened, and by whom: ``$XDG_STATE_HOME/remotebridge/<site>.masters.json``.

``control-tool start`` writes a line per master it opens (front ends and the jump
host), ``stop`` drops them; ``control-tool check`` reads them to tell how long is
left before the site's cut (``login_lifetime`` after the opening). A master without
a record (opened by hand) is dated by its socket file, which ssh makes at login.
"""

from __future__ import annotations

import getpass
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from remotebridge.config import xdg_state_home


@dataclass(frozen=True)
class Opened:
    """One master's opening: when (UTC), by which local user, as which login, via what."""

    host: str
    at: datetime
    local_user: str
    login: str = ""
    via: str = ""


def local_user() -> str:
    """The person at the terminal: ``$SUDO_USER`` on a shared account, else the login name."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def log_file(site_name: str) -> Path:
    """The site's record file."""
    return xdg_state_home() / "remotebridge" / f"{site_name}.masters.json"


def read(site_name: str) -> dict[str, Opened]:
    """Every recorded master of the site, by host (empty when none or unreadable)."""
    try:
        raw = json.loads(log_file(site_name).read_text(encoding="utf-8"))
        return {h: Opened(h, datetime.fromisoformat(v["at"]), str(v.get("local_user", "")),
                          str(v.get("login", "")), str(v.get("via", "")))
                for h, v in raw.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _write(site_name: str, entries: dict[str, Opened]) -> None:
    path = log_file(site_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {h: {**asdict(o), "at": o.at.isoformat()} for h, o in sorted(entries.items())}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def record(site_name: str, host: str, *, login: str = "", via: str = "") -> Opened:
    """Record that ``host``'s master was opened now by the local user."""
    entries = read(site_name)
    entries[host] = Opened(host, datetime.now(UTC), local_user(), login, via)
    _write(site_name, entries)
    return entries[host]


def forget(site_name: str, host: str) -> None:
    """Drop ``host``'s record (its master was closed)."""
    entries = read(site_name)
    if entries.pop(host, None) is not None:
        _write(site_name, entries)


def socket_time(path: Path) -> datetime | None:
    """When the socket file was made (the master's login), None when there is none."""
    try:
        return datetime.fromtimestamp(path.lstat().st_mtime, UTC)
    except OSError:
        return None
