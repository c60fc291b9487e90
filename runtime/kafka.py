"""Kafka plumbing shared by services: explicit topic creation (no auto-create) and broker checks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream.kafka import KafkaBroker

from contracts.topics import ALL_TOPICS, Topic

log = logging.getLogger(__name__)


async def ensure_topics(bootstrap: str, topics: Iterable[Topic] = ALL_TOPICS, replication: int = 1) -> list[str]:
    """Create each topic and its dead-letter topic when missing; returns the names created now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="topic-setup")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = []
        for t in topics:
            wanted.append(NewTopic(t.name, t.partitions, replication))
            wanted.append(NewTopic(t.dead_letter, 1, replication))
        missing = [n for n in wanted if n.name not in existing]
        if missing:
            # another service may create one between our list and create
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
        return [n.name for n in missing]
    finally:
        await admin.close()


def make_broker(bootstrap: str, client_id: str) -> KafkaBroker:
    """The service's FastStream broker; per-message logs at DEBUG so a busy consumer does not flood stdout."""
    return KafkaBroker(bootstrap, client_id=client_id, log_level=logging.DEBUG, logger=log)
