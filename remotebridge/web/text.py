"""Untrusted text made safe to show: control and format characters become visible
escapes (``\\x1b``, ``\\u202e``) before HTML or XML escaping.

Run notes and task logs come from remote output: an ANSI sequence, a NUL or a
right-to-left override must be shown, not obeyed; XML 1.0 cannot carry most of them.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from remotebridge.textsafe import visible

__all__ = ["finalize", "visible"]


def finalize(value: Any) -> Any:
    """Jinja2 ``finalize``: every ``{{ value }}`` goes through :func:`visible` before the
    autoescape (markup built by the templates themselves is left alone)."""
    if value is None:
        return ""
    if isinstance(value, Markup):
        return value
    return visible(str(value))
