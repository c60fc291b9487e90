"""The sessions service in-process on its own schema of the real database and broker, with the events
that drive it applied straight through its consumer handlers (the runtime's tracking record is tested
in runtime/; here we test what the handlers decide)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from conftest import StackEndpoints, unique
from contracts.envelope import Envelope
from contracts.events import Event, GroupMatched, GroupMember, ProgramOpened
from contracts.policy import Form, Role, default_policy
from runtime.auth import JwtConfig, issue_token
from runtime.crypto import new_key
from services.sessions.app import SessionsSettings, create
from services.sessions.lifecycle import HANDLERS

KEY_1 = new_key("k1")


@dataclass
class Svc:
    client: httpx.AsyncClient
    jwt: JwtConfig
    pool: asyncpg.Pool
    app: FastAPI
    schema: str

    def as_(self, sub: str, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.jwt, sub, list(roles) or ['participant'])}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.as_("hr-admin", "admin")

    @property
    def integration(self) -> dict[str, str]:
        return self.as_("warehouse", "integration")

    async def apply(self, event: Event, *, event_id: str | None = None) -> None:
        """What the consumer does with one delivery, minus the tracking record."""
        env = Envelope(data=event) if event_id is None else Envelope(data=event, id=event_id)
        async with self.pool.acquire() as conn, conn.transaction():
            await HANDLERS[type(event)](conn, env)

    async def program(self, form: Form = Form.ONE_TO_ONE, *, cadence_days: int = 14, **policy: Any) -> str:
        program_id = f"prg-{uuid.uuid4().hex[:8]}"
        await self.apply(
            ProgramOpened(
                program_id=program_id,
                name="Leaders",
                form=form,
                cadence_days=cadence_days,
                starts_on=datetime(2026, 1, 1, tzinfo=UTC).date(),
                policy=default_policy(form).model_copy(update=policy),
                opened_at=datetime.now(UTC),
            )
        )
        return program_id

    def matched(self, program_id: str, *members: tuple[str, Role], form: Form = Form.ONE_TO_ONE) -> GroupMatched:
        return GroupMatched(
            program_id=program_id,
            run_id="run-1",
            group_id=f"grp-{uuid.uuid4().hex[:8]}",
            form=form,
            members=[GroupMember(participant_id=p, role=r) for p, r in members],
            fit=1.0,
            explanation=[],
            cadence_days=30,
            matched_at=datetime.now(UTC),
        )

    async def group(self, program_id: str, *members: tuple[str, Role], form: Form = Form.ONE_TO_ONE) -> str:
        event = self.matched(program_id, *members, form=form)
        await self.apply(event)
        return event.group_id

    async def outbox(self) -> list[dict[str, Any]]:
        """Every event written, oldest first: its CloudEvents type and JSON payload."""
        rows = await self.pool.fetch("SELECT headers, payload FROM outbox ORDER BY id")
        return [{"type": json.loads(r["headers"])["ce_type"], **json.loads(r["payload"])} for r in rows]

    async def raw_tables(self) -> str:
        """Every row of every sessions table, as Postgres prints it: to search for plaintext."""
        parts = []
        for table in ("expectations", "sessions", "goals", "goal_steps", "notes", "relationships", "members"):
            parts += [str(r[0]) for r in await self.pool.fetch(f"SELECT t::text FROM {table} t")]
        return "\n".join(parts)


@pytest.fixture
async def svc(stack: StackEndpoints, scratch_schemas: list[str]) -> AsyncIterator[Svc]:
    schema = unique("sessions_t")
    scratch_schemas.append(schema)
    settings = SessionsSettings(
        database_url=stack.admin_dsn,
        db_schema=schema,
        kafka_bootstrap=stack.kafka_bootstrap,
        log_level="WARNING",
        consumer_offset_reset="latest",
        encryption_keys=KEY_1,
        encryption_key_id="k1",
    )
    app = create(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sessions") as client:
            yield Svc(client, app.state.jwt, app.state.ctx.pool, app, schema)
