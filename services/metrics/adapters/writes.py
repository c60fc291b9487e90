"""The kinds of row write the projection makes, and how a run of them becomes one statement.

Each event of a projected type becomes one or a few row writes, added to the batch's :class:`Runs`: a
kind (:class:`Upsert` or :class:`Update` of one table, keyed by the fact's own id) and its values, a
tuple in the kind's column order (a handler adds a run of events' rows at once). A kind gives the SQL for one
row (the per-event handlers) and for many rows at once (``unnest`` of one array per column), which is
what a batch runs: one statement per run of equal kinds on a table instead of one execution per row.

A multi-row upsert may not update one row twice, so the writes of a run that share a key are first
folded into one, with the effect applying them one after another would have had:

- ``DO NOTHING`` (no update columns): nothing to fold, the statement itself keeps the first one (a row
  conflicting with one inserted earlier by the same statement is skipped as any conflict is);
- an update without condition: the first one's inserted columns, the last one's updated columns;
- an update when newer (``newer`` column, ``<=``, or ``<`` when ``strictly``): the same, taking the
  updated columns from the newest (the last of equals; the first when ``strictly``), whose time or
  revision is what the statement then compares with the stored row. A stored NULL is always older.
- an :class:`Update`: the last one, or the first when ``first_wins`` (its condition then excludes the
  row once written, e.g. an alert cleared once).

A large run of an upsert whose keys are new as a rule (a session held, an answer, a group: ``new_keys``)
is copied straight into its table with a binary ``COPY``: for a key not stored yet, an upsert is an
insert, and ``COPY`` costs both sides far less (asyncpg encodes a row without inspecting every value of a
column array; PostgreSQL inserts without the speculative insertion of ``ON CONFLICT``). A batch's
statements run inside one savepoint when it copies: should any copied key be stored already (or appear
twice in its run), the unique index refuses the copy, the savepoint undoes the batch's writes, and every
run goes through its upsert statement instead: the effect is the statements' either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Upsert:
    table: str
    columns: tuple[tuple[str, str], ...]
    """(name, SQL type), in the order of a write's values"""
    key: tuple[str, ...]
    update: tuple[str, ...] = ()
    """set from the new values on conflict; none: DO NOTHING"""
    newer: str | None = None
    """update only when the stored value of this column is NULL or older (``<=``)"""
    strictly: bool = False
    """``<`` instead of ``<=``: of equals, the first one wins"""
    any_conflict: bool = False
    """DO NOTHING on a conflict with any unique index, not only the key's"""
    new_keys: bool = False
    """a run's keys are new as a rule: try a ``COPY`` into the table first (see the module docstring)"""

    @cached_property
    def names(self) -> list[str]:
        return [c for c, _ in self.columns]

    @cached_property
    def has_array(self) -> bool:
        return any(t.endswith("[]") for _, t in self.columns)

    def _conflict(self) -> str:
        key = ", ".join(self.key)
        if not self.update:
            return " ON CONFLICT DO NOTHING" if self.any_conflict else f" ON CONFLICT ({key}) DO NOTHING"
        sets = ", ".join(f"{c}=EXCLUDED.{c}" for c in self.update)
        out = f" ON CONFLICT ({key}) DO UPDATE SET {sets}"
        if self.newer:
            op = "<" if self.strictly else "<="
            out += f" WHERE {self.table}.{self.newer} IS NULL OR {self.table}.{self.newer} {op} EXCLUDED.{self.newer}"
        return out

    @cached_property
    def one(self) -> str:
        values = ",".join(f"${i}" for i in range(1, len(self.columns) + 1))
        return f"INSERT INTO {self.table} ({', '.join(self.names)}) VALUES ({values}){self._conflict()}"

    @cached_property
    def many(self) -> str:
        arrays = ", ".join(f"${i}::{t}[]" for i, (_, t) in enumerate(self.columns, start=1))
        return f"INSERT INTO {self.table} ({', '.join(self.names)}) SELECT * FROM unnest({arrays}){self._conflict()}"

    def fold(self, writes: Sequence[tuple[Any, ...]]) -> Sequence[tuple[Any, ...]]:
        """One write per key, with the effect of all of them in order."""
        if not self.update:
            return writes  # DO NOTHING skips a key's later rows within one statement too: the first wins
        at = {c: i for i, c in enumerate(self.names)}
        key = [at[c] for c in self.key]
        if _unique_keys(writes, key):
            return writes
        updated = [at[c] for c in self.update]
        newer = at[self.newer] if self.newer else None
        folded: dict[tuple[Any, ...], list[Any]] = {}
        for w in writes:
            k = tuple(w[i] for i in key)
            current = folded.get(k)
            if current is None:
                folded[k] = list(w)
            elif updated and (newer is None or self._replaces(current[newer], w[newer])):
                for i in updated:
                    current[i] = w[i]
        return [tuple(v) for v in folded.values()]

    def _replaces(self, stored: Any, new: Any) -> bool:
        return stored is None or (stored < new if self.strictly else stored <= new)


