"""Where confidential texts live, how each is bound to its row, and how old rows move to a new key.

Every text a participant writes is stored as ``<column>_key`` + ``<column>_blob`` (see
``runtime/crypto.py``). The AES-GCM context is ``<table>.<column>:<row key>``: a blob copied into another
row, or into another column of the same row, does not open.

Why the agenda template and boundaries are sealed too, not only notes and goals: they are the group's
own words about how it works and what it keeps out, which is exactly what a member may not want an
administrator or an integration to read; sealing them costs one AES-GCM call per change.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from runtime.crypto import KeyRing, Sealed


@dataclass(frozen=True)
class SealedColumn:
    table: str
    column: str
    row_key: tuple[str, ...]

    def context(self, *key: object) -> str:
        return f"{self.table}.{self.column}:" + ":".join(str(k) for k in key)


AGENDA = SealedColumn("expectations", "agenda", ("group_id",))
BOUNDARIES = SealedColumn("expectations", "boundaries", ("group_id",))
TOPIC = SealedColumn("sessions", "topic", ("session_id",))
REASON = SealedColumn("sessions", "reason", ("session_id",))
GOAL = SealedColumn("goals", "wording", ("goal_id",))
STEP = SealedColumn("goal_steps", "wording", ("goal_id", "position"))
NOTE = SealedColumn("notes", "text", ("note_id",))

ALL_COLUMNS = (AGENDA, BOUNDARIES, TOPIC, REASON, GOAL, STEP, NOTE)


def seal(ring: KeyRing, column: SealedColumn, text: str | None, *key: object) -> tuple[str | None, bytes | None]:
    """(key id, blob) to store, or (None, None) for no text."""
    if text is None:
        return None, None
    sealed = ring.seal(text, context=column.context(*key))
    return sealed.key_id, sealed.blob


def unseal(ring: KeyRing, column: SealedColumn, key_id: str | None, blob: bytes | None, *key: object) -> str | None:
    if key_id is None or blob is None:
        return None
    return ring.open(Sealed(key_id, bytes(blob)), context=column.context(*key))


REENCRYPT_BATCH = 500


async def reencrypt(pool: asyncpg.Pool, ring: KeyRing) -> dict[str, int]:
    """Re-seal every text not under the current key, in batches of one transaction each; returns the
    number of texts rewritten per column. Rows are locked while rewritten (a concurrent edit waits),
    and a row already under the current key is never touched, so running it twice rewrites nothing."""
    counts: dict[str, int] = {}
    for column in ALL_COLUMNS:
        counts[f"{column.table}.{column.column}"] = await _reencrypt_column(pool, ring, column)
    return counts


async def _reencrypt_column(pool: asyncpg.Pool, ring: KeyRing, column: SealedColumn) -> int:
    key_col, blob_col = f"{column.column}_key", f"{column.column}_blob"
    keys = ", ".join(column.row_key)
    where = " AND ".join(f"{k} = ${i + 3}" for i, k in enumerate(column.row_key))
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT {keys}, {key_col} AS key_id, {blob_col} AS blob FROM {column.table}"
                f" WHERE {key_col} IS NOT NULL AND {key_col} <> $1 ORDER BY {keys} LIMIT $2 FOR UPDATE",
                ring.current,
                REENCRYPT_BATCH,
            )
            for row in rows:
                row_key = [row[k] for k in column.row_key]
                fresh = ring.reseal(Sealed(row["key_id"], bytes(row["blob"])), context=column.context(*row_key))
                assert fresh is not None  # selected because its key is not the current one
                await conn.execute(
                    f"UPDATE {column.table} SET {key_col} = $1, {blob_col} = $2 WHERE {where}",
                    fresh.key_id,
                    fresh.blob,
                    *row_key,
                )
        total += len(rows)
        if len(rows) < REENCRYPT_BATCH:
            return total
