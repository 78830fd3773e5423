"""Round trips JSON -> encoded record -> Event for every fixture shape, in every encoding."""

from __future__ import annotations

import json
from typing import Any

import pytest

from consumer.events.decode import Decoder
from consumer.events.encode import encode_event
from consumer.events.model import Event
from consumer.events.registry import make_registry_client
from consumer.events.schemas import LocalSchemas, from_avro, to_avro
from tests.unit._fixtures import EXPECTED, SCHEMAS_DIR, all_fixtures, load, views

ENCODINGS = ["single-object", "schemaless", "json", "confluent"]


def _decoder(encoding: str, registry: Any = None) -> Decoder:
    return Decoder(
        schemas_dir=SCHEMAS_DIR,
        encoding="schemaless" if encoding == "schemaless" else "auto",
        registry=registry,
        schemaless_schema="segment_event" if encoding == "schemaless" else None,
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("name", all_fixtures())
def test_every_shape_round_trips_with_its_views(name: str, encoding: str) -> None:
    data = load(name)
    registry = make_registry_client("mock://round-trip") if encoding == "confluent" else None
    value = encode_event(
        data, encoding=encoding, schemas_dir=SCHEMAS_DIR, registry=registry, subject="events-value"
    )
    event = _decoder(encoding, registry).decode(value)
    assert event == Event.from_segment(data)
    assert event.to_segment() == Event.from_segment(data).to_segment()
    assert views(event) == EXPECTED[name]


@pytest.mark.parametrize("name", all_fixtures())
def test_avro_records_give_back_the_exact_json(name: str) -> None:
    data = load(name)
    assert from_avro(_unwrap_tags(to_avro(data))) == data


def _unwrap_tags(node: Any) -> Any:
    """Drop fastavro's tuple notation, as reading the bytes back would."""
    if isinstance(node, tuple):
        return _unwrap_tags(node[1])
    if isinstance(node, dict):
        return {k: _unwrap_tags(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_unwrap_tags(v) for v in node]
    return node


@pytest.mark.parametrize(
    ("odd", "expected"),
    [
        ({"userId": 12345}, "12345"),  # a numeric userId survives via `extra` and becomes the same string
        ({"userId": None, "anonymousId": "a"}, None),
    ],
)
def test_values_that_do_not_fit_a_typed_field_are_kept(odd: dict[str, Any], expected: str | None) -> None:
    data = {"type": "track", "messageId": "m", "anonymousId": "a", **odd}
    assert from_avro(_unwrap_tags(to_avro(data))) == data
    value = encode_event(data, encoding="single-object", schemas_dir=SCHEMAS_DIR)
    assert _decoder("single-object").decode(value).user_id == expected


def test_ints_and_floats_stay_distinct() -> None:
    data = {
        "type": "track",
        "messageId": "m",
        "userId": "u",
        "properties": {"i": 1, "f": 1.0, "big": 2**63 - 1},
    }
    event = _decoder("single-object").decode(
        encode_event(data, encoding="single-object", schemas_dir=SCHEMAS_DIR)
    )
    assert [type(event.properties[k]) for k in ("i", "f", "big")] == [int, float, int]
    assert event.properties["big"] == 2**63 - 1


def test_integers_beyond_64_bits_are_refused_when_encoding_naming_the_field() -> None:
    data = {"type": "track", "messageId": "m", "userId": "u", "properties": {"a": [{"n": 2**64}]}}
    with pytest.raises(ValueError, match=r"properties\.a\.\[0\]\.n: integer"):
        encode_event(data, encoding="single-object", schemas_dir=SCHEMAS_DIR)


def test_auto_detection_reads_json_with_leading_whitespace() -> None:
    event = _decoder("json").decode(b'  \n{"type": "track", "messageId": "m", "userId": "u"}')
    assert event.type == "track"


def test_schemaless_schema_may_be_given_as_a_file_path() -> None:
    decoder = Decoder(
        schemas_dir=SCHEMAS_DIR,
        encoding="schemaless",
        schemaless_schema=str(SCHEMAS_DIR / "segment_event.avsc"),
    )
    value = encode_event(load("audience_entered_track"), encoding="schemaless", schemas_dir=SCHEMAS_DIR)
    assert decoder.decode(value).audience is not None


def test_reader_schema_is_the_current_segment_event() -> None:
    local = LocalSchemas.load(SCHEMAS_DIR)
    assert local.reader.name == "kafka_twilio.segment.SegmentEvent"
    assert json.loads((SCHEMAS_DIR / "segment_event.avsc").read_text())["name"] == "SegmentEvent"
