"""Database URLs: parse them with errors an operator can act on, and never show a password.

The text functions (masking, scrubbing, the one-line error) live in
:mod:`remotebridge.urltext`, which imports no SQLAlchemy; they are re-exported here.
"""

from __future__ import annotations

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from remotebridge.urltext import EXPECTED_FORMS, MASK, bad_url, has_password, mask_url, scrub

__all__ = ["EXPECTED_FORMS", "MASK", "bad_url", "has_password", "mask_url", "parse_url",
           "scrub"]


def parse_url(url: str, source: str = "") -> URL:
    """The parsed URL, or a ConfigError naming it (masked), where it came from, and the
    forms that work."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise bad_url(url, source, "cannot be parsed") from exc
