"""Untrusted text in human output: control characters escaped, long values cut short with their size.

Names, labels and annotation values are written by whoever may create objects. Printed raw, a newline in a
name forges a second error line and an escape sequence rewrites the terminal (kubectl escapes them since
CVE-2021-25743); echoed whole, a 100 MB annotation is a 100 MB error line. Every message that quotes such a
value goes through `shown`, and every line we print of objects' text goes through `printable`.
"""

from __future__ import annotations

import reprlib

LIMIT = 80  # characters of a quoted value before it is cut

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 2, 4, 4, 4, 4
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = LIMIT


def printable(text: str) -> str:
    """`text` with every character that is not printable escaped as Python writes it in a literal (`\\n`,
    `\\x1b`, `\\u202e`): control characters, line and paragraph separators, bidirectional overrides."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


def size(text: str) -> int:
    """The size of `text` in bytes, as the API server counts it (UTF-8)."""
    return len(text.encode("utf-8", "surrogatepass"))


def clipped(text: str, limit: int = 4 * LIMIT) -> str:
    """`text` as `printable` shows it, unquoted, cut after `limit` characters with its size."""
    if len(text) <= limit:
        return printable(text)
    return f"{printable(text[:limit])}... ({size(text)} bytes)"


def shown(value: object, limit: int = LIMIT) -> str:
    """`value` quoted for a message, as repr() quotes it (so escaped), and at most about `limit` characters:
    a longer string is cut and says how long it was; other values are abridged (deep or shared structures,
    as YAML aliases build them, included)."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}... ({size(value)} bytes)"
    return _REPR.repr(value)
