"""The event contract with integration teams: envelope round-trips, compatibility, generated docs."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from contracts import generate
from contracts.compat import breaking_changes
from contracts.envelope import Envelope, InvalidMessage, from_kafka, to_kafka
from contracts.events import ALL_EVENTS, EVENTS_BY_TYPE, Event
from contracts.examples import EXAMPLES
from contracts.topics import ALL_TOPICS


@pytest.mark.parametrize("model", ALL_EVENTS, ids=lambda m: m.TYPE)
def test_every_event_round_trips_through_the_envelope(model: type[Event]) -> None:
    event = EXAMPLES[model.TYPE]
    env = Envelope(data=event, traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    record = to_kafka(env)
    headers = dict(record.headers)
    assert headers["ce_type"] == model.TYPE.encode()
    assert headers["ce_specversion"] == b"1.0"
    assert record.topic == model.TOPIC.name
    assert record.key == headers["ce_subject"]
    back = from_kafka(record.headers, record.value)
    assert back.data == event
    assert back.id == env.id
    assert back.time == env.time
    assert back.traceparent == env.traceparent


def test_a_received_envelope_is_the_dataclass_its_fields_make() -> None:
    """``from_kafka`` builds the envelope without its ``__init__`` (one attribute write per record): a
    field added to :class:`Envelope` later, or a ``__post_init__``, must not be skipped silently."""
    sent = Envelope(
        data=next(iter(EXAMPLES.values())), traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    )
    record = to_kafka(sent)
    back = from_kafka(record.headers, record.value)
    assert set(vars(back)) == {f.name for f in dataclasses.fields(Envelope)}
    assert not hasattr(Envelope, "__post_init__")
    assert back == dataclasses.replace(sent, body=record.value)
    assert hash(back) == hash(dataclasses.replace(sent, body=record.value))


def test_every_event_has_an_example_and_a_unique_type() -> None:
    assert set(EXAMPLES) == set(EVENTS_BY_TYPE)
    assert len(EVENTS_BY_TYPE) == len(ALL_EVENTS)


def _good_record() -> tuple[list[tuple[str, bytes]], bytes]:
    record = to_kafka(Envelope(data=next(iter(EXAMPLES.values()))))
    return record.headers, record.value


def test_body_that_is_not_json_is_rejected_with_a_reason() -> None:
    headers, _ = _good_record()
    with pytest.raises(InvalidMessage, match="not JSON"):
        from_kafka(headers, b"{oops")


def test_a_pathologically_nested_body_is_a_dead_letter_not_a_crash() -> None:
    headers, _ = _good_record()
    with pytest.raises(InvalidMessage, match="nested too deeply"):
        from_kafka(headers, b"[" * 100_000)


def test_unknown_type_is_rejected() -> None:
    headers, value = _good_record()
    headers = [(k, b"org.mentoring.nope.v1" if k == "ce_type" else v) for k, v in headers]
    with pytest.raises(InvalidMessage, match="unknown ce_type"):
        from_kafka(headers, value)


@pytest.mark.parametrize("event_id", [b"evt\x00nul", b"e" * 257], ids=["nul", "too-long"])
def test_an_id_no_consumer_could_record_is_rejected(event_id: bytes) -> None:
    """Every consumer records applied ids in a database index: a NUL or an id of kilobytes would stop it."""
    headers, value = _good_record()
    headers = [(k, event_id if k == "ce_id" else v) for k, v in headers]
    with pytest.raises(InvalidMessage, match="ce_id must be at most 256 characters"):
        from_kafka(headers, value)


def test_missing_required_field_names_the_field() -> None:
    headers, value = _good_record()
    body = json.loads(value)
    del body["name"]
    with pytest.raises(InvalidMessage, match="name: Field required"):
        from_kafka(headers, json.dumps(body).encode())


def test_payloads_are_open_for_additive_evolution() -> None:
    headers, value = _good_record()
    body = json.loads(value)
    body["a_field_from_the_future"] = 1
    assert from_kafka(headers, json.dumps(body).encode()).data == next(iter(EXAMPLES.values()))


@pytest.mark.parametrize("model", ALL_EVENTS, ids=lambda m: m.TYPE)
def test_published_schema_is_still_honoured(model: type[Event]) -> None:
    path = generate.schema_path(model)
    assert path.exists(), f"{model.TYPE} has no published schema: run python -m contracts.generate"
    published = json.loads(path.read_text())
    assert breaking_changes(published, generate.event_schema(model)) == []


def _enrolled_schema() -> dict[str, Any]:
    return generate.event_schema(EVENTS_BY_TYPE["org.mentoring.participant.enrolled.v1"])


def test_compatibility_check_catches_a_removed_field() -> None:
    published = _enrolled_schema()
    current = copy.deepcopy(published)
    del current["properties"]["enrolled_at"]
    assert breaking_changes(published, current) == ["enrolled_at: field removed"]


def test_compatibility_check_catches_a_removed_nested_field_and_a_retype() -> None:
    published = _enrolled_schema()
    current = copy.deepcopy(published)
    profile = current["$defs"]["ParticipantProfile"]
    del profile["properties"]["department"]
    profile["properties"]["level"] = {"type": "string"}
    problems = breaking_changes(published, current)
    assert "profile.department: field removed" in problems
    assert "profile.level: type changed" in problems


def test_compatibility_check_allows_a_new_optional_field_but_not_a_new_required_one() -> None:
    published = _enrolled_schema()
    current = copy.deepcopy(published)
    current["properties"]["channel"] = {"type": "string"}
    assert breaking_changes(published, current) == []
    current["required"] = [*current["required"], "channel"]
    assert breaking_changes(published, current) == ["channel: became required"]


def test_asyncapi_document_is_up_to_date() -> None:
    assert generate.ASYNCAPI_PATH.read_text() == generate.render_asyncapi(), (
        "docs/asyncapi.yaml is stale: run python -m contracts.generate"
    )


def test_asyncapi_lists_every_event_with_a_valid_example() -> None:
    doc = generate.asyncapi_document()
    messages = {k: m for k, m in doc["components"]["messages"].items() if k != "DeadLetter"}
    assert {m["name"] for m in messages.values()} == set(EVENTS_BY_TYPE)
    for message in messages.values():
        model = EVENTS_BY_TYPE[message["name"]]
        (example,) = message["examples"]
        model.model_validate(example["payload"])


def test_asyncapi_pins_each_message_type_and_gives_distinct_example_ids() -> None:
    doc = generate.asyncapi_document()
    messages = {k: m for k, m in doc["components"]["messages"].items() if k != "DeadLetter"}
    ids = [m["examples"][0]["headers"]["ce_id"] for m in messages.values()]
    assert len(set(ids)) == len(ids)
    for message in messages.values():
        pinned = message["headers"]["allOf"][1]["properties"]
        assert pinned["ce_type"] == {"const": message["name"]}
        assert message["examples"][0]["headers"]["ce_type"] == message["name"]


def test_asyncapi_says_the_platform_sends_and_documents_dead_letters() -> None:
    doc = generate.asyncapi_document()
    assert {op["action"] for op in doc["operations"].values()} == {"send"}
    addresses = {channel["address"] for channel in doc["channels"].values()}
    for topic in ALL_TOPICS:
        assert topic.name in addresses and topic.dead_letter in addresses
    headers = doc["components"]["schemas"]["DeadLetterHeaders"]
    assert {"dlt_reason", "dlt_original_topic", "dlt_original_offset", "dlt_attempts"} <= set(headers["required"])


def test_published_schemas_name_their_dialect_and_an_absolute_id() -> None:
    for model in EVENTS_BY_TYPE.values():
        schema = json.loads(generate.schema_path(model).read_text())
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"urn:mentoring-platform:event-schema:{model.TYPE}"
