"""MySQL statements whose parameters hold long text, rendered here rather than by the
driver. asyncmy quotes a string with ``str.translate`` over a table in which some
characters become two: CPython then leaves its fast path and maps the whole string one
character at a time, ~18 ns each. A compressed 100 KB argument (its JSON begins with
quotes) cost the producer ~580 µs to quote, a plain one ~2.8 ms. ``str.replace`` once per
character that needs an escape, and only when it occurs, writes the same literal at
memory speed.

Short parameters (and every other type) still go through the driver's own quoting, so a
statement of small values is sent exactly as before."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

LONG_TEXT = 256
"""Characters from which a string parameter is quoted here, not by the driver."""

NO_BACKSLASH_ESCAPES = 512
"""The server status flag of ``sql_mode=NO_BACKSLASH_ESCAPES`` (MySQL's protocol
``SERVER_STATUS_NO_BACKSLASH_ESCAPES``): a backslash is then an ordinary character."""

# The driver's escapes, backslash first so the backslashes the others add stay single.
_ESCAPES = (
    ("\\", "\\\\"),
    ("\0", "\\0"),
    ("\n", "\\n"),
    ("\r", "\\r"),
    ("\x1a", "\\Z"),
    ('"', '\\"'),
    ("'", "\\'"),
)


def quote_text(text: str, *, backslash_escapes: bool = True) -> str:
    """``text`` as a MySQL string literal, quotes included: the same literal as the
    driver's own quoting writes."""
    if not backslash_escapes:
        return "'" + text.replace("'", "''") + "'"
    for char, escaped in _ESCAPES:
        if char in text:
            text = text.replace(char, escaped)
    return "'" + text + "'"


def has_long_text(params: Sequence[Any]) -> bool:
    """Whether a statement with ``params`` is rendered here (see :func:`statement`)."""
    return any(type(p) is str and len(p) >= LONG_TEXT for p in params)


def statement(raw: Any, sql: str, params: Sequence[Any]) -> tuple[str, tuple[Any, ...] | None]:
    """What to hand ``cursor.execute`` on the asyncmy connection ``raw``: ``sql`` and its
    parameters as they are, or, when one is a string of ``LONG_TEXT`` characters or
    more, the statement rendered here (``%s`` placeholders filled, ``%%`` made ``%``, as
    the driver would) and no parameters."""
    args = tuple(params)
    if not has_long_text(args):
        return sql, args
    backslash = not raw.server_status & NO_BACKSLASH_ESCAPES
    literal = raw.literal
    rendered = tuple(
        quote_text(p, backslash_escapes=backslash) if type(p) is str else literal(p) for p in args
    )
    return sql % rendered, None
