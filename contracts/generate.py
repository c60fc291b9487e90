"""Generate the published artefacts from the models: JSON Schemas per event version and AsyncAPI.

``python -m contracts.generate`` writes schemas only for versions not yet published (a published
schema is the baseline the compatibility test guards, so it is never overwritten) and rewrites
``docs/asyncapi.yaml`` from scratch.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Any

import yaml

from contracts import topics
from contracts.envelope import MAX_ID_LENGTH
from contracts.events import ALL_EVENTS, Event
from contracts.examples import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "contracts" / "schemas"
ASYNCAPI_PATH = ROOT / "docs" / "asyncapi.yaml"


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_ID_PREFIX = "urn:mentoring-platform:event-schema:"
"""An absolute, location-free URI per event version: schemas are identified, not fetched."""


def schema_id(model: type[Event]) -> str:
    return f"{SCHEMA_ID_PREFIX}{model.TYPE}"


def event_schema(model: type[Event]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="serialization")
    schema["$schema"] = JSON_SCHEMA_DIALECT
    schema["$id"] = schema_id(model)
    schema["title"] = model.TYPE
    return schema


def example_event_id(event_type: str) -> str:
    """A distinct, stable example id per message (a real one is a fresh UUID per event)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, SCHEMA_ID_PREFIX + event_type))


def schema_path(model: type[Event]) -> Path:
    return SCHEMA_DIR / f"{model.TYPE}.json"


def _headers_schema() -> dict[str, Any]:
    def s(desc: str) -> dict[str, Any]:
        return {"type": "string", "description": desc}

    return {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "content-type"],
        "properties": {
            "ce_specversion": s("CloudEvents spec version, always 1.0"),
            "ce_id": {
                **s("unique event id (a UUID here); consumers de-duplicate on it and dead-letter one with NUL"),
                "maxLength": MAX_ID_LENGTH,
            },
            "ce_source": s("publishing service, e.g. /mentoring/enrollment"),
            "ce_type": s("event type and version, e.g. org.mentoring.participant.enrolled.v1"),
            "ce_time": s("RFC 3339 time the event was recorded"),
            "ce_subject": s("program id or group id; equals the Kafka key"),
            "content-type": s("application/json"),
            "traceparent": s("W3C trace context, when the publisher was traced"),
        },
    }


def _pascal(model: type[Event]) -> str:
    return model.__name__


def _message_headers(model: type[Event]) -> dict[str, Any]:
    """The envelope's headers with this message's type and source pinned, so a client can dispatch on them."""
    return {
        "allOf": [
            {"$ref": "#/components/schemas/CloudEventHeaders"},
            {
                "type": "object",
                "properties": {"ce_type": {"const": model.TYPE}, "ce_source": {"const": model.SOURCE}},
            },
        ]
    }


def _dead_letter_headers_schema() -> dict[str, Any]:
    def s(desc: str) -> dict[str, str]:
        return {"type": "string", "description": desc}

    return {
        "type": "object",
        "description": "The original message's headers (ce_* included when it had them), plus why it was parked.",
        "required": [
            "dlt_reason",
            "dlt_original_topic",
            "dlt_original_partition",
            "dlt_original_offset",
            "dlt_consumer_group",
            "dlt_attempts",
        ],
        "properties": {
            "dlt_reason": s("why the message can never be applied: names fields and error types, never content"),
            "dlt_original_topic": s("the topic it was consumed from"),
            "dlt_original_partition": s("its partition there, as a decimal string"),
            "dlt_original_offset": s("its offset there, as a decimal string"),
            "dlt_consumer_group": s("the consumer group that parked it"),
            "dlt_attempts": s("how many times it was tried, as a decimal string"),
            "dlt_original_size": s("the original body's size in bytes, when the copy's body was cut to fit"),
        },
    }


def _dead_letter_parts(topic: topics.Topic) -> tuple[str, dict[str, Any], dict[str, Any]]:
    channel_id = f"{topic.name.split('.')[1]}_dead_letters"
    channel = {
        "address": topic.dead_letter,
        "description": (
            f"Messages of {topic.name} that a consumer could not parse, validate or apply, parked with the "
            "reason so the partition carries on. Read them to investigate; they are never redelivered by "
            "the platform itself."
        ),
        "messages": {"DeadLetter": {"$ref": "#/components/messages/DeadLetter"}},
        "bindings": {"kafka": {"topic": topic.dead_letter, "partitions": 1, "replicas": 1}},
    }
    operation = {
        "action": "send",
        "channel": {"$ref": f"#/channels/{channel_id}"},
        "summary": f"The platform's consumers park unusable messages of {topic.name} here.",
        "messages": [{"$ref": f"#/channels/{channel_id}/messages/DeadLetter"}],
    }
    return channel_id, channel, operation


