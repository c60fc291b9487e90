"""A feedback service running in-process on its own schema (real PostgreSQL and Kafka) with a movable
clock; see ``support.Feedback`` for what a test does with it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import httpx
import pytest

from conftest import StackEndpoints, unique
from services.feedback.app import FeedbackSettings, create
from services.feedback.tests.support import Clock, Feedback


@pytest.fixture
async def feedback(stack: StackEndpoints, scratch_schemas: list[str]) -> AsyncIterator[Feedback]:
    schema = unique("feedback_t")
    scratch_schemas.append(schema)
    settings = FeedbackSettings(
        database_url=stack.admin_dsn,
        kafka_bootstrap=stack.kafka_bootstrap,
        db_schema=schema,
        consumer_offset_reset="latest",
        log_level="INFO",
    )
    app = create(settings)
    clock = Clock()
    app.state.clock = clock
    async with AsyncExitStack() as stack_:
        await stack_.enter_async_context(app.router.lifespan_context(app))
        http = await stack_.enter_async_context(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://feedback", timeout=60)
        )
        yield Feedback(app, http, schema, stack.admin_dsn, clock)
