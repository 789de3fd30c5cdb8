"""Files shipped to the remote side (standard library only)."""

from pathlib import Path


def helper_path() -> Path:
    """The local path of the remote helper script ``rbhelper.py``."""
    return Path(__file__).with_name("rbhelper.py")
