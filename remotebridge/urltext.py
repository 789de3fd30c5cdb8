"""Database URL text: never show a password, and say plainly when a URL is unusable.

A URL reaches us from ``--db``, ``$REMOTEBRIDGE_DB`` or ``[database] url`` and is
printed by ``config show``, ``db status`` and every database error. Each of those
goes through :func:`mask_url`, which works on the text (not on SQLAlchemy's parse)
so that a URL SQLAlchemy cannot parse is masked as well. This module imports no
SQLAlchemy (:mod:`remotebridge.db.url` parses).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from remotebridge.errors import ConfigError

if TYPE_CHECKING:  # the text alone needs no SQLAlchemy (config files, cron ticks)
    from sqlalchemy.engine import URL

#: the forms named when a URL is not usable
EXPECTED_FORMS = ("sqlite:///PATH, postgresql://USER@HOST/DB or "
                  "postgresql:///?service=NAME")
MASK = "***"
# libpq also takes the password as a query parameter (?password=...)
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)
_QUERY_PASSWORD_VALUE = re.compile(r"([?&]password=)([^&#]*)", re.IGNORECASE)


def mask_url(url: str | URL) -> str:
    """``url`` with any password replaced by ``***`` (in the user part and in the query)."""
    text = url if isinstance(url, str) else url.render_as_string(hide_password=False)
    text = _QUERY_PASSWORD.sub(rf"\g<1>{MASK}", text)
    span = _user_password_span(text)
    return text if span is None else f"{text[:span[0]]}{MASK}{text[span[1]:]}"


def _user_password_span(text: str) -> tuple[int, int] | None:
    """Where the password of ``user:password@host`` is in ``text`` (None if it has none)."""
    # without a scheme (a mistyped URL) the user part, if any, starts the text
    start = text.find("://")
    start = 0 if start < 0 else start + 3
    end = text.find("?", start)
    end = len(text) if end < 0 else end
    # the last '@' before the query ends the user part: a password may hold '@' or '/'
    at = text.rfind("@", start, end)
    colon = text.find(":", start, at) if at >= 0 else -1
    return None if colon < 0 else (colon + 1, at)


def scrub(message: str, url: str) -> str:
    """``message`` (a driver's error) with every piece of ``url``'s passwords masked.

    A password holding an unescaped '@' or '/' is split by the parser into host or
    database names, which the driver then quotes in its errors.
    """
    secrets = [m.group(2) for m in _QUERY_PASSWORD_VALUE.finditer(url)]
    rest = _QUERY_PASSWORD.sub(rf"\g<1>{MASK}", url)
    span = _user_password_span(rest)
    if span is not None:
        secrets.append(rest[span[0]:span[1]])
    parts = {p for s in secrets for p in (s, *re.split(r"[@/:?&=#]", s))}
    for part in sorted(parts, key=len, reverse=True):
        if len(part) >= 3:  # shorter pieces would mask ordinary words
            message = message.replace(part, MASK)
    return message


def has_password(url: str) -> bool:
    """True when ``url`` carries a password (user part or query)."""
    return mask_url(url) != url


def bad_url(url: str, source: str, why: str) -> ConfigError:
    """The ConfigError for an unusable database URL (never holds the password)."""
    where = f" from {source}" if source else ""
    return ConfigError(
        f"not a usable database URL{where}: {mask_url(url)!r} {why}; expected {EXPECTED_FORMS}",
        hint=f"fix {source or '--db / $REMOTEBRIDGE_DB / [database] url'} "
             "(see README 'Configuration')",
    )
