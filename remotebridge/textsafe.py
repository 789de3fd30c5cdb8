"""Untrusted text made safe to show, on a terminal or in a page: control and format
characters become visible escapes (``\\x1b``, ``\\u202e``).

Run notes and task logs come from remote output: an ANSI sequence, a NUL or a
right-to-left override must be shown, not obeyed. Used by ``remotetool logs`` and
the status page (:mod:`remotebridge.web.text`, which then HTML/XML-escapes).
"""

from __future__ import annotations

import unicodedata

#: categories shown as escapes: controls, format (bidi overrides), surrogates, private use
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co"})
_KEEP = frozenset("\n\t")


def _escape_char(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 \
        else f"\\U{code:08x}"


def visible(text: str) -> str:
    """``text`` with every control/format character except newline and tab escaped."""
    if text.isprintable():
        return text
    return "".join(_escape_char(ch) if ch not in _KEEP and unicodedata.category(ch) in _HIDDEN
                   else ch for ch in text)
