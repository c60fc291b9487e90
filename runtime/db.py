"""asyncpg pool bound to the service's own schema, and versioned migrations applied at start-up."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import asyncpg

RUNTIME_SQL = Path(__file__).parent / "sql"
_MIGRATION = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


STATEMENT_TIMEOUT_SECONDS = 60.0
"""How long one statement may wait for the database before it fails with ``TimeoutError`` (an
infrastructure failure: a consumer backs off and retries, readiness shows it). Without it a connection
that goes silent (a network partition, a vanished host: no reset, no answer) hung its caller for good
while ``/health/ready``, which opens a fresh connection, answered 200 (found by an outside-in probe).
The slowest statements the services run take seconds (a KPI report or an alert evaluation over a
million enrolments: 3-5 s on this 2-core machine); migrations wait longer (:data:`MIGRATION_TIMEOUT_SECONDS`).
At 30 s it stopped a matching run of the demo, whose pool query (since rewritten) took longer on a
database of 37,000 groups: a statement that slow is a bug to find, and a minute leaves room for a busy
machine while still ending a silent connection's wait."""

CONNECT_TIMEOUT_SECONDS = 10.0
"""How long opening a connection may take (asyncpg's default: 60 s). A connection opened into a
partition is accepted and never answered; the pool opens one as soon as it has closed a timed-out one
(to keep its minimum size), and a consumer's next batch asks for one: each of them held its pool slot
for a minute after the partition had healed. Opening a connection takes milliseconds."""

MIGRATION_TIMEOUT_SECONDS = 3600.0
"""A migration, or waiting for another replica's, may take long on a large table."""


async def create_pool(
    dsn: str,
    schema: str,
    *,
    min_size: int = 1,
    max_size: int = 10,
    statement_timeout: float = STATEMENT_TIMEOUT_SECONDS,
) -> asyncpg.Pool:
    """Every connection's search_path is the service's schema: tables are named without a prefix."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        command_timeout=statement_timeout,
        timeout=CONNECT_TIMEOUT_SECONDS,
        server_settings={"search_path": schema, "application_name": schema},
        init=_terminate_after_a_timeout,
    )
    assert pool is not None
    return pool


async def _terminate_after_a_timeout(conn: asyncpg.Connection) -> None:
    """A connection whose statement timed out is closed at once, not used again.

    Why: the timeout most often means the connection went silent (a partition), and whatever comes next
    on it waits the whole timeout again: the ``ROLLBACK`` of the transaction around the statement did,
    so a consumer caught in a database partition resumed two timeouts (120 s) after the partition began
    instead of one. Closed, the rollback fails at once (the server rolls the transaction back when the
    connection ends), and the pool opens a fresh connection for the next user. A statement that was only
    slow loses its connection, nothing else. (asyncpg calls query loggers just after the statement,
    while the rollback is already waiting: closing the connection ends that wait.)"""

    def on_statement(record: asyncpg.connection.LoggedQuery) -> None:
        if isinstance(record.exception, TimeoutError) and not conn.is_closed():
            conn.terminate()

    conn.add_query_logger(on_statement)


def _migrations(folder: Path) -> list[tuple[int, str, str]]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        match = _MIGRATION.match(path.name)
        if not match:
            raise ValueError(f"migration file {path} must be named NNNN_name.sql")
        found.append((int(match.group(1)), path.name, path.read_text()))
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration versions in {folder}")
    return found


async def migrate(pool: asyncpg.Pool, schema: str, folders: dict[str, Path]) -> list[str]:
    """Apply what is missing, each file in its own transaction, under an advisory lock so that two
    replicas starting together never apply the same file twice. Returns the names applied now."""
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        # The lock comes first: two replicas starting together would otherwise race on CREATE SCHEMA and
        # on CREATE TABLE IF NOT EXISTS (which is not atomic: the loser fails on pg_type's unique index).
        await conn.execute(
            "SELECT pg_advisory_lock(hashtext($1))", f"migrate:{schema}", timeout=MIGRATION_TIMEOUT_SECONDS
        )
        try:
            # A service role owns its schema but may not create schemas: only create when missing.
            if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
                await conn.execute(f'CREATE SCHEMA "{schema}"')
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " component TEXT NOT NULL, version INT NOT NULL, name TEXT NOT NULL,"
                " applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (component, version))"
            )
            for component, folder in {"runtime": RUNTIME_SQL, **folders}.items():
                done = {
                    r["version"]
                    for r in await conn.fetch("SELECT version FROM schema_migrations WHERE component=$1", component)
                }
                for version, name, sql in _migrations(folder):
                    if version in done:
                        continue
                    async with conn.transaction():
                        await conn.execute(sql, timeout=MIGRATION_TIMEOUT_SECONDS)
                        await conn.execute(
                            "INSERT INTO schema_migrations (component, version, name) VALUES ($1, $2, $3)",
                            component,
                            version,
                            name,
                        )
                    applied_now.append(f"{component}/{name}")
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"migrate:{schema}")
    return applied_now


TEXT_SEPARATOR = "\x1f"
"""ASCII's unit separator: an id or a JSON text as a rule never holds it (JSON must escape a control
character inside a string, and allows none outside one)."""


def text_array_sql(position: int) -> str:
    """A ``text[]`` passed as the two parameters ``$position`` and ``$position + 1`` that
    :func:`text_array_args` fills: one of them is NULL, the other carries the values.

    Why not a plain ``$n::text[]``: asyncpg encodes a list element by element, and asks of each whether
    it is a sub-array with two ``isinstance`` checks against abstract base classes, which cost a Python
    call each. For a projection that sends five arrays of thousands of values per batch, that was an
    eighth of its consumer's CPU per event. Joined into one text value, split again by PostgreSQL's
    ``string_to_array``, the same values cost a C-speed join."""
    return f"coalesce(${position}::text[], string_to_array(${position + 1}, E'\\x1f'))"


def text_array_args(values: Sequence[str]) -> tuple[Sequence[str] | None, str | None]:
    """The two parameters of :func:`text_array_sql`: the values joined by :data:`TEXT_SEPARATOR`, or
    as a list should one of them hold the separator or be empty (which ``string_to_array`` could not
    give back)."""
    joined = TEXT_SEPARATOR.join(values)
    # as many separators as joins: no value holds one; and none is empty
    if joined.count(TEXT_SEPARATOR) == len(values) - 1 and all(values):
        return None, joined
    return values, None
