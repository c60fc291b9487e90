"""Generate the published artefacts from the models: JSON Schemas per event version and AsyncAPI.

``python -m contracts.generate`` writes schemas only for versions not yet published (a published
schema is the baseline the compatibility test guards, so it is never overwritten) and rewrites
``docs/asyncapi.yaml`` from scratch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from contracts import topics
from contracts.events import ALL_EVENTS, Event
from contracts.examples import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "contracts" / "schemas"
ASYNCAPI_PATH = ROOT / "docs" / "asyncapi.yaml"


def event_schema(model: type[Event]) -> dict[str, Any]:
    schema = model.model_json_schema(mode="serialization")
    schema["$id"] = f"{model.TYPE}.json"
    schema["title"] = model.TYPE
    return schema


def schema_path(model: type[Event]) -> Path:
    return SCHEMA_DIR / f"{model.TYPE}.json"


def _headers_schema() -> dict[str, Any]:
    def s(desc: str) -> dict[str, str]:
        return {"type": "string", "description": desc}

    return {
        "type": "object",
        "required": ["ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject", "content-type"],
        "properties": {
            "ce_specversion": s("CloudEvents spec version, always 1.0"),
            "ce_id": s("unique event id; consumers de-duplicate on it"),
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
        operations[f"receive_{channel_id}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
            "summary": f"Subscribe to {topic.name}.",
            "messages": [{"$ref": f"#/channels/{channel_id}/messages/{_pascal(m)}"} for m in members],
        }
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
                "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
                "payload": {"$ref": f"#/components/schemas/{_pascal(m)}"},
                "bindings": {"kafka": {"key": {"type": "string", "description": f"the {topic.key_field}"}}},
                "examples": [
                    {
                        "name": f"{_pascal(m)}Example",
                        "headers": {
                            "ce_specversion": "1.0",
                            "ce_id": "6f1c3f0e-2b7e-4c55-9a43-2f0d2d6f8b10",
                            "ce_source": m.SOURCE,
                            "ce_type": m.TYPE,
                            "ce_time": "2026-03-02T09:30:00+00:00",
                            "ce_subject": example.partition_key(),
                            "content-type": "application/json",
                        },
                        "payload": example.model_dump(mode="json"),
                    }
                ],
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


def main() -> int:
    SCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for model in ALL_EVENTS:
        path = schema_path(model)
        if not path.exists():
            path.write_text(json.dumps(event_schema(model), indent=2, sort_keys=True) + "\n")
            print(f"published {path.relative_to(ROOT)}")
    ASYNCAPI_PATH.parent.mkdir(parents=True, exist_ok=True)
    ASYNCAPI_PATH.write_text(render_asyncapi())
    print(f"wrote {ASYNCAPI_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
