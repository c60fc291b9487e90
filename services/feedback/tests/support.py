"""For feedback's tests: events as matching and sessions publish them, a clock to move through time, and
the service under test with tokens for every kind of caller."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from fastapi import FastAPI

from conftest import unique
from contracts.envelope import Envelope
from contracts.events import ClosureReason, GroupMatched, GroupMember, RelationshipClosed, SessionHeld
from contracts.policy import Form, Role
from runtime.auth import issue_token
from services.feedback import handlers

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def group_matched(program_id: str, group_id: str, members: dict[str, Role], at: datetime = T0) -> GroupMatched:
    return GroupMatched(
        program_id=program_id,
        run_id="run-test",
        group_id=group_id,
        form=Form.ONE_TO_ONE if len(members) == 2 else Form.FACILITATED_GROUP,
        members=[GroupMember(participant_id=p, role=r) for p, r in members.items()],
        fit=1.0,
        explanation=[],
        cadence_days=14,
        matched_at=at,
    )


def session_held(program_id: str, group_id: str, session_id: str, attendees: list[str], at: datetime) -> SessionHeld:
    return SessionHeld(
        program_id=program_id, group_id=group_id, session_id=session_id, held_at=at, duration_minutes=60,
        attendees=attendees,
    )  # fmt: skip


def closed(
    program_id: str, group_id: str, at: datetime, reason: ClosureReason = ClosureReason.COMPLETED
) -> RelationshipClosed:
    return RelationshipClosed(program_id=program_id, group_id=group_id, reason=reason, closed_at=at, term=1)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def at(self, days: float) -> datetime:
        self.now = T0 + timedelta(days=days)
        return self.now


@dataclass
class Feedback:
    app: FastAPI
    http: httpx.AsyncClient
    schema: str
    dsn: str
    clock: Clock
    program_id: str = field(default_factory=lambda: unique("prg"))

    @property
    def pool(self) -> asyncpg.Pool:
        pool: asyncpg.Pool = self.app.state.ctx.pool
        return pool

    def token(self, sub: str, *roles: str, permissions: list[str] | None = None) -> dict[str, str]:
        token = issue_token(self.app.state.jwt, sub, list(roles), permissions=permissions)
        return {"Authorization": f"Bearer {token}"}

    def participant(self, sub: str) -> dict[str, str]:
        return self.token(sub, "participant")

    async def learn(self, *events: Any) -> None:
        """Apply events as the consumer would (without Kafka), each in its own transaction."""
        for event in events:
            async with self.pool.acquire() as conn, conn.transaction():
                await handlers.HANDLERS[type(event)](conn, Envelope(data=event))

    async def count(self, table: str) -> int:
        return int(await self.pool.fetchval(f"SELECT count(*) FROM {table}"))
