"""Render job scripts from ``remotebridge/templates/<scheduler>/job.sh.j2``.

The Jinja2 environment uses ``StrictUndefined`` (an unknown variable is an error),
no autoescaping (this is shell, not HTML), and a ``shquote`` filter (shlex.quote)
that must be applied to EVERY interpolated value: a ``finalize`` hook refuses any
``{{ value }}`` that did not go through ``shquote``, so a template cannot forget it.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import jinja2

from remotebridge.errors import PrepareError

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
FAULT_TEMPLATE = 17


class Quoted(str):
    """A string already quoted for the shell."""

    __slots__ = ()


def shquote(value: Any) -> Quoted:
    """Quote one value (str, int, float) as a single shell word."""
    if isinstance(value, bool) or value is None:
        raise PrepareError(f"refusing to interpolate {value!r} into a shell script",
                           fault=FAULT_TEMPLATE)
    return Quoted(shlex.quote(str(value)))


def _finalize(value: Any) -> Any:
    if isinstance(value, Quoted):
        return value
    raise PrepareError(f"template interpolates {str(value)[:60]!r} without |shquote",
                       fault=FAULT_TEMPLATE)


def environment(root: Path = TEMPLATES) -> jinja2.Environment:
    """The strict, shell-safe Jinja2 environment."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(root)),
                             undefined=jinja2.StrictUndefined, autoescape=False,
                             keep_trailing_newline=True, finalize=_finalize,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["shquote"] = shquote
    return env


def render(scheduler: str, context: dict[str, Any], name: str = "job.sh.j2",
           root: Path = TEMPLATES) -> str:
    """Render ``<scheduler>/<name>``; template problems become PrepareError."""
    try:
        return environment(root).get_template(f"{scheduler}/{name}").render(**context)
    except jinja2.UndefinedError as exc:
        raise PrepareError(f"template {scheduler}/{name}: unknown variable ({exc.message})",
                           path=str(root / scheduler / name), fault=FAULT_TEMPLATE) from exc
    except jinja2.TemplateError as exc:
        raise PrepareError(f"template {scheduler}/{name}: {exc}",
                           path=str(root / scheduler / name), fault=FAULT_TEMPLATE) from exc


def render_string(source: str, context: dict[str, Any]) -> str:
    """Render a template given as text (tests, site overrides) with the same rules."""
    try:
        return environment().from_string(source).render(**context)
    except jinja2.UndefinedError as exc:
        raise PrepareError(f"template: unknown variable ({exc.message})",
                           fault=FAULT_TEMPLATE) from exc
