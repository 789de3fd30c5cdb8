"""Files shipped to the remote side (standard library only)."""

from pathlib import Path


def helper_path() -> Path:
    """The local path of the remote helper script ``rbhelper.py``."""
    return Path(__file__).with_name("rbhelper.py")


def runner_paths() -> dict[str, Path]:
    """The local paths of the dynamic runner's scripts, by their name in the job folder."""
    here = Path(__file__).parent
    return {name: here / name for name in ("rbrunner.py", "rbdispatch.py")}