@dataclass(frozen=True)
class Update:
    table: str
    key: tuple[tuple[str, str], ...]
    values: tuple[tuple[str, str], ...]
    """(name, SQL type) set from the write; a write's values are the key's, then these"""
    when: str = ""
    """a further condition on the stored row, e.g. ``cleared_at IS NULL``"""
    first_wins: bool = False

    @cached_property
    def one(self) -> str:
        n = len(self.key)
        sets = ", ".join(f"{c}=${n + i}" for i, (c, _) in enumerate(self.values, start=1))
        where = " AND ".join(f"{c}=${i}" for i, (c, _) in enumerate(self.key, start=1))
        return f"UPDATE {self.table} SET {sets} WHERE {where}" + (f" AND {self.when}" if self.when else "")

    @cached_property
    def many(self) -> str:
        columns = (*self.key, *self.values)
        arrays = ", ".join(f"${i}::{t}[]" for i, (_, t) in enumerate(columns, start=1))
        names = ", ".join(c for c, _ in columns)
        sets = ", ".join(f"{c}=v.{c}" for c, _ in self.values)
        where = " AND ".join(f"{self.table}.{c}=v.{c}" for c, _ in self.key)
        when = f" AND {self.table}.{self.when}" if self.when else ""
        return f"UPDATE {self.table} SET {sets} FROM unnest({arrays}) AS v({names}) WHERE {where}{when}"

    def fold(self, writes: Sequence[tuple[Any, ...]]) -> Sequence[tuple[Any, ...]]:
        if _unique_keys(writes, range(len(self.key))):
            return writes
        folded: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for w in writes:
            k = w[: len(self.key)]
            if not (self.first_wins and k in folded):
                folded[k] = w
        return list(folded.values())


Kind = Upsert | Update


def _unique_keys(writes: Sequence[tuple[Any, ...]], key: Sequence[int]) -> bool:
    """Whether no two writes share a key (the usual case: nothing to fold)."""
    if len(key) == 1:
        (i,) = key
        return len({w[i] for w in writes}) == len(writes)
    return len({tuple(w[i] for i in key) for w in writes}) == len(writes)


@dataclass
class Runs:
    """Writes per table, in order, cut into runs of one kind: tables commute (no write reads another
    table), so each table's runs can go in one statement each, in order."""

    per_table: dict[str, list[tuple[Kind, list[tuple[Any, ...]]]]] = field(default_factory=dict)
    _last: dict[str, tuple[Kind, list[tuple[Any, ...]]]] = field(default_factory=dict)
    """each table's open run: called per write, :meth:`add` finds it in one lookup"""

    def add(self, kind: Kind, values: tuple[Any, ...]) -> None:
        """One write: its values in the kind's column order (a :class:`~enum.StrEnum` member among them is
        a ``str``: asyncpg encodes its value)."""
        self.extend(kind, [values])

    def extend(self, kind: Kind, rows: list[tuple[Any, ...]]) -> None:
        """Writes of one kind in order (a handler's rows of a run of events, built at once). No rows (a
        group matched with no members) is no run: a statement without its parameters would be refused."""
        if not rows:
            return
        run = self._last.get(kind.table)
        if run is not None and run[0] is kind:
            run[1].extend(rows)
            return
        run = (kind, rows)
        self._last[kind.table] = run
        self.per_table.setdefault(kind.table, []).append(run)

    def in_order(self) -> list[tuple[Kind, list[tuple[Any, ...]]]]:
        return [run for runs in self.per_table.values() for run in runs]

    async def execute(self, conn: asyncpg.Connection) -> None:
        plan = [(kind, kind.fold(writes)) for kind, writes in self.in_order()]
        if any(_copies(kind, rows) for kind, rows in plan) and await _copied(conn, plan):
            return
        for kind, rows in plan:
            await _write(conn, kind, rows, copy=False)


COPY_AT_LEAST = 32
"""The smallest run worth a ``COPY``: two more round trips than one statement, against about 2 µs of
Python and 2-3 µs of PostgreSQL saved per row (a round figure, not tuned: batches of thousands of events
make runs of hundreds)."""

_SAVEPOINT = "metrics_copies"


def _copies(kind: Kind, rows: Sequence[tuple[Any, ...]]) -> bool:
    return isinstance(kind, Upsert) and kind.new_keys and len(rows) >= COPY_AT_LEAST


async def _copied(conn: asyncpg.Connection, plan: Sequence[tuple[Kind, Sequence[tuple[Any, ...]]]]) -> bool:
    """Whether the batch's runs went in with its large runs of new keys copied: False, with nothing written,
    when a copied key is stored already or twice among its rows.

    One savepoint for the batch, not one per copy: the copies of a batch succeed or fail together, and a
    savepoint and its release are two round trips each, which the consumer waits for. It is not released:
    it ends with the transaction (a later savepoint of the same name in the same transaction is the one
    rolled back to)."""
    await conn.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        for kind, rows in plan:
            await _write(conn, kind, rows, copy=True)
    except asyncpg.UniqueViolationError:
        await conn.execute(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
        return False
    return True


async def _write(conn: asyncpg.Connection, kind: Kind, rows: Sequence[tuple[Any, ...]], *, copy: bool) -> None:
    if len(rows) == 1:
        await conn.execute(kind.one, *rows[0])
    elif copy and isinstance(kind, Upsert) and _copies(kind, rows):
        await conn.copy_records_to_table(kind.table, records=rows, columns=kind.names)
    elif isinstance(kind, Upsert) and kind.has_array:  # unnest would flatten an array column
        await conn.executemany(kind.one, rows)
    else:
        await conn.execute(kind.many, *(list(column) for column in zip(*rows, strict=True)))
