"""A list of texts passed as one joined value (:func:`runtime.db.text_array_sql`) reaches PostgreSQL as
exactly the list that was sent, whatever its values hold."""

from __future__ import annotations

import asyncpg
import pytest

from conftest import StackEndpoints
from runtime.db import TEXT_SEPARATOR, text_array_args, text_array_sql

pytestmark = pytest.mark.stack

CASES = [
    ["prg-1", "prg-1", "prg-2"],
    ["one"],
    [],
    [""],
    ["a", "", "b"],
    ["E\x1f1", "E2"],  # an id may hold the separator (JSON escapes it as \u001f)
    [TEXT_SEPARATOR, TEXT_SEPARATOR * 2],
    ['{"program_id":"p","profile":{"languages":["it","en"]}}', "ünïcødé ✓"],
    ["trailing\x1f", "\x1fleading"],
]


@pytest.mark.parametrize("values", CASES, ids=[repr(c)[:40] for c in CASES])
async def test_the_values_arrive_as_sent(stack: StackEndpoints, values: list[str]) -> None:
    conn = await asyncpg.connect(stack.admin_dsn)
    try:
        got = await conn.fetchval(f"SELECT {text_array_sql(1)}", *text_array_args(values))
    finally:
        await conn.close()
    assert got == values


def test_values_free_of_the_separator_go_joined() -> None:
    """The fast path is the one taken by ordinary ids and JSON bodies."""
    assert text_array_args(["a", "b"]) == (None, "a\x1fb")
    assert text_array_args(["a\x1fb"]) == (["a\x1fb"], None)
