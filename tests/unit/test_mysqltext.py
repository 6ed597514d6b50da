"""MySQL literals of long text are written by aqueue (the driver's quoting is slow on
text that needs escapes): the same literal as the driver's, in either escaping mode, and
statements of short values left to the driver."""

from __future__ import annotations

import random
from typing import Any

import pytest

from aqueue._store import mysqltext

converters = pytest.importorskip("asyncmy.converters")

SPECIAL = "\\\0\n\r\x1a\"'%"


def samples() -> list[str]:
    rnd = random.Random(7)
    alphabet = SPECIAL + "abc xyz{}:,[]" + "é€😀\u2028"
    out = ["", "plain", SPECIAL, SPECIAL * 3, "\\'", "'\\", "\\\\0", "\\Z" * 3]
    out += ["".join(rnd.choice(alphabet) for _ in range(rnd.randrange(1, 600))) for _ in range(300)]
    return out


@pytest.mark.parametrize("text", samples())
def test_quote_text_writes_the_drivers_literal(text: str) -> None:
    assert mysqltext.quote_text(text) == "'" + converters.escape_string(text) + "'"
    assert (
        mysqltext.quote_text(text, backslash_escapes=False) == "'" + text.replace("'", "''") + "'"
    )


class FakeConnection:
    """The two things ``statement`` reads from an asyncmy connection."""

    def __init__(self, server_status: int = 2) -> None:
        self.server_status = server_status
        self.literal_calls: list[Any] = []

    def literal(self, value: Any) -> str:
        self.literal_calls.append(value)
        return "NULL" if value is None else str(value)


def test_short_values_are_left_to_the_driver() -> None:
    raw = FakeConnection()
    sql = "UPDATE t SET a = %s WHERE b = %s AND c LIKE 'x%%'"
    assert mysqltext.statement(raw, sql, ["x" * 255, 3]) == (sql, ("x" * 255, 3))
    assert raw.literal_calls == []


def test_a_statement_with_long_text_is_rendered_whole() -> None:
    raw = FakeConnection()
    long = "it's " + "a" * 300
    sql = "INSERT INTO t VALUES (%s, %s, %s, %s) -- 100%%"
    rendered, args = mysqltext.statement(raw, sql, [long, 7, None, "short'"])
    assert args is None
    assert rendered == (
        "INSERT INTO t VALUES ('it\\'s " + "a" * 300 + "', 7, NULL, 'short\\'') -- 100%"
    )
    assert raw.literal_calls == [7, None]


def test_no_backslash_escapes_doubles_quotes_only() -> None:
    raw = FakeConnection(server_status=2 | mysqltext.NO_BACKSLASH_ESCAPES)
    long = "a\\'b" * 100
    rendered, args = mysqltext.statement(raw, "SELECT %s", [long])
    assert args is None
    assert rendered == "SELECT '" + "a\\''b" * 100 + "'"
