"""Files shipped to the remote side (standard library only)."""

from functools import cache
from pathlib import Path


def helper_path() -> Path:
    """The local path of the remote helper script ``rbhelper.py``."""
    return Path(__file__).with_name("rbhelper.py")


@cache
def _transfer_source() -> str:
    return Path(__file__).with_name("rbtransfer.py").read_text(encoding="utf-8")


def inline_transfer_argv(python: str, *args: str) -> list[str]:
    """argv that runs this version of ``rbtransfer.py ARGS`` on the site without a copy
    there (``python -c SOURCE``): transfers need it before, or without, a job folder,
    and a verb must not depend on a copy an older exec left behind."""
    return [python, "-c", _transfer_source(), *args]


def runner_paths() -> dict[str, Path]:
    """The local paths of the dynamic runner's scripts, by their name in the job folder."""
    here = Path(__file__).parent
    return {name: here / name for name in ("rbrunner.py", "rbdispatch.py")}