def asyncapi_document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {"CloudEventHeaders": _headers_schema()}
    for topic in topics.ALL_TOPICS:
        channel_id = topic.name.split(".")[1]
        members = [m for m in ALL_EVENTS if m.TOPIC is topic]
        channels[channel_id] = {
            "address": topic.name,
            "description": f"{topic.description} Key: {topic.key_field}. Dead letters: {topic.dead_letter}.",
            "messages": {_pascal(m): {"$ref": f"#/components/messages/{_pascal(m)}"} for m in members},
            "bindings": {"kafka": {"topic": topic.name, "partitions": topic.partitions, "replicas": 1}},
        }
        operations[f"send_{channel_id}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"The platform publishes to {topic.name}; integration teams subscribe to it.",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{_pascal(m)}"} for m in members],
        }
        dlt_id, dlt_channel, dlt_operation = _dead_letter_parts(topic)
        channels[dlt_id] = dlt_channel
        operations[f"send_{dlt_id}"] = dlt_operation
        for m in members:
            payload = m.model_json_schema(mode="serialization", ref_template="#/components/schemas/{model}")
            for name, sub in payload.pop("$defs", {}).items():
                schemas.setdefault(name, sub)
            schemas[_pascal(m)] = payload
            example = EXAMPLES[m.TYPE]
            messages[_pascal(m)] = {
                "name": m.TYPE,
                "title": _pascal(m),
                "summary": m.SUMMARY,
                "contentType": "application/json",
                "headers": _message_headers(m),
                "payload": {"$ref": f"#/components/schemas/{_pascal(m)}"},
                "bindings": {"kafka": {"key": {"type": "string", "description": f"the {topic.key_field}"}}},
                "examples": [
                    {
                        "name": f"{_pascal(m)}Example",
                        "headers": {
                            "ce_specversion": "1.0",
                            "ce_id": example_event_id(m.TYPE),
                            "ce_source": m.SOURCE,
                            "ce_type": m.TYPE,
                            "ce_time": "2026-03-02T09:30:00Z",
                            "ce_subject": example.partition_key(),
                            "content-type": "application/json",
                        },
                        "payload": example.model_dump(mode="json"),
                    }
                ],
            }
    schemas["DeadLetterHeaders"] = _dead_letter_headers_schema()
    messages["DeadLetter"] = {
        "name": "dead-letter",
        "title": "DeadLetter",
        "summary": "A message a consumer parked: the original body (cut when too large to copy) and headers.",
        "contentType": "application/octet-stream",
        "headers": {"$ref": "#/components/schemas/DeadLetterHeaders"},
        "payload": {"type": "string", "format": "binary", "description": "the original body as received"},
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Mentoring platform events",
            "version": "1.0.0",
            "description": (
                "Every event the mentoring platform publishes. CloudEvents 1.0 in Kafka binary mode: "
                "attributes in ce_* headers, JSON payload. Payloads are open: ignore fields you do not know, "
                "a version only ever gains optional fields. Session notes and free-text feedback never "
                "appear here. Generated by `python -m contracts.generate`; do not edit by hand."
            ),
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:19092", "protocol": "kafka", "description": "local stack"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def render_asyncapi() -> str:
    text: str = yaml.safe_dump(asyncapi_document(), sort_keys=False, allow_unicode=True, width=110)
    return text


def _identify(path: Path, model: type[Event]) -> None:
    """Give a published schema its dialect and absolute id; nothing else in it ever changes."""
    published = json.loads(path.read_text())
    if published.get("$schema") == JSON_SCHEMA_DIALECT and published.get("$id") == schema_id(model):
        return
    published.update({"$schema": JSON_SCHEMA_DIALECT, "$id": schema_id(model)})
    path.write_text(json.dumps(published, indent=2, sort_keys=True) + "\n")


def main() -> int:
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for model in ALL_EVENTS:
        path = schema_path(model)
        if not path.exists():
            path.write_text(json.dumps(event_schema(model), indent=2, sort_keys=True) + "\n")
            print(f"published {path.relative_to(ROOT)}")
        else:
            _identify(path, model)
    ASYNCAPI_PATH.parent.mkdir(parents=True, exist_ok=True)
    ASYNCAPI_PATH.write_text(render_asyncapi())
    print(f"wrote {ASYNCAPI_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
