"""Enrollment's read of mentor loads: the groups each mentor leads now, projected from matching's
``group.matched`` and sessions' ``relationship.closed`` (applied idempotently by the runtime's consumer).

Enrollment owns capacity; matching and sessions own groups. This projection is how a capacity cut learns
the load it would fall under, without asking another service's database.
"""

from __future__ import annotations

import asyncpg

from contracts.envelope import Envelope
from contracts.events import ClosureReason, Event, GroupMatched, RelationshipClosed
from contracts.policy import Role
from runtime.tracking import Handler


async def on_group_matched(conn: asyncpg.Connection, env: Envelope) -> None:
    event = env.data
    assert isinstance(event, GroupMatched)
    mentors = [m.participant_id for m in event.members if m.role is Role.MENTOR]
    await conn.execute(
        "INSERT INTO mentor_groups (group_id, program_id, mentor_ids) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
        event.group_id,
        event.program_id,
        mentors,
    )


async def on_relationship_closed(conn: asyncpg.Connection, env: Envelope) -> None:
    """A renewal goes on as the next term with the same members: the mentor still carries the group."""
    event = env.data
    assert isinstance(event, RelationshipClosed)
    if event.reason is not ClosureReason.RENEWED:
        await conn.execute("UPDATE mentor_groups SET active = false WHERE group_id = $1", event.group_id)


async def active_groups_of(conn: asyncpg.Connection, mentor_id: str) -> list[str]:
    """The groups the mentor leads now, in every program."""
    rows = await conn.fetch(
        "SELECT group_id FROM mentor_groups WHERE active AND mentor_ids @> ARRAY[$1::text] ORDER BY group_id",
        mentor_id,
    )
    return [r["group_id"] for r in rows]


HANDLERS: dict[type[Event], Handler] = {
    GroupMatched: on_group_matched,
    RelationshipClosed: on_relationship_closed,
}
